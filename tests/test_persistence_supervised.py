"""Persistent actors under a supervisor: a restart resumes from the last committed state."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_event_sourcing import Balance as LedgerBalance
from test_event_sourcing import Ledger, Op, OpThenFail
from test_persistence import Account, Add, Balance, Deposit, DepositThenFail, committed_balance

import understudy as us

pytestmark = pytest.mark.anyio


def tree(*children: us.Child) -> us.Supervisor:
    return us.Supervisor(strategy=us.OneForOne(max_restarts=10, within=5.0), children=children)


async def test_a_supervised_restart_resumes_from_the_last_committed_state(
    tmp_path: Path,
) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        await rt.start(tree(us.Child(Account, name="alice")))
        alice = rt.ref("alice")
        assert await alice.ask(Deposit(10)) == 10
        await alice.tell(Add(5))  # pipelined: maybe not committed when the crash comes
        with pytest.raises(RuntimeError, match="crashed after mutating"):
            await alice.ask(DepositThenFail(1000))
        assert await alice.ask(Balance()) == 15  # same ref, new instance, no half-applied 1000
    assert committed_balance(db, "alice") == (2, 15)


async def test_persistent_is_a_child_option(tmp_path: Path) -> None:
    class Plain(us.Actor):
        class State(Account.State):
            pass

        async def deposit(self, msg: Deposit) -> int:
            self.state.balance += msg.amount
            return int(self.state.balance)

    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        await rt.start(tree(us.Child(Plain, name="p", persistent=True, durability="async")))
        assert await rt.ref("p").ask(Deposit(3)) == 3
    assert committed_balance(db, "p") == (1, 3)


async def test_a_write_failure_is_retried_by_the_supervisor_from_disk(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        await rt.start(tree(us.Child(Account, name="alice")))
        alice = rt.ref("alice")
        assert await alice.ask(Deposit(10)) == 10
        assert rt.store is not None
        rt.store.fail_next_commits(1)
        with pytest.raises(us.PersistenceError):
            await alice.ask(Deposit(5))  # not acknowledged: not on disk
        assert await alice.ask(Deposit(1)) == 11  # the restarted instance starts from 10
    assert committed_balance(db, "alice") == (2, 11)


async def test_a_supervised_event_sourced_actor_replays_after_a_crash(tmp_path: Path) -> None:
    async with us.Runtime(store=tmp_path / "app.db") as rt:
        await rt.start(tree(us.Child(Ledger, name="ledger")))
        ledger = rt.ref("ledger")
        for _ in range(10):
            await ledger.ask(Op(2))
        with pytest.raises(RuntimeError, match="crashed after persisting"):
            await ledger.ask(OpThenFail(100))
        assert await ledger.ask(LedgerBalance()) == 20

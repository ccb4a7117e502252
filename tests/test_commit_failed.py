"""A message whose effect was not committed is a ``commit_failed`` dead letter."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from test_persistence import Account, Add, Balance, Deposit, committed_balance

import understudy as us

pytestmark = pytest.mark.anyio


def tree(*children: us.Child) -> us.Supervisor:
    return us.Supervisor(strategy=us.OneForOne(max_restarts=10, within=5.0), children=children)


async def test_a_tell_whose_commit_fails_is_a_dead_letter(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        await rt.start(tree(us.Child(Account, name="alice")))
        alice = rt.ref("alice")
        assert await alice.ask(Deposit(10)) == 10
        assert rt.store is not None
        rt.store.fail_next_commits(1)
        await alice.tell(Add(5))
        await rt.store.flush()
        with anyio.fail_after(5):
            while rt.dead_letters.counts.get("commit_failed", 0) == 0:
                await anyio.sleep(0.005)
        letters = [(lt.message, lt.reason, lt.actor) for lt in rt.dead_letters]
        assert (Add(5), "commit_failed", "alice") in letters
        # The supervisor restarted alice from what is on disk: the tell left nothing.
        for _ in range(200):
            try:
                assert await alice.ask(Balance()) == 10
                break
            except (us.PersistenceError, us.UnknownActor, us.ActorStopped):
                await anyio.sleep(0.01)
    assert committed_balance(db, "alice") == (1, 10)
    async with us.Runtime(store=db) as rt:  # and after a restart of the process
        assert await (await rt.spawn(Account, name="alice")).ask(Balance()) == 10


async def test_an_ask_whose_commit_fails_gets_the_error_and_is_a_dead_letter(
    tmp_path: Path,
) -> None:
    async with us.Runtime(store=tmp_path / "app.db") as rt:
        await rt.start(tree(us.Child(Account, name="alice")))
        alice = rt.ref("alice")
        assert rt.store is not None
        rt.store.fail_next_commits(1)
        with pytest.raises(us.PersistenceError, match="not committed"):
            await alice.ask(Deposit(3))
        letters = [(lt.message, lt.reason) for lt in rt.dead_letters]
        assert (Deposit(3), "commit_failed") in letters


async def test_a_read_that_changed_nothing_is_no_dead_letter(tmp_path: Path) -> None:
    async with us.Runtime(store=tmp_path / "app.db") as rt:
        await rt.start(tree(us.Child(Account, name="alice")))
        alice = rt.ref("alice")
        assert await alice.ask(Deposit(1)) == 1
        assert rt.store is not None
        rt.store.fail_next_commits(1)
        assert await alice.ask(Balance()) == 1  # nothing queued: nothing to fail
        assert rt.dead_letters.counts.get("commit_failed", 0) == 0

"""Breakers, time limits and deadlines on persistent actors (their own serve loop)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

import understudy as us

pytestmark = pytest.mark.anyio


class Deposit(us.Request[int], frozen=True):
    amount: int
    stall: float = 0.0


class Balance(us.Request[int], frozen=True):
    pass


class Account(us.Actor):
    class State(msgspec.Struct):
        balance: int = 0

    async def deposit(self, msg: Deposit) -> int:
        self.state.balance += msg.amount
        if msg.stall:
            await anyio.sleep(msg.stall)  # mutated, then hangs: cancelled by the timeout
        return int(self.state.balance)

    async def balance(self, msg: Balance) -> int:
        return int(self.state.balance)


def tree(**options: Any) -> us.Supervisor:
    return us.Supervisor(
        strategy=us.OneForOne(max_restarts=10, within=60),
        children=[us.Child(Account, name="alice", persistent=True, **options)],
    )


async def test_a_timed_out_handler_leaves_no_half_applied_state(tmp_path: Path) -> None:
    async with us.Runtime(store=tmp_path / "bank.db") as rt:
        await rt.start(tree(timeout=0.05, breaker=us.Breaker(failures=2)))
        alice = rt.ref("alice")
        assert await alice.ask(Deposit(10)) == 10
        with pytest.raises(us.HandlerTimeout):
            await alice.ask(Deposit(1000, stall=600))
        # Restarted from its last committed snapshot: the 1000 was never applied.
        assert await alice.ask(Balance()) == 10
        assert rt.breaker("alice").failures == 1
        assert rt.dead_letters.counts["timeout"] == 1


async def test_a_persistent_actor_does_not_process_an_expired_message(tmp_path: Path) -> None:
    now = [0.0]
    async with us.Runtime(store=tmp_path / "bank.db", clock=lambda: now[0]) as rt:
        await rt.start(tree())
        alice = rt.ref("alice")
        async with anyio.create_task_group() as tg:
            tg.start_soon(alice.ask, Deposit(1, stall=0.05))  # occupies alice

            async def late() -> None:
                with pytest.raises(us.DeadlineExceeded):
                    await alice.ask(Deposit(500), timeout=5)

            await anyio.sleep(0.01)
            tg.start_soon(late)
            await anyio.sleep(0.01)
            now[0] += 10  # its deadline passes while it waits behind the stalled one
        assert await alice.ask(Balance()) == 1
        assert rt.dead_letters.counts["expired"] == 1


async def test_an_open_breaker_refuses_queued_messages_of_a_persistent_actor(
    tmp_path: Path,
) -> None:
    async with us.Runtime(store=tmp_path / "bank.db") as rt:
        await rt.start(tree(timeout=0.02, breaker=us.Breaker(failures=1, reset_after=60)))
        alice = rt.ref("alice")
        results: list[object] = []

        async def ask(msg: Deposit) -> None:
            try:
                results.append(await alice.ask(msg))
            except Exception as exc:
                results.append(type(exc))

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask, Deposit(5, stall=600))  # times out: the breaker opens
            await anyio.sleep(0.005)
            for _ in range(3):
                tg.start_soon(ask, Deposit(1))  # queued behind it: refused when they come up
        assert sorted(map(str, results)) == sorted(
            map(str, [us.HandlerTimeout] + [us.CircuitOpen] * 3)
        )
        assert rt.breaker("alice").refusals == 3

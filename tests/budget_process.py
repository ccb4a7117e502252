"""A process spending on a persistent budget, for the SIGKILL test of
tests/test_budgets_persistent.py. Usage: ``python tests/budget_process.py DB BACKEND``.

Each round reserves, settles, then asks a persistent actor (``durability="commit"``) to
record the round, and prints the budget's spent total once that ask returned: by then the
budget's figures are committed too (they were queued before the actor's write)."""

from __future__ import annotations

import sys

import msgspec

import understudy as us


class Note(us.Request[int], frozen=True):
    pass


class Notes(us.Actor):
    persistent = True

    class State(msgspec.Struct):
        rounds: int = 0

    async def note(self, msg: Note) -> int:
        self.state.rounds += 1
        return int(self.state.rounds)


async def main(db: str) -> None:
    async with us.Runtime(store=db) as rt:
        notes = await rt.spawn(Notes, name="notes")
        async with rt.budget(name="conv-kill", usd=5.0, persistent=True) as budget:
            while True:
                try:
                    reservation = budget.reserve(usd=0.01)
                except us.BudgetExceeded:
                    print(f"{budget.spent_usd + budget.reserved_usd!r}", flush=True)
                    continue
                reservation.settle(usd=0.005)
                await notes.ask(Note())
                print(f"{budget.spent_usd + budget.reserved_usd!r}", flush=True)


if __name__ == "__main__":
    us.run(main, sys.argv[1], backend=sys.argv[2])  # type: ignore[arg-type]

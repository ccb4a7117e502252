"""Delta state: a persistent actor's cost per message does not grow with its history.

understudy: a persistent conversation actor whose ``State`` holds an append-only
``us.Log[Turn]`` (persisted as one row per entry beside a snapshot of the other fields)
already holding 12,000 turns (about 0.9 MB); 10 concurrent callers make N durable asks
(``durability="commit"``: each reply waits for the commit), each appending one turn.

baseline: the same actor and asks with only 10 turns in its log.

``delta_list`` measures, for the record, the same two sides with a plain ``list[Turn]``
field instead of the Log, which is snapshotted whole after every message: what the Log
replaces (issue 13 measured 0.12x there).

Reported: durable asks/s, target: ≥ 0.8x (a 12,000-entry log costs at most 20 %).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import anyio
import msgspec

import understudy as us
from bench.harness import Benchmark, Metric, Sample, check

CALLERS = 10


class Turn(msgspec.Struct, frozen=True):
    role: str
    text: str


class Say(us.Request[int], frozen=True):
    text: str


class Fill(us.Request[int], frozen=True):
    count: int


class LogConversation(us.Actor):
    persistent = True

    class State(msgspec.Struct):
        title: str = "support"
        turns: us.Log[Turn] = us.Log.field()

    async def say(self, msg: Say) -> int:
        self.state.turns.append(Turn("user", msg.text))
        return len(self.state.turns)

    async def fill(self, msg: Fill) -> int:
        self.state.turns.extend(Turn("assistant", "x" * 60) for _ in range(msg.count))
        return len(self.state.turns)


class ListConversation(us.Actor):
    persistent = True

    class State(msgspec.Struct):
        title: str = "support"
        turns: list[Turn] = msgspec.field(default_factory=list)

    async def say(self, msg: Say) -> int:
        self.state.turns.append(Turn("user", msg.text))
        return len(self.state.turns)

    async def fill(self, msg: Fill) -> int:
        self.state.turns.extend(Turn("assistant", "x" * 60) for _ in range(msg.count))
        return len(self.state.turns)


async def durable_asks(actor: type[us.Actor], history: int, asks: int) -> Sample:
    with tempfile.TemporaryDirectory() as tmp:
        async with us.Runtime(store=Path(tmp) / "bench.db") as rt:
            chat = await rt.spawn(actor, name="conv")
            check(await chat.ask(Fill(history)), history, "history filled")
            per_caller = asks // CALLERS

            async def caller(c: int) -> None:
                for i in range(per_caller):
                    await chat.ask(Say(f"question {c}-{i}: where is my parcel?"))

            start = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for c in range(CALLERS):
                    tg.start_soon(caller, c)
            seconds = time.perf_counter() - start
            check(await chat.ask(Fill(0)), history + per_caller * CALLERS, "turns after")
    return {"asks": per_caller * CALLERS / seconds}


async def log_long(asks: int, long: int, short: int) -> Sample:
    return await durable_asks(LogConversation, long, asks)


async def log_short(asks: int, long: int, short: int) -> Sample:
    return await durable_asks(LogConversation, short, asks)


async def list_long(asks: int, long: int, short: int) -> Sample:
    return await durable_asks(ListConversation, long, asks)


async def list_short(asks: int, long: int, short: int) -> Sample:
    return await durable_asks(ListConversation, short, asks)


SIZES = {"asks": 3_000, "long": 12_000, "short": 10}
QUICK = {"asks": 200, "long": 12_000, "short": 10}

BENCHMARK = Benchmark(
    name="delta_state",
    title="Durable asks to an actor whose Log holds 12,000 entries vs 10",
    metrics=(Metric("asks", "durable asks", "asks/s", higher_is_better=True, target=0.8),),
    ours=log_long,
    baseline=log_short,
    sizes=SIZES,
    quick_sizes=QUICK,
)

LIST = Benchmark(
    name="delta_list",
    title="For the record: the same with a plain list field (snapshotted whole)",
    metrics=(Metric("asks", "durable asks", "asks/s", higher_is_better=True),),
    ours=list_long,
    baseline=list_short,
    sizes={"asks": 1_000, "long": 12_000, "short": 10},
    quick_sizes=QUICK,
)

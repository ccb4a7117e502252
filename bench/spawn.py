"""d. spawn: start N idle actors, then stop them all; time, and memory per idle actor.

understudy: ``rt.spawn`` N unnamed ``Idle`` actors one after another (each returns once the
actor is running), then leave the runtime's ``async with``, which stops them all gracefully.

baseline: N bare tasks, each started with ``task_group.start`` (so it, too, is running when
the call returns) and waiting on its own anyio memory object stream with ``async for``; then
close every send side and wait for the task group to end.

Each run does this twice. The first pass is timed (spawn and stop, in microseconds per actor).
The second runs under ``tracemalloc``, which slows everything down and so is not timed: memory
per idle actor is the traced memory after starting all N, minus the traced memory before,
divided by N, each read after a ``gc.collect()``. Both passes keep the N refs (or send
streams) in a list, which costs the same 8 bytes per actor on either side.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from dataclasses import dataclass

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

import understudy as us
from bench.harness import Benchmark, Metric, Sample

BUFFER = 1000


class Ping(us.Message, frozen=True):
    pass


class Idle(us.Actor):
    async def ping(self, msg: Ping) -> None:
        pass


@dataclass
class Pass:
    """One pass: seconds to start and to stop all N, and traced bytes they held."""

    start: float = 0.0
    stop: float = 0.0
    memory: int = 0


def traced_memory() -> int:
    """Bytes currently traced by tracemalloc (0 when it is off), after collecting garbage."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def ours_pass(actors: int, traced: bool) -> Pass:
    result = Pass()
    refs: list[us.Ref] = []
    async with us.Runtime() as rt:
        if traced:
            tracemalloc.start()
        before = traced_memory()
        start = time.perf_counter()
        for _ in range(actors):
            refs.append(await rt.spawn(Idle))
        result.start = time.perf_counter() - start
        result.memory = traced_memory() - before
        tracemalloc.stop()
        start = time.perf_counter()
    result.stop = time.perf_counter() - start
    return result


async def baseline_pass(actors: int, traced: bool) -> Pass:
    result = Pass()
    sends: list[MemoryObjectSendStream[Ping]] = []

    async def idle(
        receive: MemoryObjectReceiveStream[Ping], *, task_status: TaskStatus[None]
    ) -> None:
        async with receive:
            task_status.started()
            async for _ in receive:
                pass

    async with anyio.create_task_group() as tg:
        if traced:
            tracemalloc.start()
        before = traced_memory()
        start = time.perf_counter()
        for _ in range(actors):
            send, receive = anyio.create_memory_object_stream[Ping](BUFFER)
            await tg.start(idle, receive)
            sends.append(send)
        result.start = time.perf_counter() - start
        result.memory = traced_memory() - before
        tracemalloc.stop()
        start = time.perf_counter()
        for send in sends:
            send.close()
    result.stop = time.perf_counter() - start
    return result


def sample(actors: int, timed: Pass, traced: Pass) -> Sample:
    return {
        "start": timed.start / actors * 1e6,
        "stop": timed.stop / actors * 1e6,
        "memory": traced.memory / actors,
    }


async def ours(actors: int) -> Sample:
    return sample(actors, await ours_pass(actors, False), await ours_pass(actors, True))


async def baseline(actors: int) -> Sample:
    return sample(actors, await baseline_pass(actors, False), await baseline_pass(actors, True))


BENCHMARK = Benchmark(
    name="spawn",
    title="start and then stop idle actors",
    metrics=(
        Metric("memory", "memory per idle actor", "bytes", higher_is_better=False, target=2.0),
        Metric("start", "spawn time per actor", "µs", higher_is_better=False, fmt="{:.1f}"),
        Metric("stop", "stop time per actor", "µs", higher_is_better=False, fmt="{:.1f}"),
    ),
    ours=ours,
    baseline=baseline,
    sizes={"actors": 10_000},
    quick_sizes={"actors": 200},
)

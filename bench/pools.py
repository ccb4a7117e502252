"""Pools and entities (issue 13).

``pool-throughput``: 64 concurrent callers ask a 10 ms handler (simulated I/O) through a
pool of 8 workers; baseline: the same callers asking one actor. Target: ≥ 7x.

``pool-ask``: sequential asks to an instant handler through a pool of 8 (least_busy) versus
direct asks to one actor, in µs per ask. Target: ≤ 1.3x.

``entities-load``: N conversations as persistent entities (a store in a temporary directory),
each doing 3 asks in a row whose handler waits 100 ms and appends to the conversation's
history; all N run at once. The figure is the wall time over the ideal, 0.3 s plus the
store's group-commit time in that run (``StoreStats.commit_seconds``); the baseline side is
that ideal, 1.0. Target: ≤ 2x.

``entities-floor``: the same load against its floor, bare anyio tasks doing its sleeps
(no runtime, nothing stored): wall seconds, and seconds spent in CPython's cyclic garbage
collector during the run (``gc.callbacks``), both sides measured. No target: it says how
much of the load is the event loop and the collector, which no runtime avoids.

``entity-memory``: bytes per passivated entity (tracemalloc, after ``gc.collect()``, of N
entities activated and then passivated, over the memory before), against the 300-byte
target as the baseline (target ≤ 1x); and bytes per active idle entity against a plain
persistent named actor of the same class (target ≤ 1.5x).
"""

from __future__ import annotations

import gc
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import anyio
import msgspec

import understudy as us
from bench.harness import Benchmark, Metric, Sample, check

K = TypeVar("K")
CALLERS = 64
WORKERS = 8


class Slow(us.Request[int], frozen=True):
    n: int


class Sleeper(us.Actor):
    async def slow(self, msg: Slow) -> int:
        await anyio.sleep(0.01)
        return msg.n


class Quick(us.Request[int], frozen=True):
    n: int


class Echo(us.Actor):
    async def quick(self, msg: Quick) -> int:
        return msg.n


async def _callers(ref: us.Ref, requests: int) -> float:
    per = requests // CALLERS
    done = 0

    async def caller() -> None:
        nonlocal done
        for i in range(per):
            if await ref.ask(Slow(i)) != i:
                raise RuntimeError("wrong reply")
            done += 1

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(CALLERS):
            tg.start_soon(caller)
    elapsed = time.perf_counter() - start
    check(done, per * CALLERS, "asks answered")
    return done / elapsed


async def throughput_ours(requests: int) -> Sample:
    async with us.Runtime() as rt:
        pool = await rt.spawn_pool(Sleeper, name="sleepers", size=WORKERS)
        return {"throughput": await _callers(pool, requests)}


async def throughput_baseline(requests: int) -> Sample:
    async with us.Runtime() as rt:
        one = await rt.spawn(Sleeper, name="sleeper")
        return {"throughput": await _callers(one, requests)}


async def _sequential(ref: us.Ref, requests: int) -> float:
    start = time.perf_counter()
    for i in range(requests):
        if await ref.ask(Quick(i)) != i:
            raise RuntimeError("wrong reply")
    return (time.perf_counter() - start) / requests * 1e6


async def ask_ours(requests: int) -> Sample:
    async with us.Runtime() as rt:
        pool = await rt.spawn_pool(Echo, name="echoes", size=WORKERS)
        return {"latency": await _sequential(pool, requests)}


async def ask_baseline(requests: int) -> Sample:
    async with us.Runtime() as rt:
        one = await rt.spawn(Echo, name="echo")
        return {"latency": await _sequential(one, requests)}


# ---------------------------------------------------------------------------------- entities


class Turn(us.Request[int], frozen=True):
    text: str


class Conversation(us.Actor):
    persistent = True

    class State(msgspec.Struct):
        history: us.Log[str] = us.Log.field()  # append-only, persisted by delta

    async def turn(self, msg: Turn) -> int:
        await anyio.sleep(0.1)  # simulated I/O (a model or tool call)
        self.state.history.append(msg.text)
        return len(self.state.history)


class _GcClock:
    """Seconds the cyclic garbage collector ran while installed (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started

    def __enter__(self) -> _GcClock:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


async def _all_at_once(
    converse: Callable[[K], Awaitable[None]], keys: list[K]
) -> tuple[float, float]:
    """Run ``converse(key)`` for every key at once: the wall seconds until all are done, and
    the seconds the cyclic garbage collector ran meanwhile."""
    start = time.perf_counter()
    with _GcClock() as collector:
        async with anyio.create_task_group() as tg:
            for key in keys:
                tg.start_soon(converse, key)
    return time.perf_counter() - start, collector.seconds


async def load_ours(conversations: int) -> Sample:
    with tempfile.TemporaryDirectory() as tmp:
        async with us.Runtime(store=Path(tmp) / "load.db") as rt:
            await rt.start(
                us.Supervisor(
                    children=[us.Entities(Conversation, name="chat", passivate_after=60.0)]
                )
            )
            done = 0

            async def converse(key: str) -> None:
                nonlocal done
                ref = rt.entity("chat", key)
                for n in range(1, 4):
                    if await ref.ask(Turn(f"turn {n}")) != n:
                        raise RuntimeError("history lost a turn")
                done += 1

            elapsed, gc_seconds = await _all_at_once(
                converse, [f"conv-{i}" for i in range(conversations)]
            )
            assert rt.store is not None
            commit = rt.store.stats.commit_seconds
            check(done, conversations, "conversations completed")
    return {
        "vs_ideal": elapsed / (0.3 + commit),
        "seconds": elapsed,
        "commit": commit,
        "gc": gc_seconds,
    }


async def floor_baseline(conversations: int) -> Sample:
    """The load's shape with no runtime: a task per conversation, 3 sleeps of 100 ms, each
    followed by an append to its in-memory history; nothing is stored."""
    histories: dict[str, list[str]] = {}
    done = 0

    async def converse(key: str) -> None:
        nonlocal done
        history = histories[key] = []
        for n in range(1, 4):
            await anyio.sleep(0.1)
            history.append(f"turn {n}")
            if len(history) != n:
                raise RuntimeError("history lost a turn")
        done += 1

    elapsed, gc_seconds = await _all_at_once(converse, [f"conv-{i}" for i in range(conversations)])
    check(done, conversations, "conversations completed")
    return {"seconds": elapsed, "gc": gc_seconds}


async def actors_baseline(conversations: int) -> Sample:
    """The same load on plain persistent actors spawned beforehand (spawning not timed)."""
    with tempfile.TemporaryDirectory() as tmp:
        async with us.Runtime(store=Path(tmp) / "load.db") as rt:
            refs = [await rt.spawn(Conversation, name=f"conv-{i}") for i in range(conversations)]
            done = 0

            async def converse(ref: us.Ref) -> None:
                nonlocal done
                for n in range(1, 4):
                    if await ref.ask(Turn(f"turn {n}")) != n:
                        raise RuntimeError("history lost a turn")
                done += 1

            elapsed, _ = await _all_at_once(converse, refs)
            check(done, conversations, "conversations completed")
    return {"seconds": elapsed}


async def load_baseline(conversations: int) -> Sample:
    return {"vs_ideal": 1.0, "seconds": 0.3, "commit": 1.0}  # commit: for scale only


class Ping(us.Request[int], frozen=True):
    pass


class Idle(us.Actor):
    persistent = True

    class State(msgspec.Struct):
        history: list[str] = msgspec.field(default_factory=list)

    async def ping(self, msg: Ping) -> int:
        self.state.history.append("x")
        return 1


def _bytes() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def memory_ours(entities: int) -> Sample:
    with tempfile.TemporaryDirectory() as tmp:
        async with us.Runtime(store=Path(tmp) / "mem.db") as rt:
            await rt.start(
                us.Supervisor(children=[us.Entities(Idle, name="idle", passivate_after=3600.0)])
            )
            group = rt.routers["idle"]

            async def cycle(prefix: str) -> tuple[float, float]:
                """Activate ``entities`` new keys, then passivate them: bytes per entity
                while active and after, over the memory before."""
                before = _bytes()
                for i in range(entities):
                    await rt.entity("idle", f"{prefix}-{i:08d}").ask(Ping())
                active = (_bytes() - before) / entities
                for key in list(group.active):
                    group.actor._passivate(key, "idle")
                with anyio.fail_after(60):
                    while group.passivating:  # noqa: ASYNC110 (stops run in their own tasks)
                        await anyio.sleep(0.01)
                assert rt.store is not None
                await rt.store.flush()
                return active, (_bytes() - before) / entities

            tracemalloc.start()
            # A first cycle grows the runtime's tables (task sets, dicts) to this load's
            # peak; they keep that capacity, which is no entity's cost. The second cycle
            # measures what each entity adds.
            await cycle("warm")
            active, passivated = await cycle("conversation")
            tracemalloc.stop()
            check(len(group.passivated), 2 * entities, "passivated entities")
    return {"passivated": passivated, "active": active}


async def memory_baseline(entities: int) -> Sample:
    with tempfile.TemporaryDirectory() as tmp:
        async with us.Runtime(store=Path(tmp) / "mem.db") as rt:
            tracemalloc.start()

            async def spawn(prefix: str) -> float:
                before = _bytes()
                refs = []
                for i in range(entities):
                    ref = await rt.spawn(Idle, name=f"idle/{prefix}-{i:08d}")
                    await ref.ask(Ping())
                    refs.append(ref)
                active = (_bytes() - before) / entities
                for ref in refs:
                    await rt.stop(ref)
                return active

            await spawn("warm")  # the same warm-up as the entities' side
            active = await spawn("conversation")
            tracemalloc.stop()
    return {"passivated": 300.0, "active": active}


THROUGHPUT = Benchmark(
    name="pool-throughput",
    title=f"{CALLERS} callers, 10 ms handler: a pool of {WORKERS} vs one actor",
    metrics=(Metric("throughput", "throughput", "asks/s", higher_is_better=True, target=7.0),),
    ours=throughput_ours,
    baseline=throughput_baseline,
    sizes={"requests": 1_280},  # one actor takes 12.8 s for these
    quick_sizes={"requests": 128},
)

ASK = Benchmark(
    name="pool-ask",
    title=f"sequential instant asks: through a pool of {WORKERS} vs direct",
    metrics=(
        Metric("latency", "time per ask", "µs", higher_is_better=False, target=1.3, fmt="{:.2f}"),
    ),
    ours=ask_ours,
    baseline=ask_baseline,
    sizes={"requests": 20_000},
    quick_sizes={"requests": 500},
)

LOAD = Benchmark(
    name="entities-load",
    title="persistent conversations, 3 asks of 100 ms each, all at once; baseline = ideal",
    metrics=(
        Metric(
            "vs_ideal",
            "wall time ÷ (0.3 s + commit time)",
            "ratio",
            higher_is_better=False,
            target=2.0,
            fmt="{:.2f}",
        ),
        Metric("seconds", "wall time (baseline: 0.3 s)", "s", higher_is_better=False, fmt="{:.2f}"),
        Metric(
            "commit", "group-commit time (baseline: 1 s)", "s", higher_is_better=False, fmt="{:.3f}"
        ),
    ),
    ours=load_ours,
    baseline=load_baseline,
    sizes={"conversations": 10_000},
    quick_sizes={"conversations": 200},
)

LOAD_VS_ACTORS = Benchmark(
    name="entities-vs-actors",
    title="the entities-load workload vs the same on plain persistent actors spawned beforehand",
    metrics=(Metric("seconds", "wall time", "s", higher_is_better=False, fmt="{:.2f}"),),
    ours=load_ours,
    baseline=actors_baseline,
    sizes={"conversations": 10_000},
    quick_sizes={"conversations": 200},
)

FLOOR = Benchmark(
    name="entities-floor",
    title="the entities-load workload vs its floor: bare anyio tasks doing its sleeps",
    metrics=(
        Metric("seconds", "wall time", "s", higher_is_better=False, fmt="{:.2f}"),
        Metric("gc", "time in the cyclic GC", "s", higher_is_better=False, fmt="{:.2f}"),
    ),
    ours=load_ours,
    baseline=floor_baseline,
    sizes={"conversations": 10_000},
    quick_sizes={"conversations": 200},
)

MEMORY = Benchmark(
    name="entity-memory",
    title="bytes per entity: passivated (vs the 300 B target), active idle (vs a plain actor)",
    metrics=(
        Metric("passivated", "per passivated entity", "B", higher_is_better=False, target=1.0),
        Metric("active", "per active idle entity", "B", higher_is_better=False, target=1.5),
    ),
    ours=memory_ours,
    baseline=memory_baseline,
    sizes={"entities": 5_000},
    quick_sizes={"entities": 200},
)

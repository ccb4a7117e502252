"""c. ask round trip: sequential requests, each timed on its own.

understudy: the main task ``ask``s an ``Echo`` actor N times in a row; each call is timed with
``time.perf_counter`` from before the ask to its reply.

baseline: a bare request/reply: the main task sends ``(request, slot)`` into an anyio memory
object stream (buffer 1000) with ``await send`` and waits on the slot, a per-request object
holding an ``anyio.Event`` and a value; a server task reads with ``async for``, fills the slot
and sets its event. Each round trip is timed the same way.

Reported: mean, median (p50) and 99th percentile of the N latencies, in microseconds.
"""

from __future__ import annotations

import statistics
import time

import anyio

import understudy as us
from bench.harness import Benchmark, Metric, Sample, check

BUFFER = 1000


class Echo(us.Request[int], frozen=True):
    n: int


class Echoer(us.Actor):
    async def echo(self, msg: Echo) -> int:
        return msg.n


class Slot:
    """Where the server puts one reply."""

    __slots__ = ("event", "value")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.value: int | None = None


def latency_sample(seconds: list[float]) -> Sample:
    cuts = statistics.quantiles(seconds, n=100)
    return {
        "mean": statistics.fmean(seconds) * 1e6,
        "p50": cuts[49] * 1e6,
        "p99": cuts[98] * 1e6,
    }


async def ours(requests: int) -> Sample:
    latencies: list[float] = []
    clock = time.perf_counter
    async with us.Runtime() as rt:
        echo = await rt.spawn(Echoer)
        for i in range(requests):
            start = clock()
            reply = await echo.ask(Echo(i))
            latencies.append(clock() - start)
            if reply != i:
                check(reply, i, "reply of the echo actor")
    return latency_sample(latencies)


async def baseline(requests: int) -> Sample:
    send, receive = anyio.create_memory_object_stream[tuple[Echo, Slot]](BUFFER)

    async def serve() -> None:
        async with receive:
            async for request, slot in receive:
                slot.value = request.n
                slot.event.set()

    latencies: list[float] = []
    clock = time.perf_counter
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve)
        async with send:
            for i in range(requests):
                start = clock()
                slot = Slot()
                await send.send((Echo(i), slot))
                await slot.event.wait()
                latencies.append(clock() - start)
                if slot.value != i:
                    check(slot.value, i, "reply of the echo task")
    return latency_sample(latencies)


def _latency(key: str, label: str, target: float | None = None) -> Metric:
    return Metric(key, label, "µs", higher_is_better=False, target=target, fmt="{:.1f}")


BENCHMARK = Benchmark(
    name="ask",
    title="sequential requests to one actor",
    metrics=(
        _latency("p50", "p50 latency", target=1.0),
        _latency("mean", "mean latency"),
        _latency("p99", "p99 latency"),
    ),
    ours=ours,
    baseline=baseline,
    sizes={"requests": 20_000},
    quick_sizes={"requests": 500},
)

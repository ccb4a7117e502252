"""LLM calls: understudy's Model against the bare AsyncAnthropic, on the same fake transport.

overhead: N sequential non-streaming calls, each timed. understudy: ``Model.create`` inside
``rt.budget`` (a reservation before and a settlement after each call, a call record, the
metrics, the rate limiter with a requests-per-minute bucket, the breaker; the count_tokens
estimate is cached per prompt after the first call). baseline: ``AsyncAnthropic.messages.
create`` with ``max_retries=0`` on the same ``FakeMessagesAPI`` MockTransport. Reported: p50
and p99 latency (µs).

concurrency: C calls started at once against a fake answering after 200 ms, at most 500 in
flight. understudy: ``Model(max_concurrency=500, estimate="local")``; baseline: the bare SDK
under an ``anyio.Semaphore(500)``. Reported: wall time (s); and, in a separate run of 500
calls all in flight under ``tracemalloc``, the memory held per in-flight call (KiB).
"""

from __future__ import annotations

import statistics
import time
import tracemalloc
from typing import Any

import anyio

import understudy as us
from bench.harness import Benchmark, Metric, Sample, check
from understudy.testing import FakeMessagesAPI

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
LATENCY = 0.2
LIMIT = 500


def _fake(latency: float = 0.0) -> FakeMessagesAPI:
    return FakeMessagesAPI(seed=1, latency=latency, default=FakeMessagesAPI.text("Paris."))


def _latencies(seconds: list[float]) -> Sample:
    cuts = statistics.quantiles(seconds, n=100)
    return {"p50": cuts[49] * 1e6, "p99": cuts[98] * 1e6}


async def overhead_ours(calls: int) -> Sample:
    fake = _fake()
    model = fake.model("claude-sonnet-4-5", requests_per_minute=10**9)
    clock = time.perf_counter
    latencies = []
    async with us.Runtime() as rt, rt.budget(name="bench", usd=10**6):
        for _ in range(calls):
            start = clock()
            reply = await model.create(max_tokens=64, messages=MESSAGES)
            latencies.append(clock() - start)
        check(len(us.llm.call_log(rt).records), calls, "call records")
    check(reply.stop_reason, "end_turn", "stop reason")
    return _latencies(latencies)


async def overhead_baseline(calls: int) -> Sample:
    client = _fake().client()
    clock = time.perf_counter
    latencies = []
    for _ in range(calls):
        start = clock()
        reply = await client.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=64,
            messages=MESSAGES,  # type: ignore[arg-type]
        )
        latencies.append(clock() - start)
    check(reply.stop_reason, "end_turn", "stop reason")
    return _latencies(latencies)


async def _in_flight_memory(make_call: Any) -> float:
    """KiB held per call while ``LIMIT`` calls wait on the fake's latency."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        peak = 0

        async def watch() -> None:
            nonlocal peak
            await anyio.sleep(LATENCY / 2)
            peak = tracemalloc.get_traced_memory()[0]

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            for _ in range(LIMIT):
                tg.start_soon(make_call)
    finally:
        tracemalloc.stop()
    return (peak - before) / LIMIT / 1024


async def concurrency_ours(calls: int) -> Sample:
    fake = _fake(LATENCY)
    model = fake.model("claude-sonnet-4-5", max_concurrency=LIMIT, estimate="local")
    done = 0

    async def call() -> None:
        nonlocal done
        await model.create(max_tokens=64, messages=MESSAGES)
        done += 1

    async with us.Runtime() as rt, rt.budget(name="bench", usd=10**6):
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(calls):
                tg.start_soon(call)
        wall = time.perf_counter() - start
        check(done, calls, "calls answered")
        memory = await _in_flight_memory(call)
    return {"wall": wall, "memory": memory}


async def concurrency_baseline(calls: int) -> Sample:
    client = _fake(LATENCY).client()
    semaphore = anyio.Semaphore(LIMIT)
    done = 0

    async def call() -> None:
        nonlocal done
        async with semaphore:
            await client.messages.create(
                model="claude-sonnet-4-5",
                max_tokens=64,
                messages=MESSAGES,  # type: ignore[arg-type]
            )
        done += 1

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(calls):
            tg.start_soon(call)
    wall = time.perf_counter() - start
    check(done, calls, "calls answered")
    memory = await _in_flight_memory(call)
    return {"wall": wall, "memory": memory}


OVERHEAD = Benchmark(
    name="llm_overhead",
    title="LLM call overhead: Model.create vs bare AsyncAnthropic (same MockTransport fake)",
    metrics=(
        Metric("p50", "p50 latency", "µs", higher_is_better=False, target=1.25),
        Metric("p99", "p99 latency", "µs", higher_is_better=False),
    ),
    ours=overhead_ours,
    baseline=overhead_baseline,
    sizes={"calls": 2000},
    quick_sizes={"calls": 100},
)

CONCURRENCY = Benchmark(
    name="llm_concurrency",
    title="LLM concurrency: 200 ms fake, 500 in flight (Model vs SDK under a semaphore)",
    metrics=(
        Metric("wall", "wall time", "s", higher_is_better=False, target=1.2, fmt="{:,.2f}"),
        Metric("memory", "memory per in-flight call", "KiB", higher_is_better=False, fmt="{:,.1f}"),
    ),
    ours=concurrency_ours,
    baseline=concurrency_baseline,
    sizes={"calls": 2000},
    quick_sizes={"calls": 200},
)

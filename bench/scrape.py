"""The metrics scrape: its cost per named actor, and asks while scrapes storm the endpoint.

scrape (``SCRAPE``): a runtime with N named actors, each of which handled one ask, is scraped
as the endpoint does it (``await rt.metrics.scrape()``, the chunked, coalesced build).
Reported: the median time of 5 scrapes, the peak memory allocated during one (``tracemalloc``)
and the size of the text. The baseline is not a measurement but the budget the scrape must
keep (issue 12, item 11: 100 ms and 5 MB for 10,000 named actors), so the ratio is the share
of the budget used and the target is 1.

storm (``STORM``): a runtime serving its endpoint on 127.0.0.1 with 100 named actors; the main
task asks one of them ``asks`` times in a row, each timed. A load generator in another process
(httpx) meanwhile fires waves of ``scrapes`` concurrent ``GET /metrics`` until the asks are
done (understudy side) or stays idle (baseline side, the same process started the same way).
Reported: the asks' p50 and p99 in microseconds, and (understudy side only) the scrapes
answered and refused (the connection cap) per wave. Target: the p99 of asks under the storm
within 2x of the p99 without it.
"""

from __future__ import annotations

import statistics
import sys
import time
import tracemalloc

import anyio
from anyio.streams.text import TextReceiveStream

import understudy as us
from bench.harness import Benchmark, Metric, Sample, check


class Ping(us.Request[int], frozen=True):
    n: int


class Echo(us.Actor):
    async def ping(self, msg: Ping) -> int:
        return msg.n


# ----------------------------------------------------------------------------- the scrape


async def scrape_ours(actors: int) -> Sample:
    async with us.Runtime() as rt:
        refs = [await rt.spawn(Echo, name=f"account-{i}") for i in range(actors)]
        for i, ref in enumerate(refs):
            check(await ref.ask(Ping(i)), i, "ask")
        times = []
        size = 0
        for _ in range(5):
            start = time.perf_counter()
            chunks = await rt.metrics.scrape()
            times.append(time.perf_counter() - start)
            size = sum(len(chunk) for chunk in chunks)
        del chunks
        tracemalloc.start()
        chunks = await rt.metrics.scrape()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        check(b"understudy_scrape_errors_total 0.0" in chunks[-2], True, "a clean scrape")
    return {
        "ms": statistics.median(times) * 1e3,
        "mb": peak / 1e6,
        "text": size / 1e6,
    }


async def scrape_budget(actors: int) -> Sample:
    """The budget, scaled to the size measured (100 ms and 5 MB per 10,000 named actors)."""
    share = actors / 10_000
    return {"ms": 100.0 * share, "mb": 5.0 * share, "text": 5.0 * share}


SCRAPE = Benchmark(
    name="scrape",
    title="a scrape of many named actors, against its budget",
    metrics=(
        Metric("ms", "scrape time", "ms", higher_is_better=False, target=1.0, fmt="{:,.1f}"),
        Metric("mb", "peak memory", "MB", higher_is_better=False, target=1.0, fmt="{:,.2f}"),
        Metric("text", "text size", "MB", higher_is_better=False, fmt="{:,.2f}"),
    ),
    ours=scrape_ours,
    baseline=scrape_budget,
    sizes={"actors": 10_000},
    quick_sizes={"actors": 300},
)


# ------------------------------------------------------------------------------ the storm

LOAD = r"""
import sys, anyio, httpx

async def main(url, scrapes):
    print("ready", flush=True)
    answered = refused = waves = 0
    limits = httpx.Limits(max_connections=scrapes, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        stop = anyio.Event()

        async def watch():
            await anyio.to_thread.run_sync(sys.stdin.read)
            stop.set()

        async def one():
            nonlocal answered, refused
            try:
                response = await client.get(url)
            except httpx.HTTPError:
                refused += 1
                return
            if response.status_code == 200:
                answered += 1
            else:
                refused += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            while scrapes and not stop.is_set():
                async with anyio.create_task_group() as wave:
                    for _ in range(scrapes):
                        wave.start_soon(one)
                waves += 1
            await stop.wait()
    print(answered, refused, waves, flush=True)

anyio.run(main, sys.argv[1], int(sys.argv[2]))
"""


async def storm(actors: int, scrapes: int, asks: int) -> Sample:
    async with us.Runtime(metrics=("127.0.0.1", 0)) as rt:
        refs = [await rt.spawn(Echo, name=f"account-{i}") for i in range(actors)]
        for i, ref in enumerate(refs):
            check(await ref.ask(Ping(i)), i, "ask")
        url = f"{rt.metrics.url}/metrics"
        command = [sys.executable, "-c", LOAD, url, str(scrapes)]
        async with await anyio.open_process(command) as load:
            assert load.stdout is not None
            assert load.stdin is not None
            lines = TextReceiveStream(load.stdout)
            buffered = ""
            while "ready" not in buffered:
                buffered += await lines.receive()
            if scrapes:
                await anyio.sleep(0.2)  # the first wave is on its way
            latencies = []
            clock = time.perf_counter
            target = refs[0]
            for i in range(asks):
                start = clock()
                await target.ask(Ping(i))
                latencies.append(clock() - start)
            await load.stdin.aclose()
            rest = ""
            async for text in lines:
                rest += text
        answered, refused, waves = (int(x) for x in (buffered + rest).split()[1:4])
    cuts = statistics.quantiles(latencies, n=100)
    per_wave = max(waves, 1)
    return {
        "p50": cuts[49] * 1e6,
        "p99": cuts[98] * 1e6,
        "answered": answered / per_wave,
        "refused": refused / per_wave,
    }


async def storm_ours(actors: int, scrapes: int, asks: int) -> Sample:
    return await storm(actors, scrapes, asks)


async def storm_quiet(actors: int, scrapes: int, asks: int) -> Sample:
    sample = await storm(actors, 0, asks)
    sample["answered"] = sample["refused"] = float("nan")  # no storm: nothing to compare
    return sample


STORM = Benchmark(
    name="scrape_storm",
    title="asks while waves of concurrent scrapes hit the endpoint, against no scrapes",
    metrics=(
        Metric("p50", "ask p50", "µs", higher_is_better=False, fmt="{:,.1f}"),
        Metric("p99", "ask p99", "µs", higher_is_better=False, target=2.0, fmt="{:,.1f}"),
        Metric("answered", "scrapes answered per wave", "", higher_is_better=True),
        Metric("refused", "scrapes refused per wave", "", higher_is_better=False),
    ),
    ours=storm_ours,
    baseline=storm_quiet,
    sizes={"actors": 100, "scrapes": 1000, "asks": 5000},
    quick_sizes={"actors": 20, "scrapes": 50, "asks": 300},
)

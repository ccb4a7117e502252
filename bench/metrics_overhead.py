"""What metrics cost: tell throughput with per-message accounting on and off, and scrape time.

Run: ``python -m bench.metrics_overhead`` (``--quick`` for a short run).

* tell throughput: one producer tells 200,000 small messages to one actor that counts them,
  with ``Runtime(metrics=True)`` and ``Runtime(metrics=False)`` alternately in the same
  process, median of 5 each; target on/off >= 0.9 on both backends.
* scrape: ``rt.metrics.exposition()`` with 10,000 live unnamed actors of one class that have
  each handled a message; median of 5; target < 100 ms.

On a checkout that predates metrics (no ``metrics=`` argument) it measures the plain runtime
only, which gives the "before" figure.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import Any

import anyio

import understudy as us

N = 200_000
ACTORS = 10_000
ROUNDS = 5


class Inc(us.Message, frozen=True):
    pass


class Count(us.Request[int], frozen=True):
    pass


class Counter(us.Actor):
    def __init__(self) -> None:
        self.n = 0

    async def inc(self, msg: Inc) -> None:
        self.n += 1

    async def count(self, msg: Count) -> int:
        return self.n


def _runtime(metrics: bool | None) -> Any:
    return us.Runtime() if metrics is None else us.Runtime(metrics=metrics)


async def tell_rate(metrics: bool | None, n: int) -> float:
    """Messages per second: ``n`` tells, then one ask that waits for all to be handled."""
    async with _runtime(metrics) as rt:
        ref = await rt.spawn(Counter)
        msg = Inc()
        gc.collect()
        start = time.perf_counter()
        for _ in range(n):
            await ref.tell(msg)
        handled = await ref.ask(Count())
        elapsed = time.perf_counter() - start
        assert handled == n, handled
        return n / elapsed


async def scrape_time(actors: int, rounds: int) -> tuple[float, int]:
    """Median seconds of one exposition with ``actors`` live actors, and its size in bytes."""
    async with us.Runtime() as rt:
        refs = [await rt.spawn(Counter) for _ in range(actors)]
        for ref in refs:
            await ref.tell(Inc())
        for ref in refs:
            await ref.ask(Count())
        times = []
        text = ""
        for _ in range(rounds):
            start = time.perf_counter()
            text = rt.metrics.exposition()
            times.append(time.perf_counter() - start)
        return statistics.median(times), len(text)


def supports_metrics() -> bool:
    try:
        us.Runtime(metrics=False)
    except TypeError:
        return False
    return True


async def main(backend: str, n: int, actors: int, rounds: int) -> dict[str, float]:
    results: dict[str, float] = {}
    if not supports_metrics():
        rates = [await tell_rate(None, n) for _ in range(rounds)]
        results["plain"] = statistics.median(rates)
        return results
    on: list[float] = []
    off: list[float] = []
    await tell_rate(True, n // 10)  # warm up
    for i in range(rounds):
        # alternate which goes first, so drift in the machine's speed hits both alike
        for metrics in (True, False) if i % 2 == 0 else (False, True):
            (on if metrics else off).append(await tell_rate(metrics, n))
    results["on"] = statistics.median(on)
    results["off"] = statistics.median(off)
    results["scrape"], results["scrape_bytes"] = await scrape_time(actors, rounds)
    return results


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages and actors")
    parser.add_argument("--backend", choices=("asyncio", "trio"), action="append")
    args = parser.parse_args()
    n, actors, rounds = (20_000, 1_000, 3) if args.quick else (N, ACTORS, ROUNDS)
    print(f"tell throughput: {n:,} tells to one counting actor, median of {rounds}")
    for backend in args.backend or ("asyncio", "trio"):
        r = anyio.run(main, backend, n, actors, rounds, backend=backend)
        if "plain" in r:
            print(f"  {backend:8s} no metrics layer: {r['plain']:>12,.0f} msg/s")
            continue
        ratio = r["on"] / r["off"]
        verdict = "ok" if ratio >= 0.9 else "BELOW TARGET 0.9"
        print(
            f"  {backend:8s} metrics on {r['on']:>12,.0f} msg/s   off {r['off']:>12,.0f} msg/s"
            f"   on/off {ratio:.3f}  ({verdict})"
        )
        verdict = "ok" if r["scrape"] < 0.1 else "ABOVE TARGET 100 ms"
        print(
            f"  {backend:8s} scrape with {actors:,} live actors: {r['scrape'] * 1e3:.1f} ms"
            f" ({r['scrape_bytes']:,.0f} bytes)  ({verdict})"
        )


if __name__ == "__main__":
    cli()

"""Tell throughput of a plain (non-persistent) actor: the hot path persistence must not slow.

Run: ``python -m bench.tell_throughput`` — one producer tells 200,000 small messages to one
actor that counts them; median of 5 runs, on asyncio and trio.
"""

from __future__ import annotations

import statistics
import time

import understudy as us

N = 200_000
RUNS = 5


class Tick(us.Message, frozen=True):
    pass


class Done(us.Request[int], frozen=True):
    pass


class Counter(us.Actor):
    def __init__(self) -> None:
        self.count = 0

    async def tick(self, msg: Tick) -> None:
        self.count += 1

    async def done(self, msg: Done) -> int:
        return self.count


async def once() -> float:
    async with us.Runtime() as rt:
        ref = await rt.spawn(Counter)
        msg = Tick()
        start = time.perf_counter()
        for _ in range(N):
            await ref.tell(msg)
        assert await ref.ask(Done()) == N
        return N / (time.perf_counter() - start)


async def median_rate() -> float:
    return statistics.median([await once() for _ in range(RUNS)])


def main() -> None:
    for backend in ("asyncio", "trio"):
        rate = us.run(median_rate, backend=backend)
        print(f"{backend:8} tell throughput: {rate:12,.0f} msgs/s (median of {RUNS})")


if __name__ == "__main__":
    main()

"""a. tell throughput: one producer sends small messages to one actor that counts them.

understudy: the main task ``tell``s N ``Tick`` messages to a ``Counter`` actor (mailbox
capacity 1000, overflow ``block``), then ``ask``s it for its count. That reply comes after
every tick was handled, so the clock covers delivering and handling all N.

baseline: the main task sends the same N messages into a bare anyio memory object stream
(buffer 1000) with ``await send``; a consumer task counts them with ``async for``. The clock
stops when the consumer has counted all N and ended.
"""

from __future__ import annotations

import time

import anyio
import msgspec

import understudy as us
from bench.harness import Benchmark, Metric, Sample, check

BUFFER = 1000


class Tick(us.Message, frozen=True):
    n: int


class Count(us.Request[int], frozen=True):
    pass


class Counter(us.Actor):
    class State(msgspec.Struct):
        count: int = 0

    async def tick(self, msg: Tick) -> None:
        self.state.count += 1

    async def get_count(self, msg: Count) -> int:
        return int(self.state.count)


async def tell_and_count(counter: us.Ref, messages: int) -> Sample:
    """Tell ``counter`` (a Counter) ``messages`` ticks; throughput once all were handled."""
    start = time.perf_counter()
    for i in range(messages):
        await counter.tell(Tick(i))
    counted = await counter.ask(Count())
    elapsed = time.perf_counter() - start
    check(counted, messages, f"ticks counted by {counter.name}")
    return {"throughput": messages / elapsed}


async def ours(messages: int) -> Sample:
    async with us.Runtime() as rt:
        return await tell_and_count(await rt.spawn(Counter, capacity=BUFFER), messages)


async def baseline(messages: int) -> Sample:
    send, receive = anyio.create_memory_object_stream[Tick](BUFFER)
    counted = 0

    async def consume() -> None:
        nonlocal counted
        async with receive:
            async for _ in receive:
                counted += 1

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        async with send:
            for i in range(messages):
                await send.send(Tick(i))
    elapsed = time.perf_counter() - start
    check(counted, messages, "ticks counted by the consumer")
    return {"throughput": messages / elapsed}


BENCHMARK = Benchmark(
    name="tell",
    title="one producer tells one counting actor",
    metrics=(Metric("throughput", "throughput", "msgs/s", higher_is_better=True, target=3.0),),
    ours=ours,
    baseline=baseline,
    sizes={"messages": 200_000},
    quick_sizes={"messages": 2_000},
)

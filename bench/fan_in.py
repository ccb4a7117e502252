"""b. fan-in: many senders tell one sink actor.

understudy: S ``Sender`` actors and one ``Sink`` actor (mailbox capacity 1000, overflow
``block``) are spawned first. The clock starts when the main task tells every sender ``Go``;
each sender then, inside its handler, tells the sink M ``Tick`` messages in a loop, so the
senders are actors competing for the sink's mailbox, as in a real fan-in. The clock stops when
the sink has counted all S * M ticks (it sets an event).

baseline: S tasks each hold a clone of the send side of one bare anyio memory object stream
(buffer 1000) and wait on a start event; a consumer task counts with ``async for``. The clock
starts when the event is set; each task sends M messages with ``await send``; the clock stops
when the consumer has counted all S * M and ended.
"""

from __future__ import annotations

import time
from functools import partial

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

import understudy as us
from bench.harness import Benchmark, Metric, Sample, check

BUFFER = 1000
GIVE_UP = 120.0


class Tick(us.Message, frozen=True):
    n: int


class Go(us.Message, frozen=True):
    sink: us.Ref
    count: int


class Sender(us.Actor):
    async def go(self, msg: Go) -> None:
        sink = msg.sink
        for i in range(msg.count):
            await sink.tell(Tick(i))


class Sink(us.Actor):
    """Counts ticks; sets ``done`` when it has counted ``expected`` of them."""

    def __init__(self, expected: int, done: anyio.Event) -> None:
        self.expected = expected
        self.done = done
        self.count = 0

    async def tick(self, msg: Tick) -> None:
        self.count += 1
        if self.count == self.expected:
            self.done.set()


async def ours(senders: int, messages: int) -> Sample:
    total = senders * messages
    done = anyio.Event()
    async with us.Runtime() as rt:
        sink = await rt.spawn(partial(Sink, total, done), capacity=BUFFER)
        refs = [await rt.spawn(Sender) for _ in range(senders)]
        start = time.perf_counter()
        for ref in refs:
            await ref.tell(Go(sink, messages))
        with anyio.fail_after(GIVE_UP):  # a sender that failed would leave us waiting
            await done.wait()
        elapsed = time.perf_counter() - start
    return {"throughput": total / elapsed}


async def baseline(senders: int, messages: int) -> Sample:
    total = senders * messages
    send, receive = anyio.create_memory_object_stream[Tick](BUFFER)
    go = anyio.Event()
    counted = 0

    async def consume() -> None:
        nonlocal counted
        async with receive:
            async for _ in receive:
                counted += 1

    async def produce(
        stream: MemoryObjectSendStream[Tick], *, task_status: TaskStatus[None]
    ) -> None:
        async with stream:
            task_status.started()
            await go.wait()
            for i in range(messages):
                await stream.send(Tick(i))

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        async with send:
            for _ in range(senders):
                await tg.start(produce, send.clone())
        start = time.perf_counter()
        go.set()
    elapsed = time.perf_counter() - start
    check(counted, total, "ticks counted by the consumer")
    return {"throughput": total / elapsed}


BENCHMARK = Benchmark(
    name="fan-in",
    title="sender actors tell one sink actor",
    metrics=(Metric("throughput", "throughput", "msgs/s", higher_is_better=True, target=2.0),),
    ours=ours,
    baseline=baseline,
    sizes={"senders": 100, "messages": 2_000},
    quick_sizes={"senders": 10, "messages": 200},
)

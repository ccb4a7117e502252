"""A runtime in its own process, for the SIGKILL test (tests/test_persistence_crash.py).

Usage: ``python tests/crash_server.py DB BACKEND ACTORS MODE``. Serves persistent counters
``c0 .. c{ACTORS-1}`` — snapshot actors (MODE ``snapshot``), event-sourced ones (MODE
``events``) or snapshot actors keeping the ids in a ``Log`` field (MODE ``log``) — on a
loopback TCP port, which it prints on stdout once ready. Each request line ``<request id>
<actor index>`` is an ask (``durability="commit"``) that records the request id in that
actor's state; its reply line ``<request id> <count>`` is written only after the ask
returned, i.e. after the effect was committed.
"""

from __future__ import annotations

import sys

import anyio
import msgspec
from anyio.streams.buffered import BufferedByteReceiveStream

import understudy as us


class Bump(us.Request[int], frozen=True):
    request: int


class Counter(us.Actor):
    persistent = True

    class State(msgspec.Struct):
        count: int = 0
        requests: list[int] = msgspec.field(default_factory=list)

    async def bump(self, msg: Bump) -> int:
        self.state.count += 1
        self.state.requests.append(msg.request)
        return int(self.state.count)


class Bumped(msgspec.Struct):
    request: int


class JournaledCounter(us.EventSourced):
    events = (Bumped,)
    snapshot_every = 50
    State = Counter.State

    def apply(self, event: Bumped) -> None:
        self.state.count += 1
        self.state.requests.append(event.request)

    async def bump(self, msg: Bump) -> int:
        await self.ctx.persist(Bumped(msg.request))
        return int(self.state.count)


class LogCounter(us.Actor):
    """The request ids in an append-only Log (persisted by delta, one row each)."""

    persistent = True

    class State(msgspec.Struct):
        count: int = 0
        requests: us.Log[int] = us.Log.field(keep=5)

    async def bump(self, msg: Bump) -> int:
        self.state.count += 1
        self.state.requests.append(msg.request)
        return int(self.state.count)


async def main(db: str, actors: int, mode: str) -> None:
    kinds: dict[str, type[us.Actor]] = {
        "snapshot": Counter,
        "events": JournaledCounter,
        "log": LogCounter,
    }
    kind = kinds[mode]
    async with us.Runtime(store=db) as rt:
        refs = [await rt.spawn(kind, name=f"c{i}") for i in range(actors)]
        lock = anyio.Lock()

        async def serve(client: anyio.abc.SocketStream) -> None:
            lines = BufferedByteReceiveStream(client)

            async def answer(request: int, actor: int) -> None:
                count = await refs[actor].ask(Bump(request))
                async with lock:
                    await client.send(f"{request} {count}\n".encode())

            async with anyio.create_task_group() as tg:
                while True:
                    try:
                        line = await lines.receive_until(b"\n", 100)
                    except (anyio.EndOfStream, anyio.IncompleteRead):
                        return
                    request, actor = line.split()
                    tg.start_soon(answer, int(request), int(actor))

        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        print(port, flush=True)
        await listener.serve(serve)


if __name__ == "__main__":
    us.run(main, sys.argv[1], int(sys.argv[3]), sys.argv[4], backend=sys.argv[2])  # type: ignore[arg-type]

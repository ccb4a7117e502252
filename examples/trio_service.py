"""A Starlette service on trio: hypercorn's trio worker serves it, its lifespan runs the runtime.

``GET /greet/{name}`` asks a supervised ``Greeter`` actor; the runtime's app is mounted at
``/runtime`` (probes at ``/runtime/healthz`` and ``/runtime/readyz``). The same idea as
``fastapi_service.py``, with no FastAPI and on trio.

Serve it: ``hypercorn --worker-class trio examples.trio_service:app``.

Run it: ``python examples/trio_service.py`` serves it on 127.0.0.1 (a free port) with trio,
sends it 500 requests, 50 at a time, then crashes the greeter until its supervisor gives up.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator

import httpx
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

import understudy as us


class Greet(us.Request[str], frozen=True):
    name: str


class Break(us.Message, frozen=True):
    pass


class Greeter(us.Actor):
    async def greet(self, msg: Greet) -> str:
        return f"hello, {msg.name}"

    async def crash(self, msg: Break) -> None:
        raise RuntimeError("the greeter lost its words")


runtime = us.Runtime()


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with runtime as rt:
        await rt.start(
            us.Supervisor(
                name="app",
                strategy=us.OneForOne(max_restarts=1, within=60),
                children=[us.Child(Greeter, name="greeter")],
            )
        )
        yield


async def greet(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    try:
        text = await runtime.ref("greeter").ask(Greet(name), timeout=1.0)
    except (us.RuntimeClosed, us.UnknownActor, us.ActorStopped) as exc:
        return JSONResponse({"error": str(exc)}, status_code=503)
    return JSONResponse({"greeting": text})


app = Starlette(
    routes=[
        Route("/greet/{name}", greet),
        Mount("/runtime", app=runtime.metrics.asgi_app()),
    ],
    lifespan=lifespan,
)


async def demo() -> None:
    from hypercorn.config import Config
    from hypercorn.trio import serve

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = None
    config.errorlog = None
    stop = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
            await drive(url)
            stop.set()
    except* Exception as failed:  # the lifespan re-raised the root's error at shutdown
        print("the server stopped with the root's error:", "gave up" in _leaves(failed))


def _leaves(error: BaseException) -> str:
    if isinstance(error, BaseExceptionGroup):
        return " ".join(_leaves(e) for e in error.exceptions)
    return str(error)


async def drive(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        with trio.fail_after(10):
            while True:
                try:
                    if (await client.get("/runtime/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)
        print("ready:", (await client.get("/runtime/readyz")).json()["status"])
        greetings: list[str] = []

        async def some(n: int) -> None:
            for i in range(n):
                greetings.append((await client.get(f"/greet/user{i}")).json()["greeting"])

        async with trio.open_nursery() as load:
            for _ in range(50):
                load.start_soon(some, 10)
        print(f"{len(greetings)} greetings, first: {greetings[0]!r}")
        for _ in range(2):  # one restart is allowed; the second crash makes app give up
            with contextlib.suppress(us.UnderstudyError):
                await runtime.ref("greeter").tell(Break())
            await trio.sleep(0.1)
        # On trio, hypercorn ends the server when the lifespan fails: the runtime stopped
        # (its root gave up) and re-raised that error; the process exits with it.
        with trio.fail_after(10):
            await trio.sleep_forever()


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.CRITICAL)
    trio.run(demo)

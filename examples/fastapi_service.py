"""A FastAPI service whose lifespan runs an understudy runtime.

``GET /price/{item}`` asks a supervised ``Catalog`` actor; the runtime's own app is mounted at
``/runtime`` (``/runtime/metrics``, ``/runtime/tree``, ``/runtime/healthz``,
``/runtime/readyz``: point the orchestrator's liveness and readiness probes at the last two).
When the root supervisor gives up, the runtime stops; ``/runtime/readyz`` and
``/runtime/healthz`` then answer 503 and the endpoints that ask actors answer 503 too, until
the orchestrator restarts the process.

Serve it: ``hypercorn examples.fastapi_service:app`` (or any ASGI server).

Run it: ``python examples/fastapi_service.py`` serves it with hypercorn on 127.0.0.1 (a free
port), sends it 2,000 requests, 100 at a time, over httpx, then crashes the catalog until its
supervisor gives up and shows what the probes and the endpoint answer.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator

import anyio
import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import understudy as us


class Price(us.Request[int], frozen=True):
    item: str


class Break(us.Message, frozen=True):
    pass


class Catalog(us.Actor):
    async def price(self, msg: Price) -> int:
        return 100 + len(msg.item)

    async def crash(self, msg: Break) -> None:
        raise RuntimeError("the catalog's data went bad")


runtime = us.Runtime()  # entered by the lifespan: each start of the app runs it anew


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with runtime as rt:
        await rt.start(
            us.Supervisor(
                name="app",
                strategy=us.OneForOne(max_restarts=2, within=60),
                children=[us.Child(Catalog, name="catalog")],
            )
        )
        yield


app = FastAPI(lifespan=lifespan)
app.mount("/runtime", runtime.metrics.asgi_app())


@app.get("/price/{item}")
async def price(item: str) -> dict[str, object]:
    return {"item": item, "price": await runtime.ref("catalog").ask(Price(item), timeout=1.0)}


@app.exception_handler(us.RuntimeClosed)
@app.exception_handler(us.UnknownActor)
@app.exception_handler(us.ActorStopped)
async def unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The actors are gone (the root gave up, or the runtime is stopping): 503, not 500."""
    return JSONResponse({"error": str(exc)}, status_code=503)


# ------------------------------------------------------------------- the self-demonstration


async def until_back_or_gone(client: httpx.AsyncClient) -> None:
    """Poll /runtime/tree until the catalog runs again or the tree is gone."""
    with anyio.fail_after(5):
        while True:
            tree = (await client.get("/runtime/tree")).json()
            if not tree:
                return
            children = tree[0]["children"]
            if children and children[0]["state"] == "running":
                return
            await anyio.sleep(0.01)


async def demo() -> None:
    from hypercorn.config import Config

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns (and closes) it from here
    config.accesslog = None
    config.errorlog = None
    url = f"http://127.0.0.1:{port}"
    stop = anyio.Event()
    try:
        await drive(url, config, stop)
    except* Exception as failed:  # the lifespan re-raised the root's error at shutdown
        [error] = failed.exceptions
        print("the server stopped with an error:", "gave up" in str(error))


async def drive(url: str, config: object, stop: anyio.Event) -> None:
    from hypercorn.asyncio import serve

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:
            with anyio.fail_after(10):
                while True:  # the server starts the lifespan, then listens
                    try:
                        if (await client.get("/runtime/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await anyio.sleep(0.05)
            print("ready:", (await client.get("/runtime/readyz")).json()["status"])
            answers: list[int] = []

            async def some(n: int) -> None:
                for i in range(n):
                    response = await client.get(f"/price/item{i % 10}")
                    answers.append(response.json()["price"] if response.status_code == 200 else 0)

            async with anyio.create_task_group() as load:
                for _ in range(100):
                    load.start_soon(some, 20)
            print(f"{len(answers)} requests, {sum(1 for a in answers if a)} answered")
            print(f"sum of prices: {sum(answers)}")
            scrape = (await client.get("/runtime/metrics")).text
            line = 'understudy_messages_total{actor="catalog",outcome="ok"}'
            print("scraped:", next(x for x in scrape.splitlines() if x.startswith(line)))

            for _ in range(3):  # two restarts are allowed, the third crash makes app give up
                with contextlib.suppress(us.UnderstudyError):
                    await runtime.ref("catalog").tell(Break())
                await until_back_or_gone(client)
            with anyio.fail_after(10):
                while (await client.get("/runtime/readyz")).status_code == 200:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            ready = await client.get("/runtime/readyz")
            alive = await client.get("/runtime/healthz")
            asked = await client.get("/price/x")
            print("after the root gave up: readyz", ready.status_code, ready.json()["status"])
            print("healthz", alive.status_code, "price", asked.status_code)
        stop.set()


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.CRITICAL)  # the crashes are the point; keep the story
    anyio.run(demo)

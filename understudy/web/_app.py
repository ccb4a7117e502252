"""The runtime's ASGI application (Starlette): ``/metrics``, ``/tree``, ``/healthz``, ``/readyz``.

Starlette was chosen because it is a small, well-kept toolkit that runs on anyio (so on
asyncio and trio alike, with no bridge), composes by mounting (a FastAPI or Starlette host
mounts this app as it is) and brings routing, HEAD/405 handling and test clients without a
validation layer or other dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from understudy.metrics._tree import ActorInfo
from understudy.web._health import Health, liveness, readiness

if TYPE_CHECKING:
    from understudy.metrics import Metrics

MAX_HEAD = 8192
"""Largest request headers accepted, in bytes (431 beyond)."""

MAX_BODY = 65536
"""Largest request body accepted (the app serves no body; larger ones get 413)."""

_NOT_FOUND = "not found: try /metrics, /tree, /healthz or /readyz\n"


class _Chunks(Response):
    """A response whose body is already built in chunks: sent one by one, never joined."""

    def __init__(self, chunks: list[bytes], media_type: str) -> None:
        super().__init__(b"", media_type=media_type)
        self.chunks = chunks
        self.headers["content-length"] = str(sum(len(chunk) for chunk in chunks))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        chunks = [] if scope.get("method") == "HEAD" else [c for c in self.chunks if c]
        if not chunks:
            await send({"type": "http.response.body", "body": b""})
        last = len(chunks) - 1
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < last})


def _json(status: int, body: Health) -> Response:
    return Response(msgspec.json.encode(body), status, media_type="application/json")


def _clean(info: ActorInfo) -> ActorInfo:
    """``info`` with names that JSON can carry (a lone surrogate spelled ``\\udXXX``)."""
    return msgspec.structs.replace(
        info,
        name=_spelled(info.name),
        actor_class=_spelled(info.actor_class),
        children=[_clean(child) for child in info.children],
    )


def _spelled(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _Bounded:
    """Refuses a request whose headers are over ``MAX_HEAD`` bytes (431) or whose body is
    over :data:`MAX_BODY` or of unknown length (413), before it reaches a route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = b"0"
            chunked = False
            size = 0
            for name, value in scope.get("headers", ()):
                size += len(name) + len(value) + 4
                if name == b"content-length":
                    length = value
                elif name == b"transfer-encoding":
                    chunked = True
            if size > MAX_HEAD:
                response = PlainTextResponse(
                    f"request headers over {MAX_HEAD} bytes are refused\n",
                    431,
                    headers={"connection": "close"},
                )
                await response(scope, receive, send)
                return
            if chunked or not length.isdigit() or int(length) > MAX_BODY:
                response = PlainTextResponse(
                    f"request bodies over {MAX_BODY} bytes (or of unknown length) are refused\n",
                    413,
                    headers={"connection": "close"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def app_of(metrics: Metrics) -> ASGIApp:
    """The ASGI app of ``metrics``' runtime. It serves the runtime as it is at each request
    (before it starts and after it exits too: the probes then answer 503)."""

    async def scrape(request: Request) -> Response:
        return _Chunks(await metrics.scrape(), CONTENT_TYPE_PLAIN_0_0_4)

    async def tree(request: Request) -> Response:
        actors = metrics.tree()
        try:
            body = msgspec.json.encode(actors)
        except (UnicodeEncodeError, msgspec.EncodeError):
            body = msgspec.json.encode([_clean(info) for info in actors])
        return Response(body, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return _json(*liveness(metrics))

    async def readyz(request: Request) -> Response:
        return _json(*readiness(metrics))

    async def not_found(request: Request, exc: Any) -> Response:
        return PlainTextResponse(_NOT_FOUND, 404)

    app = Starlette(
        routes=[
            Route("/metrics", scrape, methods=["GET"]),
            Route("/tree", tree, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        exception_handlers={404: not_found},
    )
    return _Bounded(app)

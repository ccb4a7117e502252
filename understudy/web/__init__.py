"""The runtime on the web: one ASGI app, served by hypercorn on asyncio or trio.

``rt.metrics.asgi_app()`` is the app (Starlette): ``GET /metrics`` (Prometheus text format
0.0.4), ``GET /tree`` (the live actor tree as JSON, ``rt.tree()``), ``GET /healthz``
(liveness) and ``GET /readyz`` (readiness; see :mod:`understudy.web._health`). A host
service mounts it (``app.mount("/runtime", rt.metrics.asgi_app())``);
``Runtime(metrics=(host, port))`` serves it itself with hypercorn, in the runtime's task
group: loopback unless another interface is named, at most :data:`MAX_CONNECTIONS` open
connections (one more is answered 503 and closed), idle connections closed after
:data:`IDLE_TIMEOUT` seconds, request heads bounded by :data:`MAX_HEAD` bytes and bodies by
:data:`MAX_BODY`, and a scrape built in chunks with the event loop running in between,
concurrent scrapes sharing one build.
"""

from understudy.web._app import MAX_BODY, MAX_HEAD, app_of
from understudy.web._health import Health, RootInfo, liveness, readiness
from understudy.web._server import IDLE_TIMEOUT, MAX_CONNECTIONS, Server

__all__ = [
    "IDLE_TIMEOUT",
    "MAX_BODY",
    "MAX_CONNECTIONS",
    "MAX_HEAD",
    "Health",
    "RootInfo",
    "Server",
    "app_of",
    "liveness",
    "readiness",
]

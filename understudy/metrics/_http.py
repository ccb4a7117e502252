"""The metrics endpoint: a minimal HTTP/1.1 server on ``anyio.create_tcp_listener``.

It runs as one task in the runtime's task group (plus one task per open connection), on
whichever backend runs the runtime; no threads. It answers ``GET``/``HEAD`` on
``/metrics`` (Prometheus text format 0.0.4) and ``/tree`` (the actor tree as JSON), keeps
connections alive as HTTP/1.1 allows (a Prometheus server reuses its connection), and closes
a connection that sends nothing for :data:`IDLE_TIMEOUT` seconds, a malformed request, or a
request head over :data:`MAX_HEAD` bytes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
import msgspec
from anyio.abc import Listener, SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

if TYPE_CHECKING:
    from understudy.metrics import Metrics

logger = logging.getLogger("understudy.metrics")

IDLE_TIMEOUT = 30.0
"""Seconds a connection may wait for (the rest of) a request before it is closed."""

MAX_HEAD = 8192
"""Largest request line plus headers accepted, in bytes."""

MAX_BODY = 65536
"""Largest request body read (and discarded); larger requests are refused."""

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    500: "Internal Server Error",
}


async def bind(host: str, port: int) -> tuple[Listener[SocketStream], tuple[str, int]]:
    """Listen on ``host:port``; the listener and its bound ``(host, port)``.

    Raises ``OSError`` when it cannot (address in use, unknown host).
    """
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    address = listener.listeners[0].extra(SocketAttribute.local_address)
    return listener, (str(address[0]), int(address[1]))


async def serve(metrics: Metrics, listener: Listener[SocketStream]) -> None:
    """Serve connections until cancelled; the listening socket is closed on the way out."""

    async def handle(client: SocketStream) -> None:
        await _handle(metrics, client)

    async with listener:
        await listener.serve(handle)


async def _handle(metrics: Metrics, client: SocketStream) -> None:
    """Serve requests on one connection until it closes. Never raises (but cancellation)."""
    async with client:
        reader = BufferedByteReceiveStream(client)
        try:
            while True:
                with anyio.fail_after(IDLE_TIMEOUT):
                    head = await reader.receive_until(b"\r\n\r\n", MAX_HEAD)
                    keep_alive, length, response = _respond(metrics, head)
                    if length > MAX_BODY:
                        keep_alive, response = False, _response(413, "text/plain", b"too large\n")
                    elif length:
                        await reader.receive_exactly(length)
                    await client.send(response)
                if not keep_alive:
                    return
        except (
            anyio.EndOfStream,
            anyio.IncompleteRead,
            anyio.DelimiterNotFound,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            TimeoutError,
            OSError,
        ):
            return  # the client went away, sent too much, or nothing in time
        except Exception:
            logger.exception("metrics endpoint: error while serving a connection")


def _respond(metrics: Metrics, head: bytes) -> tuple[bool, int, bytes]:
    """(keep the connection alive, body length to skip, response bytes) for one request."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return False, 0, _response(400, "text/plain", b"malformed request line\n")
    method, target, version = parts
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            return False, 0, _response(400, "text/plain", b"malformed header\n")
        headers[name.strip().lower()] = value.strip()
    connection = headers.get(b"connection", b"").lower()
    keep_alive = connection != b"close" and (version != b"HTTP/1.0" or connection == b"keep-alive")
    try:
        length = int(headers.get(b"content-length", b"0"))
    except ValueError:
        return False, 0, _response(400, "text/plain", b"bad content-length\n")
    if length < 0 or b"transfer-encoding" in headers:
        return False, 0, _response(400, "text/plain", b"request bodies are not accepted\n")
    path = target.partition(b"?")[0]
    if method not in (b"GET", b"HEAD"):
        status, ctype, body = 405, "text/plain", b"only GET and HEAD are served\n"
    elif path == b"/metrics":
        try:
            status, ctype, body = 200, CONTENT_TYPE_PLAIN_0_0_4, generate_latest(metrics.registry)
        except Exception:
            logger.exception("metrics endpoint: a collector failed")
            status, ctype, body = 500, "text/plain", b"a metrics collector failed; see the log\n"
    elif path == b"/tree":
        status, ctype, body = 200, "application/json", msgspec.json.encode(metrics.tree())
    else:
        status, ctype, body = 404, "text/plain", b"not found: try /metrics or /tree\n"
    response = _response(status, ctype, body, keep_alive=keep_alive, head_only=method == b"HEAD")
    return keep_alive, length, response


def _response(
    status: int, ctype: str, body: bytes, *, keep_alive: bool = False, head_only: bool = False
) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n"
    )
    if status == 405:
        head += "Allow: GET, HEAD\r\n"
    return (head + "\r\n").encode("ascii") + (b"" if head_only else body)


__all__ = ["IDLE_TIMEOUT", "MAX_HEAD", "bind", "serve"]

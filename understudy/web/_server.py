"""Serving the runtime's ASGI app over HTTP with hypercorn, on asyncio or trio.

hypercorn speaks HTTP (h11 for HTTP/1.1, h2), keeps connections alive, closes idle ones and
bounds a request's head. It has no connection cap, so the accept loop is ours: it accepts on
a plain non-blocking socket (backend-neutral through anyio), refuses a connection beyond
:data:`MAX_CONNECTIONS` with a ``503`` and closes it, rides out accept errors (out of file
descriptors, aborted connections: logged, then retried after a pause) and hands every other
connection to hypercorn's per-connection server for the running backend. That hand-off is the
only place that asks which backend runs (hypercorn has one worker per backend).
"""

from __future__ import annotations

import errno
import functools
import logging
import socket
from typing import TYPE_CHECKING, Any

import anyio
import sniffio

from understudy.web._app import MAX_HEAD

if TYPE_CHECKING:
    from starlette.types import ASGIApp

logger = logging.getLogger("understudy.web")

IDLE_TIMEOUT = 30
"""Seconds a connection may stay idle (or wait for the rest of a request) before it is closed."""


MAX_CONNECTIONS = 256
"""Open connections served at once; one beyond it is answered 503 and closed at once."""

ACCEPT_PAUSE = 0.1
"""Seconds the accept loop waits after an accept error that may clear (out of descriptors)."""

_TRANSIENT = {
    errno.EMFILE,
    errno.ENFILE,
    errno.ENOBUFS,
    errno.ENOMEM,
    errno.ECONNABORTED,
    errno.EPROTO,
    errno.EPERM,
}

_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 29\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n\r\n"
    b"too many connections; retry\r\n"
)


def _config() -> Any:
    from hypercorn.config import Config

    config = Config()
    config.keep_alive_timeout = IDLE_TIMEOUT
    config.read_timeout = IDLE_TIMEOUT
    config.h11_max_incomplete_size = MAX_HEAD
    config.h2_max_header_list_size = MAX_HEAD
    config.h2_max_concurrent_streams = 16
    config.websocket_max_message_size = MAX_HEAD
    config.include_server_header = False
    config.errorlog = logger
    config.accesslog = None
    return config


class Server:
    """An HTTP endpoint serving one ASGI app: bound by :meth:`bind`, served by :meth:`serve`
    (a task in the runtime's task group), closed by :meth:`close`.

    ``open`` is how many connections are open now, ``refused`` how many were refused for
    being over ``max_connections``, ``accept_errors`` how many accepts failed.
    """

    def __init__(self, app: ASGIApp, sock: socket.socket, max_connections: int) -> None:
        self.app = app
        self.max_connections = max_connections
        self.open = 0
        self.refused = 0
        self.accept_errors = 0
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self.address: tuple[str, int] = (str(host), int(port))
        """The bound ``(host, port)``."""

    @classmethod
    def bind(
        cls, app: ASGIApp, host: str, port: int, *, max_connections: int | None = None
    ) -> Server:
        """Listen on ``host:port`` (port 0: a free one); ``max_connections`` defaults to
        :data:`MAX_CONNECTIONS`. Raises ``OSError`` when it cannot (address in use, unknown
        host). Never blocks for long (a name lookup at most)."""
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return cls(app, sock, MAX_CONNECTIONS if max_connections is None else max_connections)

    def close(self) -> None:
        """Stop listening (idempotent). Connections still open end with the serve task."""
        self._sock.close()

    async def serve(self) -> None:
        """Accept and serve connections until cancelled. Never raises but cancellation:
        an error accepting or serving a connection is logged and the loop goes on."""
        config = _config()
        try:
            async with anyio.create_task_group() as connections:
                while True:
                    try:
                        await anyio.wait_readable(self._sock)
                        conn, _ = self._sock.accept()
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        if self._sock.fileno() == -1:
                            return  # closed under us: the runtime is exiting
                        self.accept_errors += 1
                        if exc.errno not in _TRANSIENT:
                            logger.error("web: accept failed: %s", exc)
                        elif self.accept_errors == 1 or self.accept_errors % 1000 == 0:
                            logger.warning("web: accept failed (%s); pausing accepts", exc)
                        await anyio.sleep(ACCEPT_PAUSE)
                        continue
                    except Exception:  # anything else: never let it end the runtime
                        if self._sock.fileno() == -1:
                            return
                        self.accept_errors += 1
                        logger.exception("web: accept failed")
                        await anyio.sleep(ACCEPT_PAUSE)
                        continue
                    if self.open >= self.max_connections:
                        self._refuse(conn)
                        continue
                    self.open += 1
                    connections.start_soon(self._connection, conn, config)
        finally:
            self._sock.close()

    def _refuse(self, conn: socket.socket) -> None:
        self.refused += 1
        try:
            conn.setblocking(False)
            conn.send(_REFUSAL)
        except OSError:
            pass
        finally:
            conn.close()

    async def _connection(self, conn: socket.socket, config: Any) -> None:
        try:
            conn.setblocking(False)
            if sniffio.current_async_library() == "trio":
                await _serve_trio(self.app, config, conn)
            else:
                await _serve_asyncio(self.app, config, conn)
        except Exception:
            logger.exception("web: error while serving a connection")
        finally:
            self.open -= 1
            conn.close()


# hypercorn's per-connection servers keep a connection whose client closed it while idle
# until the keep-alive timer runs out (the end of input does not stop that timer): with a
# connection cap, closed connections would hold slots for IDLE_TIMEOUT seconds. These
# subclasses stop the timer once input ends.


@functools.cache
def _asyncio_connection() -> Any:
    from hypercorn.asyncio.tcp_server import TCPServer

    class Connection(TCPServer):
        async def _read_data(self) -> None:
            await super()._read_data()
            await self.idle_task.stop()

    return Connection


@functools.cache
def _trio_connection() -> Any:
    from hypercorn.trio.tcp_server import TCPServer

    class Connection(TCPServer):
        async def _read_data(self) -> None:
            await super()._read_data()
            await self.idle_task.stop()

    return Connection


async def _serve_asyncio(app: ASGIApp, config: Any, conn: socket.socket) -> None:
    import asyncio

    from hypercorn.app_wrappers import ASGIWrapper
    from hypercorn.asyncio.worker_context import WorkerContext

    reader, writer = await asyncio.open_connection(sock=conn, limit=MAX_HEAD * 2)
    loop = asyncio.get_running_loop()
    connection = _asyncio_connection()
    wrapped = ASGIWrapper(app)  # type: ignore[arg-type]  # Starlette's and hypercorn's ASGI types
    await connection(wrapped, loop, config, WorkerContext(None), {}, reader, writer)


async def _serve_trio(app: ASGIApp, config: Any, conn: socket.socket) -> None:
    import trio
    from hypercorn.app_wrappers import ASGIWrapper
    from hypercorn.trio.worker_context import WorkerContext

    stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
    wrapped = ASGIWrapper(app)  # type: ignore[arg-type]  # Starlette's and hypercorn's ASGI types
    await _trio_connection()(wrapped, config, WorkerContext(None), {}, stream)

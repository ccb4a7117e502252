"""The fake over loopback HTTP/1.1, for end-to-end tests and demos (asyncio and trio).

A small anyio server rather than an ASGI one: the faults it must produce exactly (silence
before the status line, a connection dropped in the middle of a chunked body) are below
what an ASGI app can control.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import anyio
from anyio.abc import SocketStream

from understudy.testing._fake import RESET, play

if TYPE_CHECKING:
    from understudy.testing._fake import FakeMessagesAPI

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
}
_MAX_HEAD = 64 * 1024


@contextlib.asynccontextmanager
async def serve(fake: FakeMessagesAPI, host: str, port: int) -> AsyncIterator[str]:
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    bound_port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:

        async def handle(client: SocketStream) -> None:
            async with client:
                with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    await _one(fake, client)

        tg.start_soon(listener.serve, handle)
        try:
            yield f"http://{host}:{bound_port}"
        finally:
            tg.cancel_scope.cancel()  # the fake "killed": open streams drop mid-body
    await listener.aclose()


async def _one(fake: FakeMessagesAPI, client: SocketStream) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await client.receive()
        if len(data) > _MAX_HEAD:
            return
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        rest += await client.receive()
    plan = fake.answer(method, target.split("?", 1)[0], headers, rest[:length])
    if plan.delay:
        await anyio.sleep(plan.delay)
    status = f"HTTP/1.1 {plan.status} {_REASONS.get(plan.status, 'Error')}\r\n"
    out = [status, *(f"{k}: {v}\r\n" for k, v in plan.headers), "connection: close\r\n"]
    if not plan.stream:
        body = plan.chunks[0] if plan.chunks else b""
        if body is RESET:
            return  # closed without a response
        assert isinstance(body, bytes)
        out.append(f"content-length: {len(body)}\r\n\r\n")
        await client.send("".join(out).encode("latin-1") + body)
        return
    out.append("transfer-encoding: chunked\r\n\r\n")
    await client.send("".join(out).encode("latin-1"))
    async for chunk in play(plan):
        if chunk is RESET:
            return  # dropped mid-body: the client sees an incomplete chunked body
        assert isinstance(chunk, bytes)
        await client.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    await client.send(b"0\r\n\r\n")

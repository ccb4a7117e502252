"""The fake's in-process transport: an ``httpx2.MockTransport`` (the SDK 2.x HTTP client)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import anyio
import httpx2

from understudy.testing._fake import RESET, play

if TYPE_CHECKING:
    from understudy.testing._fake import FakeMessagesAPI, Plan


def mock_transport(fake: FakeMessagesAPI) -> httpx2.MockTransport:
    """Answer each request with the fake's plan: the delay before the headers, then the body
    chunk by chunk (pauses slept, a reset raised as ``httpx2.ReadError`` as a dropped
    connection is)."""

    async def handle(request: httpx2.Request) -> httpx2.Response:
        headers = {name.lower(): value for name, value in request.headers.items()}
        plan = fake.answer(request.method, request.url.path, headers, request.content)
        if plan.delay:
            await anyio.sleep(plan.delay)
        if not plan.stream:
            chunk = plan.chunks[0] if plan.chunks else b""
            if chunk is RESET:
                raise httpx2.ReadError("connection reset by peer (fake)", request=request)
            assert isinstance(chunk, bytes)
            return httpx2.Response(plan.status, headers=plan.headers, content=chunk)
        return httpx2.Response(plan.status, headers=plan.headers, content=_body(plan, request))

    return httpx2.MockTransport(handle)


async def _body(plan: Plan, request: httpx2.Request) -> AsyncIterator[bytes]:
    async for chunk in play(plan):
        if chunk is RESET:
            raise httpx2.ReadError("connection reset by peer (fake)", request=request)
        assert isinstance(chunk, bytes)
        yield chunk

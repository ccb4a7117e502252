"""A scripted Messages API for the agent tests, behind the real SDK client.

TO BE REPLACED at merge by ``understudy.testing.FakeMessagesAPI`` (the llm branch's fake)
and ``understudy.llm.Model``: this is the smallest thing that lets the agent tests drive the
real ``anthropic.AsyncAnthropic`` over an ``httpx2.MockTransport`` until those land. It is
not part of the package.

``Script`` answers each ``POST /v1/messages`` with the next scripted reply (a function of
the request body, or a fixed body); it records every request body. ``SDKModel`` is the
adapter satisfying :class:`understudy.agents.ModelClient`: it reserves ``max_tokens`` plus
an input estimate on the current message's budget before the call and settles with the
response's usage after (what ``understudy.llm.Model`` does properly).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2

from understudy.actors import sender
from understudy.errors import BudgetExceeded

Body = dict[str, Any]
Reply = Body | Callable[[Body], Body] | tuple[int, Body]

_ids = itertools.count(1)


def message(content: list[Body], stop: str = "end_turn", **usage: int) -> Body:
    """A Messages API response body."""
    return {
        "id": f"msg_{next(_ids):06d}",
        "type": "message",
        "role": "assistant",
        "model": "claude-fake",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage.get("input_tokens", 10),
            "output_tokens": usage.get("output_tokens", 5),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def text(t: str, stop: str = "end_turn", **usage: int) -> Body:
    return message([{"type": "text", "text": t}], stop, **usage)


def use(name: str, input: Body, id: str | None = None) -> Body:
    return {"type": "tool_use", "id": id or f"toolu_{next(_ids):06d}", "name": name, "input": input}


def tools(*uses: Body, say: str = "") -> Body:
    content = ([{"type": "text", "text": say}] if say else []) + list(uses)
    return message(content, "tool_use")


class Script:
    """Scripted replies in order; ``default`` answers once the script is used up."""

    def __init__(self, *replies: Reply, default: Reply | None = None) -> None:
        self.replies = list(replies)
        self.default = default
        self.requests: list[Body] = []

    def add(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        if self.replies:
            reply = self.replies.pop(0)
        elif self.default is not None:
            reply = self.default
        else:
            return httpx2.Response(
                500,
                json={
                    "type": "error",
                    "error": {"type": "api_error", "message": "script exhausted"},
                },
            )
        status = 200
        if isinstance(reply, tuple):
            status, reply = reply
        if callable(reply):
            reply = reply(body)
        return httpx2.Response(status, json=reply, headers={"request-id": f"req_{next(_ids)}"})

    def sse(self, request: httpx2.Request) -> httpx2.Response:
        """As :meth:`handler`, but the reply as a Messages API SSE stream (text deltas in
        words, tool inputs as one ``input_json_delta``)."""
        response = self.handler(request)
        if response.status_code != 200:
            return response
        return httpx2.Response(
            200,
            content=to_sse(json.loads(response.content)).encode(),
            headers={"content-type": "text/event-stream", "request-id": "req_sse"},
        )

    def streaming_client(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key="test",
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(self.sse)),
        )

    def client(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key="test",
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(self.handler)),
        )


def to_sse(body: Body) -> str:
    """A response body as the SSE events of the same message."""
    events: list[tuple[str, Body]] = []
    start = dict(body, content=[], stop_reason=None)
    events.append(("message_start", {"type": "message_start", "message": start}))
    for index, block in enumerate(body["content"]):
        if block["type"] == "text":
            events.append(
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            )
            for word in block["text"].split(" "):
                piece = word + " " if word != block["text"].split(" ")[-1] else word
                events.append(
                    (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": piece},
                        },
                    )
                )
        else:
            events.append(
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": dict(block, input={}),
                    },
                )
            )
            events.append(
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {
                            "type": "input_json_delta",
                            "partial_json": json.dumps(block["input"]),
                        },
                    },
                )
            )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": body["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": body["usage"]["output_tokens"]},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)


class SDKModel:
    """A minimal ``ModelClient``: the SDK's ``messages.create`` plus a budget reservation.

    ``price`` is dollars per token (both directions) for the budget's usd; tokens are
    reserved as ``max_tokens`` + a character-count estimate of the input.
    """

    def __init__(
        self, client: anthropic.AsyncAnthropic, name: str = "claude-fake", price: float = 0.0
    ) -> None:
        self.client = client
        self.name = name
        self.price = price
        self.calls = 0

    async def create(self, **params: Any) -> Any:
        current = sender()
        limits = current[5] if current is not None else None
        budget = limits[1] if limits is not None else None
        estimate = params["max_tokens"] + len(json.dumps(params["messages"])) // 4
        reservation = None
        if budget is not None:
            reservation = budget.reserve(tokens=estimate, usd=estimate * self.price)
        try:
            self.calls += 1
            reply = await self.client.messages.create(model=self.name, **params)
        except BaseException:
            if reservation is not None:
                reservation.release()
            raise
        if reservation is not None:
            used = reply.usage.input_tokens + reply.usage.output_tokens
            reservation.settle(tokens=used, usd=used * self.price)
        return reply


class StreamingSDKModel(SDKModel):
    """``understudy.llm.Model.stream``'s shape: ``on_text`` called for each text delta."""

    async def stream(self, *, on_text: Callable[[str], object] | None = None, **params: Any) -> Any:
        self.calls += 1
        async with self.client.messages.stream(model=self.name, **params) as events:
            async for event in events:
                if event.type == "text" and on_text is not None:
                    on_text(event.text)
            return await events.get_final_message()


__all__ = ["BudgetExceeded", "SDKModel", "Script", "message", "text", "tools", "use"]

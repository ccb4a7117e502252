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

    def client(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key="test",
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(self.handler)),
        )


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


__all__ = ["BudgetExceeded", "SDKModel", "Script", "message", "text", "tools", "use"]

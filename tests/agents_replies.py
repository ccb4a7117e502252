"""Reply builders for the agent tests, on :class:`understudy.testing.FakeMessagesAPI`.

Thin wrappers over the fake's own builders with a fixed usage (10 input, 5 output tokens per
reply) so that the tests can assert exact token counts and costs; ``sent`` is the Messages
requests a fake received (without its ``count_tokens`` requests); ``model`` an
``understudy.llm.Model`` on a fake, free of charge unless priced.
"""

from __future__ import annotations

from typing import Any

from understudy.llm import Model, Price
from understudy.testing import FakeMessagesAPI, Reply

USAGE = {"input_tokens": 10, "output_tokens": 5}


def text(t: str, stop: str = "end_turn") -> Reply:
    return FakeMessagesAPI.text(t, stop_reason=stop, **USAGE)


def use(name: str, input: dict[str, Any], id: str = "") -> dict[str, Any]:
    return FakeMessagesAPI.use(name, input, tool_id=id)


def tools(*uses: dict[str, Any], say: str = "") -> Reply:
    return FakeMessagesAPI.tool_uses(*uses, text=say, **USAGE)


def message(blocks: list[dict[str, Any]], stop: str = "end_turn") -> Reply:
    return FakeMessagesAPI.message(blocks, stop_reason=stop, **USAGE)


def fake(*replies: Reply, default: Reply | None = None) -> FakeMessagesAPI:
    """A fake answering ``replies`` in order, then ``default`` (without one: a 500
    ``api_error`` "script exhausted", so that a test notices a call it did not expect)."""
    if default is None:
        default = FakeMessagesAPI.error(500, message="script exhausted")
    return FakeMessagesAPI(default=default).script(*replies)


def sent(api: FakeMessagesAPI) -> list[dict[str, Any]]:
    """The bodies of the ``/v1/messages`` requests ``api`` received, in order."""
    return [r.body for r in api.requests if r.path == "/v1/messages"]


def model(
    api: FakeMessagesAPI, name: str = "claude-fake", per_token: float = 0.0, **options: Any
) -> Model:
    """A Model on ``api``; ``per_token`` is its price in dollars per token, both ways."""
    m = per_token * 1_000_000
    options.setdefault("price", Price(m, m, m, m, m) if per_token else Price.zero())
    options.setdefault("retries", 0)
    options.setdefault("breaker", None)
    return api.model(name, **options)

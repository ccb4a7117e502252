"""An agent with two tools, answering offline.

The model here is a few lines of script standing in for Claude (it calls both tools, then
answers from their results), so the example runs without a network or an API key. With a
real model, set ``model = us.llm.Model("claude-haiku-4-5")`` instead; in tests, use the fake
Messages API of ``understudy.testing``.

Run: ``python examples/agent.py [asyncio|trio]``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from anthropic.types import Message

import understudy as us


class GetWeather(us.Request[str], frozen=True):
    """The weather forecast for a city."""

    city: str


class Convert(us.Request[float], frozen=True):
    """Convert an amount of euros to US dollars."""

    euros: float


class Travel(us.Tool):
    read_only = True  # no side effects: no effect journal needed

    async def weather(self, msg: GetWeather) -> str:
        return f"sunny, 24 C in {msg.city}"

    async def convert(self, msg: Convert) -> float:
        return round(msg.euros * 1.08, 2)


class ScriptedModel:
    """Stands in for Claude: first calls both tools, then answers from their results."""

    name = "scripted"

    async def create(self, **params: Any) -> Message:
        last = params["messages"][-1]["content"]
        results = [block["content"] for block in last if block["type"] == "tool_result"]
        if results:
            content: list[dict[str, Any]] = [
                {"type": "text", "text": f"It is {results[0]}; 20 EUR is {results[1]} USD."}
            ]
            stop = "end_turn"
        else:
            content = [
                {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "t2", "name": "convert", "input": {"euros": 20}},
            ]
            stop = "tool_use"
        return Message.model_validate(
            {"id": "msg", "type": "message", "role": "assistant", "model": self.name,
             "content": content, "stop_reason": stop,
             "usage": {"input_tokens": 50, "output_tokens": 20}}
        )  # fmt: skip


class Guide(us.Agent):
    model = ScriptedModel()
    system = "You help travellers."
    tools = ("travel",)


async def main() -> None:
    store = Path(tempfile.mkdtemp()) / "guide.db"
    async with us.Runtime(store=store) as rt:
        await rt.spawn(Travel, name="travel")
        guide = await rt.spawn(Guide, name="conversation-1")  # one actor per conversation
        reply = await guide.ask(us.Prompt("Weather in Paris, and 20 EUR in USD?"))
        print(reply.text)
        print(f"{reply.turns} model calls, {reply.usage.total} tokens")


if __name__ == "__main__":
    us.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")  # type: ignore[arg-type]

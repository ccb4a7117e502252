"""An agent with two tools, answering offline.

The model here is ``understudy.testing``'s fake Messages API, scripted by a few lines standing
in for Claude (it calls both tools, then answers from their results), so the example runs
without a network or an API key: the agent calls it through a real ``us.llm.Model`` and the
real SDK. With Claude, set ``model = us.llm.Model("claude-haiku-4-5")`` instead.

Run: ``python examples/agent.py [asyncio|trio]``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import understudy as us
from understudy.testing import FakeMessagesAPI, Received, Reply


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


def claude(request: Received) -> Reply:
    """Stands in for Claude: first calls both tools, then answers from their results."""
    last = request.body["messages"][-1]["content"]
    results = [block["content"] for block in last if block["type"] == "tool_result"]
    if results:
        return fake.text(f"It is {results[0]}; 20 EUR is {results[1]} USD.")
    return fake.tool_uses(
        fake.use("get_weather", {"city": "Paris"}), fake.use("convert", {"euros": 20})
    )


fake = FakeMessagesAPI(respond=claude)


class Guide(us.Agent):
    model = fake.model("claude-haiku-4-5")  # an us.llm.Model on the fake Messages API
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

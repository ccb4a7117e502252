"""A tool served by a pool: many conversations' tool calls run at once on its workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from anthropic.types import Message

import understudy as us

pytestmark = pytest.mark.anyio


class Lookup(us.Request[str], frozen=True):
    """Look a word up in the slow dictionary."""

    word: str


class Dictionary(us.Tool):
    """A slow, read-only tool: each lookup takes 50 ms of (simulated) I/O."""

    read_only = True
    running = 0
    peak = 0
    served: dict[int, int]

    async def lookup(self, msg: Lookup) -> str:
        cls = type(self)
        cls.running += 1
        cls.peak = max(cls.peak, cls.running)
        cls.served[id(self)] = cls.served.get(id(self), 0) + 1
        try:
            await anyio.sleep(0.05)
        finally:
            cls.running -= 1
        return f"{msg.word}: a word"


class LooksUp:
    """Stands in for a model: asks for one lookup, then answers from its result."""

    name = "scripted"

    async def create(self, **params: Any) -> Message:
        last = params["messages"][-1]["content"]
        results = [b["content"] for b in last if isinstance(b, dict) and b["type"] == "tool_result"]
        if results:
            content: list[dict[str, Any]] = [{"type": "text", "text": results[0]}]
            stop = "end_turn"
        else:
            word = params["messages"][-1]["content"]
            word = word if isinstance(word, str) else word[0]["text"]
            content = [{"type": "tool_use", "id": "t1", "name": "lookup", "input": {"word": word}}]
            stop = "tool_use"
        return Message.model_validate(
            {"id": "msg", "type": "message", "role": "assistant", "model": self.name,
             "content": content, "stop_reason": stop,
             "usage": {"input_tokens": 10, "output_tokens": 5}}
        )  # fmt: skip


class Reader(us.Agent):
    model = LooksUp()
    system = "You look words up."
    tools = ("dictionary",)


async def test_a_tool_pool_serves_many_conversations_at_once(tmp_path: Path) -> None:
    Dictionary.running = Dictionary.peak = 0
    Dictionary.served = {}
    words = [f"word{i}" for i in range(16)]
    async with us.Runtime(store=tmp_path / "app.db") as rt:
        await rt.spawn_pool(Dictionary, name="dictionary", size=4)
        replies: dict[str, str] = {}

        async def converse(word: str) -> None:
            agent = await rt.spawn(Reader, name=f"conv-{word}")
            replies[word] = (await agent.ask(us.Prompt(word), timeout=30)).text

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for word in words:
                    tg.start_soon(converse, word)
    assert replies == {word: f"{word}: a word" for word in words}  # every conversation answered
    assert 1 < Dictionary.peak <= 4  # lookups ran at once, at most one per worker
    assert len(Dictionary.served) > 1 and sum(Dictionary.served.values()) == len(words)

"""Chaos for agents: 100 concurrent conversations of 3-6 tool turns, under kills of agents and
tools and 20 % faults of the Messages API: every conversation ends with an answer or a typed
error, every effect ran exactly once per key, every answered conversation's turns are all
committed."""

from __future__ import annotations

import random
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

import understudy as us
from tests.agents_replies import model as agent_model
from tests.agents_replies import text, tools, use
from understudy.agents._log import Finished, Intent, ModelTurn, ToolDone, decode_entries
from understudy.testing import FakeMessagesAPI, Received, Reply

pytestmark = pytest.mark.anyio

CONVERSATIONS = 100
SEEDS = {"asyncio": 7101, "trio": 7102}
BACKOFF = us.Backoff(min=0.001, max=0.002, reset_after=0.01)
"""Quick restarts; the quiet period resets the attempt count (Backoff.delay overflows after
1,024 attempts without a reset: see the notes)."""


class Record(us.Request[str], frozen=True):
    """Record a number."""

    n: int


class Look(us.Request[str], frozen=True):
    """Look a number up."""

    n: int


OUTSIDE: Counter[str] = Counter()


class Recorder(us.Tool):
    async def record(self, msg: Record) -> str:
        assert self.idempotency_key is not None
        await anyio.sleep(0.001)
        OUTSIDE[self.idempotency_key] += 1  # the outside world's counter
        await anyio.sleep(0.001)
        return f"recorded {msg.n}"

    async def reconcile(self, key: str, request: Any) -> Any:
        return f"recorded {request.n}" if OUTSIDE[key] else us.NOT_RUN


class Looker(us.Tool):
    read_only = True

    async def look(self, msg: Look) -> str:
        await anyio.sleep(0.001)
        return f"{msg.n} is a number"


def tool_turns(conv: str) -> int:
    return 3 + zlib.crc32(conv.encode()) % 4  # 3..6


def scripted(rng: random.Random) -> Any:
    """The reply to a request: 20 % overloaded (drawn in arrival order, so asking again
    after a fault may succeed), else the conversation's next tool call or its answer."""

    def respond(request: Received) -> Reply:
        body = request.body
        if rng.random() < 0.2:
            return FakeMessagesAPI.overloaded()
        conv = body["metadata"]["user_id"]
        turn = sum(1 for m in body["messages"] if m["role"] == "assistant")
        if turn < tool_turns(conv):
            name = "record" if turn % 2 == 0 else "look"
            tool_id = f"t_{conv}_{turn}_{rng.randrange(10**6)}"
            return tools(use(name, {"n": turn}, id=tool_id))
        return text(f"{conv}: done")

    return respond


async def test_conversations_under_kills_and_api_faults(tmp_path: Path, anyio_backend: str) -> None:
    OUTSIDE.clear()
    seed = SEEDS[anyio_backend]
    rng = random.Random(seed)
    api = FakeMessagesAPI(seed=seed, respond=scripted(rng))
    model = agent_model(api, estimate="local")  # one request per model call
    outcomes: dict[str, str] = {}
    async with us.Runtime(store=tmp_path / "chaos.db") as rt:
        await rt.start(us.Supervisor(
            strategy=us.OneForOne(max_restarts=10_000, within=1.0),
            children=[
                us.Child(Recorder, name="recorder", backoff=BACKOFF),
                us.Child(Looker, name="looker", backoff=BACKOFF),
            ],
        ))  # fmt: skip
        children = []
        for i in range(CONVERSATIONS):
            name = f"c{i}"
            cls = type(f"Worker{i}", (us.Agent,), {
                "model": model, "tools": ("recorder", "looker"), "max_turns": 10,
                "tool_timeout": 5.0, "params": {"metadata": {"user_id": name}}})  # fmt: skip
            children.append(us.Child(cls, name=name, backoff=BACKOFF))
        await rt.start(us.Supervisor(
            strategy=us.OneForOne(max_restarts=10_000, within=1.0), children=children
        ))  # fmt: skip
        chaos = us.Chaos(rt, seed=seed)
        kills = 0

        async def conversation(name: str) -> None:
            for _ in range(200):
                try:
                    reply = await rt.ref(name).ask(us.Prompt("go", id="p"))
                except us.AgentError as exc:
                    outcomes[name] = type(exc).__name__
                    return
                except Exception:  # a fault or a kill: ask again, it resumes
                    await anyio.sleep(0.002)
                    continue
                outcomes[name] = reply.text
                return
            outcomes[name] = "gave up"

        async with anyio.create_task_group() as group:
            for i in range(CONVERSATIONS):
                group.start_soon(conversation, f"c{i}")

            async def monkey() -> None:
                nonlocal kills
                while len(outcomes) < CONVERSATIONS:
                    kills += len(await chaos.kill_random(2, name="c*"))
                    kills += len(await chaos.kill_random(1, name="recorder"))
                    kills += len(await chaos.kill_random(1, name="looker"))
                    await anyio.sleep(0.02)

            group.start_soon(monkey)
        assert rt.store is not None
        logs = {f"c{i}": decode_entries(await rt.store.journal(f"c{i}"))
                for i in range(CONVERSATIONS)}  # fmt: skip
    replay = f"(seed {seed}, {kills} kills)"
    assert kills > 20, replay
    assert set(outcomes) == {f"c{i}" for i in range(CONVERSATIONS)}, replay
    typed = {name: o for name, o in outcomes.items() if o != f"{name}: done"}
    assert all(o in ("EffectInDoubt", "ToolErrorLimit") for o in typed.values()), (typed, replay)
    assert len(typed) <= CONVERSATIONS // 10, (typed, replay)
    # every effect ran at most once per key, and every result the log says ran did run
    assert all(n == 1 for n in OUTSIDE.values()), replay
    for name, entries in logs.items():
        intents = {e.key: e for _, e in entries if isinstance(e, Intent)}
        done = {e.tool_use_id: e for _, e in entries if isinstance(e, ToolDone)}
        for key, intent in intents.items():
            result = done.get(intent.tool_use_id)
            if result is not None and result.how in ("ran", "reconciled"):
                assert OUTSIDE[key] == 1, (name, key, replay)
        if outcomes[name] == f"{name}: done":
            turns = [e for _, e in entries if isinstance(e, ModelTurn)]
            assert len(turns) == tool_turns(name) + 1, (name, replay)
            assert [t.turn for t in turns] == list(range(1, len(turns) + 1))
            assert any(isinstance(e, Finished) and e.outcome == "answer" for _, e in entries)

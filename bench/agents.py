"""Durable agent turns: 100 concurrent conversations of 4 turns (3 tool calls, then an answer).

Every side uses the same ``anthropic.AsyncAnthropic`` client over the same
``understudy.testing.FakeMessagesAPI`` (its ``httpx2.MockTransport``, zero latency) returning
the same replies: a ``tool_use`` of a ``lookup`` tool for the first three model calls of a
conversation, then a text answer. The agent calls it through ``understudy.llm.Model`` (budget,
call record and metrics per call: the layer's real cost); the baselines call the SDK bare.

understudy: each conversation is an ``us.Agent`` actor (named ``conv-i``) with a read-only
``us.Tool`` actor; every model response is committed to the store before the loop goes on
(group commit, ``synchronous="full"``: an fsync per group, durable against a power loss), so
every turn is durable before the next; a read-only tool's result is committed with the next
model turn (a resumed conversation runs a lost one again), the prompt with the first model
turn, and the last model turn with the prompt's outcome (before the reply).

Every side sends the same requests: the system prompt marked for prompt caching (an
``Agent``'s default, and what a careful SDK user does), content as blocks, the assistant's
blocks as the API returned them (``model_dump(exclude_none=True)``), so the fake does the
same work for each.

baselines, in the same run:

- ``memory`` (a): a bare-SDK loop per conversation that keeps the history in a list, calls
  the tool as a plain function and persists nothing: the floor.
- ``sqlite`` (b): the same loop plus one execute + commit of the whole conversation (JSON) per
  turn, what the popular checkpointers do (LangGraph's ``AsyncSqliteSaver``: WAL mode and
  SQLite's default ``synchronous=FULL``, so the same durability as ours): ``aiosqlite`` on
  asyncio; on trio, where aiosqlite does not run, stdlib ``sqlite3`` on a worker thread
  (``anyio.to_thread``), one hop per turn.

Reported: durable turns/s (wall), CPU per turn (process time, µs) and bytes stored per
conversation (the baseline (a) stores nothing, so that ratio is against (b) only).
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import anthropic
import anyio

import understudy as us
from bench.harness import Benchmark, Metric, Sample, check
from understudy.llm import Model, Price
from understudy.testing import FakeMessagesAPI, Received, Reply

TOOL_TURNS = 3


class Lookup(us.Request[str], frozen=True):
    """Look a word up."""

    word: str


class Dictionary(us.Tool):
    read_only = True

    async def lookup(self, msg: Lookup) -> str:
        return f"{msg.word}: a word"


def lookup(word: str) -> str:
    return f"{word}: a word"


def respond(request: Received) -> Reply:
    """The reply to a request: a ``lookup`` call for each of the first three model calls of
    a conversation, then the answer (100 input, 20 output tokens each)."""
    turn = sum(1 for m in request.body["messages"] if m["role"] == "assistant")
    if turn < TOOL_TURNS:
        call = FakeMessagesAPI.use("lookup", {"word": f"w{turn}"}, tool_id=f"toolu_{turn}")
        return FakeMessagesAPI.tool_uses(call, text="Let me look that up.", **USAGE)
    return FakeMessagesAPI.text("All three words are words.", **USAGE)


USAGE = {"input_tokens": 100, "output_tokens": 20}


def fake() -> FakeMessagesAPI:
    """The zero-latency fake every side talks to (over its in-process mock transport)."""
    return FakeMessagesAPI(respond=respond)


def model(api: FakeMessagesAPI) -> Model:
    """The agent's model: an ``understudy.llm.Model`` on ``api``, free, estimating locally
    (one request per call, as the baselines), no retries or breaker (no faults here)."""
    return api.model("claude-fake", price=Price.zero(), estimate="local", retries=0, breaker=None)


SYSTEM = [{"type": "text", "text": "You look words up.", "cache_control": {"type": "ephemeral"}}]

TOOLS = [
    {
        "name": "lookup",
        "description": "Look a word up.",
        "input_schema": {
            "type": "object",
            "properties": {"word": {"type": "string"}},
            "required": ["word"],
        },
    }
]


def _sample(turns: int, wall: float, cpu: float, stored: int, conversations: int) -> Sample:
    return {
        "turns_per_s": turns / wall,
        "cpu_us": cpu / turns * 1e6,
        "bytes": stored / conversations,
    }


async def ours(conversations: int) -> Sample:
    api = fake()

    class Reader(us.Agent):
        model = model(api)
        system = "You look words up."
        tools = ("dictionary",)
        max_tokens = 256

    with tempfile.TemporaryDirectory() as tmp:
        store = us.Store(str(Path(tmp) / "agents.db"), synchronous="full")
        async with us.Runtime(store=store) as rt:
            await rt.spawn(Dictionary, name="dictionary")
            refs = [await rt.spawn(Reader, name=f"conv-{i}") for i in range(conversations)]
            replies: list[us.AgentReply] = []

            async def one(ref: us.Ref) -> None:
                replies.append(await ref.ask(us.Prompt("Look up three words.")))

            wall, cpu = time.perf_counter(), time.process_time()
            async with anyio.create_task_group() as group:
                for ref in refs:
                    group.start_soon(one, ref)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            assert rt.store is not None
            stored = rt.store.stats.bytes_written
    check({r.turns for r in replies}, {TOOL_TURNS + 1}, "model calls per conversation")
    return _sample(conversations * (TOOL_TURNS + 1), wall, cpu, stored, conversations)


async def _loop(sdk: anthropic.AsyncAnthropic, commit: Any, key: str) -> int:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "Look up three words."}]}
    ]
    turns = 0
    while True:
        reply = await sdk.messages.create(
            model="claude-fake",
            max_tokens=256,
            system=SYSTEM,  # type: ignore[arg-type]
            tools=TOOLS,  # type: ignore[arg-type]
            messages=messages,  # type: ignore[arg-type]
        )
        turns += 1
        content = [b.model_dump(exclude_none=True) for b in reply.content]
        messages.append({"role": "assistant", "content": content})
        if reply.stop_reason != "tool_use":
            await commit(key, messages)
            return turns
        results = [
            {"type": "tool_result", "tool_use_id": b.id, "content": lookup(b.input["word"])}
            for b in reply.content
            if b.type == "tool_use"
        ]
        messages.append({"role": "user", "content": results})
        await commit(key, messages)


async def _baseline(conversations: int, commit: Any) -> tuple[float, float, list[int]]:
    sdk = fake().client()
    turns: list[int] = []

    async def one(i: int) -> None:
        turns.append(await _loop(sdk, commit, f"conv-{i}"))

    wall, cpu = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as group:
        for i in range(conversations):
            group.start_soon(one, i)
    return time.perf_counter() - wall, time.process_time() - cpu, turns


async def memory(conversations: int) -> Sample:
    async def nothing(key: str, messages: list[dict[str, Any]]) -> None:
        return None

    wall, cpu, turns = await _baseline(conversations, nothing)
    check(set(turns), {TOOL_TURNS + 1}, "model calls per conversation")
    return _sample(sum(turns), wall, cpu, 0, conversations) | {"bytes": 1.0}


CREATE = "CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY, data TEXT NOT NULL)"
UPSERT = "INSERT OR REPLACE INTO conversations (id, data) VALUES (?, ?)"


async def sqlite(conversations: int) -> Sample:
    stored = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "checkpoints.db")
        setup = sqlite3.connect(path)
        setup.execute("PRAGMA journal_mode = WAL")
        setup.execute(CREATE)
        setup.close()
        try:
            import sniffio

            backend = sniffio.current_async_library()
        except Exception:  # pragma: no cover
            backend = "asyncio"
        if backend == "asyncio":
            import aiosqlite

            async with aiosqlite.connect(path) as db:

                async def commit(key: str, messages: list[dict[str, Any]]) -> None:
                    nonlocal stored
                    data = json.dumps(messages)
                    stored += len(data)
                    await db.execute(UPSERT, (key, data))
                    await db.commit()

                wall, cpu, turns = await _baseline(conversations, commit)
        else:
            conn = sqlite3.connect(path, check_same_thread=False)
            lock = anyio.Lock()

            def write(key: str, data: str) -> None:
                conn.execute(UPSERT, (key, data))
                conn.commit()

            async def commit(key: str, messages: list[dict[str, Any]]) -> None:
                nonlocal stored
                data = json.dumps(messages)
                stored += len(data)
                async with lock:  # one connection, one writer (as aiosqlite's thread)
                    await anyio.to_thread.run_sync(write, key, data)

            try:
                wall, cpu, turns = await _baseline(conversations, commit)
            finally:
                conn.close()
    check(set(turns), {TOOL_TURNS + 1}, "model calls per conversation")
    return _sample(sum(turns), wall, cpu, stored, conversations)


TURNS = Metric("turns_per_s", "durable agent turns/s", "turns/s", True)
CPU = Metric("cpu_us", "CPU per turn", "µs", False, fmt="{:,.0f}")
BYTES = Metric("bytes", "bytes stored per conversation (4 turns)", "B", False)

VS_MEMORY = Benchmark(
    name="agents_memory",
    title="agent turns, durable, vs (a) a bare-SDK loop persisting nothing",
    metrics=(
        Metric("turns_per_s", TURNS.label, TURNS.unit, True, target=0.85),
        Metric("cpu_us", CPU.label, CPU.unit, False, target=1.3),
    ),
    ours=ours,
    baseline=memory,
    sizes={"conversations": 100},
    quick_sizes={"conversations": 10},
)

VS_SQLITE = Benchmark(
    name="agents_sqlite",
    title="agent turns, durable, vs (b) the same loop + one SQLite commit of the conversation "
    "per turn",
    metrics=(
        Metric("turns_per_s", TURNS.label, TURNS.unit, True, target=1.5),
        Metric("cpu_us", CPU.label, CPU.unit, False),
        Metric("bytes", BYTES.label, BYTES.unit, False, target=1.0),
    ),
    ours=ours,
    baseline=sqlite,
    sizes={"conversations": 100},
    quick_sizes={"conversations": 10},
)

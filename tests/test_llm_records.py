"""Call records in the store, the costs API and CLI, the rate limiter, the LLM metrics."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import understudy as us
from understudy.cli import main
from understudy.llm._limiter import RateLimiter
from understudy.testing import FakeMessagesAPI

HI = [{"role": "user", "content": "Hello"}]


class Ask(us.Request[str], frozen=True):
    prompt: str


class Agent(us.Actor):
    def __init__(self, model: us.llm.Model) -> None:
        self.model = model

    async def ask(self, msg: Ask) -> str:
        reply = await self.model.create(
            max_tokens=50, messages=[{"role": "user", "content": msg.prompt}]
        )
        block = reply.content[0]
        return block.text if block.type == "text" else ""


async def record_some_calls(path: Path) -> tuple[float, dict[str, float]]:
    """Two agents in two conversations, one of the calls retried once; what each budget
    settled."""
    fake = FakeMessagesAPI(seed=4).script(
        FakeMessagesAPI.text("one"), FakeMessagesAPI.overloaded(), FakeMessagesAPI.text("two")
    )
    sonnet = fake.model("claude-sonnet-4-5")
    haiku = us.llm.Model("claude-haiku-4-5", client=fake.client(), backoff=0.001)
    spent: dict[str, float] = {}
    async with us.Runtime(store=path) as rt:
        planner = await rt.spawn(lambda: Agent(sonnet), name="planner")
        writer = await rt.spawn(lambda: Agent(haiku), name="writer")
        async with rt.budget(name="conv-a", usd=1.0) as a:
            assert await planner.ask(Ask("plan it")) == "one"
        async with rt.budget(name="conv-b", usd=1.0) as b:
            assert await writer.ask(Ask("write it")) == "two"
            await writer.ask(Ask("again"))
        spent = {"conv-a": a.spent.usd, "conv-b": b.spent.usd}
        by_agent = await us.llm.costs(rt, by="agent")
    return sum(row["usd"] for row in by_agent), spent


@pytest.mark.anyio
async def test_every_call_is_a_row_in_the_store_and_the_costs_add_up(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    total, spent = await record_some_calls(path)
    records = us.llm.read_records(str(path))
    assert [(r.agent, r.agent_type, r.conversation, r.attempts) for r in records] == [
        ("planner", "Agent", "conv-a", 1),
        ("writer", "Agent", "conv-b", 2),
        ("writer", "Agent", "conv-b", 1),
    ]
    assert all(r.outcome == "ok" and r.request_id.startswith("req_") for r in records)
    assert len({r.correlation_id for r in records}) == 2  # one per rt.budget scope
    assert total == pytest.approx(sum(spent.values()))
    by_conversation = {
        row["conversation"]: row for row in await us.llm.costs(path, by="conversation")
    }
    assert by_conversation["conv-a"]["usd"] == spent["conv-a"]
    assert by_conversation["conv-b"]["usd"] == pytest.approx(spent["conv-b"])
    assert by_conversation["conv-b"]["calls"] == 2
    with pytest.raises(ValueError, match="by must be one of"):
        await us.llm.costs(path, by="tenant")


@pytest.mark.anyio
async def test_a_record_rides_the_next_group_commit_and_survives_a_failed_one(
    tmp_path: Path,
) -> None:
    """A call does not wait for its record's commit: the record goes with the store's next
    group (with the budget figures its settlement changed). A failed group keeps it for
    the one after; ``costs`` waits for it; nothing is written twice."""
    path = tmp_path / "app.db"
    fake = FakeMessagesAPI().script(FakeMessagesAPI.text("one"), FakeMessagesAPI.text("two"))
    model = fake.model("claude-sonnet-4-5")
    async with us.Runtime(store=path) as rt:
        assert rt.store is not None
        agent = await rt.spawn(lambda: Agent(model), name="agent")
        rt.store.fail_next_commits(1)  # the group that carries the first record fails
        async with rt.budget(name="conv", usd=1.0, persistent=True) as budget:
            assert await agent.ask(Ask("first")) == "one"  # the call itself succeeds
            with anyio.fail_after(5):
                while rt.store.stats.failed_groups == 0:
                    await anyio.sleep(0.01)
            assert await agent.ask(Ask("second")) == "two"
            rows = await us.llm.costs(rt)  # flushes: both records are committed
            assert [row["usd"] for row in rows] and len(rows) == 2
            spent = budget.spent.usd
    records = us.llm.read_records(str(path))
    assert [r.outcome for r in records] == ["ok", "ok"]  # each once, in call order
    assert sum(r.usd for r in records) == pytest.approx(spent)
    stored = {b["name"]: b for b in _budget_rows(path)}
    assert stored["conv"]["spent"]["usd"] == pytest.approx(spent)


def _budget_rows(path: Path) -> list[dict[str, Any]]:
    from understudy.persistence._inspect import budget_records

    return budget_records(str(path))


def test_the_costs_command_prints_a_table_json_and_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.db"
    anyio.run(record_some_calls, path)
    out = io.StringIO()
    assert main(["costs", str(path), "--by", "agent"], out) == 0
    table = out.getvalue().splitlines()
    assert table[0].split()[:3] == ["agent", "calls", "errors"]
    assert {line.split()[0] for line in table[1:]} == {"planner", "writer"}
    out = io.StringIO()
    assert main(["costs", str(path), "--by", "model", "--format", "json"], out) == 0
    rows = json.loads(out.getvalue())
    assert {row["model"] for row in rows} == {"claude-sonnet-4-5", "claude-haiku-4-5"}
    out = io.StringIO()
    assert main(["costs", str(path), "--format", "csv"], out) == 0
    calls = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(calls) == 3 and calls[1]["attempts"] == "2"
    out = io.StringIO()
    assert main(["costs", str(path), "--by", "day"], out) == 0
    assert time.strftime("%Y-%m-%d", time.gmtime()) in out.getvalue()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "tenant"], "--by must be one of"),
        (["--format", "xml"], "--format must be one of"),
    ],
)
def test_the_costs_command_refuses_bad_input_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    path = tmp_path / "app.db"
    anyio.run(record_some_calls, path)
    assert main(["costs", str(path), *args], io.StringIO()) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_the_costs_command_names_a_missing_or_broken_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["costs", str(tmp_path / "nope.db")], io.StringIO()) == 2
    assert "no database file" in capsys.readouterr().err
    broken = tmp_path / "broken.db"
    broken.write_text("not a database")
    assert main(["costs", str(broken)], io.StringIO()) == 2
    assert "cannot read" in capsys.readouterr().err


def test_the_limiter_spaces_requests_and_honours_an_empty_bucket_header() -> None:
    now = [100.0]
    limiter = RateLimiter(rpm=60, tpm=None, clock=lambda: now[0])
    waits = [limiter.reserve(10) for _ in range(62)]
    assert waits[:60] == [0.0] * 60  # a full bucket
    assert waits[60] == pytest.approx(1.0) and waits[61] == pytest.approx(2.0)
    headers = FakeMessagesAPI().answer("POST", "/v1/messages", {"x-api-key": "k"}, b"{}").headers
    assert any(name == "anthropic-ratelimit-requests-remaining" for name, _ in headers)
    quiet = RateLimiter(rpm=None, tpm=None, clock=lambda: now[0])
    reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 30))
    quiet.observe(
        {
            "anthropic-ratelimit-tokens-remaining": "0",
            "anthropic-ratelimit-tokens-reset": reset,
        }
    )
    assert 28 < quiet.reserve(10) <= 30


@pytest.mark.anyio
async def test_tokens_per_minute_makes_callers_wait_and_the_wait_is_counted() -> None:
    from understudy.llm._model import _local_estimate

    messages = [{"role": "user", "content": "x" * 600}]
    each = _local_estimate({"messages": messages})
    # the bucket holds two calls but 5 tokens: the second waits 5 tokens' refill
    tpm = 2 * each - 5
    fake = FakeMessagesAPI()
    model = fake.model(estimate="local", tokens_per_minute=tpm)
    async with us.Runtime() as rt, rt.budget(name="c"):
        start = anyio.current_time()
        for _ in range(2):
            await model.create(max_tokens=5, messages=messages)
        waited = anyio.current_time() - start
        text = rt.metrics.exposition()
    assert waited >= 5 * 60 / tpm * 0.9
    assert 'understudy_llm_rate_limit_waits_total{model="claude-sonnet-4-5"} 1.0' in text


@pytest.mark.anyio
async def test_the_metrics_have_bounded_labels_and_the_five_token_buckets() -> None:
    system = [{"type": "text", "text": "rules " * 300, "cache_control": {"type": "ephemeral"}}]
    fake = FakeMessagesAPI().script(FakeMessagesAPI.overloaded())
    model = fake.model()
    async with us.Runtime() as rt:
        agent = await rt.spawn(lambda: Agent(model))
        async with rt.budget(name="conversation-123"):
            for _ in range(2):
                await model.create(max_tokens=20, system=system, messages=HI)
            await agent.ask(Ask("hi"))
        text = rt.metrics.exposition()
    assert "conversation-123" not in text  # never a conversation id in a label
    for bucket in ("input", "output", "cache_read", "cache_write_5m"):
        assert f'token_type="{bucket}"' in text
    assert (
        'understudy_llm_retries_total{model="claude-sonnet-4-5",reason="overloaded_error"} 1.0'
        in text
    )
    assert 'agent_type="Agent"' in text and 'agent_type="none"' in text
    assert 'understudy_llm_request_duration_seconds_bucket{le="81.92"' in text
    assert 'understudy_llm_breaker_state{model="claude-sonnet-4-5",state="closed"} 1.0' in text


@pytest.mark.anyio
async def test_the_docs_table_of_llm_metrics_matches_a_real_scrape() -> None:
    from test_metrics import documented, parse

    from understudy.llm._model import _local_estimate

    long = [{"role": "user", "content": "x" * 3000}]
    asked = _local_estimate({"messages": long})
    # sonnet's bucket holds its two attempts and the stream's estimate but 30 tokens
    tpm = 3 * asked - 30
    fake = FakeMessagesAPI().script(FakeMessagesAPI.overloaded(), FakeMessagesAPI.overloaded())
    model = fake.model(
        retries=1, fallbacks=("claude-haiku-4-5",), estimate="local", tokens_per_minute=tpm
    )
    async with us.Runtime() as rt:
        agent = await rt.spawn(lambda: Agent(model))
        async with rt.budget(name="c"):
            await agent.ask(Ask("x" * 3000))  # two 529s on sonnet, then haiku
            await model.stream(max_tokens=5, messages=long)  # waits for the refill
        families, _ = parse(rt.metrics.exposition())
    llm = {name: row for name, row in documented().items() if row[2] == "exported with llm calls"}
    assert len(llm) == 11
    exported = {name for name in families if name.startswith("understudy_llm_")}
    assert exported == set(llm)
    for name, (kind, labels, _) in llm.items():
        family = families[name]
        assert family.type == kind, name
        assert family.samples, f"the workload gave {name} no samples"
        seen = {label for sample in family.samples for label in sample.labels} - {"le"}
        assert seen == labels, f"{name} has labels {seen}; docs/metrics.md says {set(labels)}"


@pytest.mark.anyio
async def test_a_version_2_store_gains_the_llm_calls_table_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    import sqlite3

    from understudy.persistence._schema import MIGRATIONS

    db = tmp_path / "app.db"
    conn = sqlite3.connect(db)
    for statements in MIGRATIONS[:2]:  # the layout of schema version 2
        for statement in statements:
            conn.execute(statement)
    conn.execute("INSERT INTO snapshots VALUES ('alice', 4, x'80', 0)")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    fake = FakeMessagesAPI()
    model = fake.model(estimate="local")
    async with us.Runtime(store=db) as rt, rt.budget(name="after-upgrade"):
        assert rt.store is not None and rt.store.schema_found == 2
        await model.create(max_tokens=5, messages=HI)
    (record,) = us.llm.read_records(str(db))
    assert record.conversation == "after-upgrade"
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT actor, version FROM snapshots").fetchall() == [("alice", 4)]
    conn.close()


@pytest.mark.anyio
async def test_llm_conversation_names_the_calls_made_inside_it() -> None:
    fake = FakeMessagesAPI(seed=5)
    async with us.Runtime() as rt:
        model = fake.model("claude-haiku-4-5", runtime=rt)
        params: dict[str, Any] = {"max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
        async with rt.budget(name="batch-7", usd=1.0):
            with us.llm.conversation("ticket-42"):
                await model.create(**params)
            await model.create(**params)  # outside the block: the budget's name
        records = us.llm.call_log(rt).records
    assert [r.conversation for r in records] == ["ticket-42", "batch-7"]
    with pytest.raises(TypeError, match="name must be a str"), us.llm.conversation(42):  # type: ignore[arg-type]
        pass

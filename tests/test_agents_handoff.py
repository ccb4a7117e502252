"""Agents as tools of agents: a chain three deep with nested budgets that add up."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

import understudy as us
from tests.agents_replies import fake, model, sent, text, tools, use
from understudy.agents._log import ToolDone, decode_entries

pytestmark = pytest.mark.anyio


async def test_three_deep_chain_with_nested_budgets_adding_up(tmp_path: Path) -> None:
    s_expert = fake(text("The answer is 42."))
    s_special = fake(tools(use("expert", {"task": "compute it"}, id="e1")), text("Expert says 42."))
    s_triage = fake(
        tools(use("specialist", {"task": "ask the expert"}, id="h1")), text("It is 42.")
    )

    class Expert(us.Agent):
        """Knows the answer."""

        model = model(s_expert)

    class Specialist(us.Agent):
        """Handles hard questions."""

        model = model(s_special)
        tools = (us.AgentTool("expert", Expert, tokens=2_000),)

    class Triage(us.Agent):
        model = model(s_triage)
        tools = (us.AgentTool("specialist", Specialist, tokens=5_000),)

    async with us.Runtime(store=tmp_path / "a.db") as rt:
        conv = await rt.spawn(Triage, name="t1")
        async with rt.budget(name="request", tokens=20_000) as budget:
            answer = await conv.ask(us.Prompt("What is it?"))
        assert rt.store is not None
        rows = await rt.store.journal("t1")
        child_rows = await rt.store.journal("t1/h1")
    assert answer.text == "It is 42."
    calls = len(sent(s_expert)) + len(sent(s_special)) + len(sent(s_triage))
    assert calls == 5
    assert budget.spent.tokens == 15 * calls  # every call charged once, to the nesting
    assert budget.reserved.tokens == 0
    # the usage of the whole chain is attributed: the triage answer includes its callees'
    assert answer.usage.total == 15 * calls
    (handoff,) = [e for _, e in decode_entries(rows) if isinstance(e, ToolDone)]
    assert (
        handoff.agent == "test_three_deep_chain_with_nested_budgets_adding_up.<locals>.Specialist"
    )
    assert handoff.conversation == "t1/h1"
    assert handoff.usage.total == 15 * 3
    (deeper,) = [e for _, e in decode_entries(child_rows) if isinstance(e, ToolDone)]
    assert deeper.conversation == "t1/h1/e1" and deeper.usage.total == 15
    # the specialist's tool schema is the task
    tool = sent(s_triage)[0]["tools"][0]
    assert tool["name"] == "specialist" and tool["description"] == "Handles hard questions."
    assert tool["input_schema"]["properties"] == {"task": {"type": "string"}}


async def test_a_callee_over_its_nested_budget_is_an_error_for_the_caller(
    tmp_path: Path,
) -> None:
    s_callee = fake(default=text("too long"))
    s_caller = fake(tools(use("helper", {"task": "x"}, id="h")), text("Helper failed; sorry."))

    class Helper(us.Agent):
        """Helps."""

        model = model(s_callee)
        max_tokens = 500

    class Caller(us.Agent):
        model = model(s_caller)
        tools = (us.AgentTool("helper", Helper, tokens=100),)

    async with us.Runtime(store=tmp_path / "a.db") as rt:
        conv = await rt.spawn(Caller, name="c")
        async with rt.budget(tokens=10_000) as budget:
            answer = await conv.ask(us.Prompt("go"))
    assert answer.text == "Helper failed; sorry."
    assert sent(s_callee) == []  # the callee's call did not fit its budget: never sent
    result = sent(s_caller)[1]["messages"][-1]["content"][0]
    assert result["is_error"] and "could not finish" in result["content"]
    assert "budget 'c/h' cannot cover" in result["content"]
    assert budget.spent.tokens == 30


_ = msgspec


async def test_inspect_shows_the_conversation_turn_by_turn_with_its_usage(tmp_path: Path) -> None:
    import io
    import json

    from understudy.cli import main

    s_callee = fake(text("42"))
    s_caller = fake(
        tools(use("expert", {"task": "compute"}, id="h1"), say="Asking."), text("It is 42.")
    )

    class Expert(us.Agent):
        """Knows."""

        model = model(s_callee)

    class Front(us.Agent):
        model = model(s_caller)
        tools = (us.AgentTool("expert", Expert),)

    db = tmp_path / "a.db"
    async with us.Runtime(store=db) as rt:
        conv = await rt.spawn(Front, name="front-1")
        await conv.ask(us.Prompt("What is it?", id="q1"))
    out = io.StringIO()
    assert main(["inspect", str(db), "--conversation", "front-1"], out) == 0
    text_lines = out.getvalue().splitlines()
    assert text_lines[0].startswith("conversation 'front-1': agent ")
    assert "tools expert" in text_lines[0]
    body = "\n".join(text_lines)
    assert "[q1] What is it?" in body
    assert "tool_use: expert(h1)" in body and "in 10 out 5" in body
    assert "handoff " in body and "[conversation front-1/h1, in 10 out 5" in body
    assert "[q1] answer after 2 model calls: It is 42." in body
    assert text_lines[-1] == (
        "totals: 2 model calls, in 20 out 10 cache r/w 0/0; handoffs in 10 out 5 cache r/w 0/0"
    )
    out = io.StringIO()
    assert main(["inspect", str(db), "--conversation", "front-1", "--json"], out) == 0
    document = json.loads(out.getvalue())
    assert document["totals"]["model_calls"] == 2
    assert [e["type"] for e in document["entries"]] == [
        "Started", "UserTurn", "ModelTurn", "ToolDone", "ModelTurn", "Finished"
    ]  # fmt: skip

"""The agent's tool-use loop on a scripted Messages API (the real SDK over a mock transport)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, ClassVar

import anyio
import msgspec
import pytest

import understudy as us
from tests.agents_replies import fake, message, model, sent, text, tools, use
from understudy.testing import FakeMessagesAPI

pytestmark = pytest.mark.anyio


class GetWeather(us.Request[str], frozen=True):
    """The weather forecast for a city."""

    city: str
    days: int = 1


class Convert(us.Request[float], frozen=True):
    """Convert an amount between currencies."""

    amount: float
    to: str


class Weather(us.Tool):
    read_only = True
    calls: ClassVar[list[str]] = []
    running = 0
    peak = 0

    async def forecast(self, msg: GetWeather) -> str:
        Weather.running += 1
        Weather.peak = max(Weather.peak, Weather.running)
        await anyio.sleep(0.01)
        Weather.running -= 1
        Weather.calls.append(msg.city)
        return f"sunny in {msg.city} for {msg.days} days"


class Money(us.Tool):
    read_only = True

    async def convert(self, msg: Convert) -> float:
        Weather.running += 1
        Weather.peak = max(Weather.peak, Weather.running)
        await anyio.sleep(0.01)
        Weather.running -= 1
        if msg.to == "XXX":
            raise ValueError("unknown currency XXX")
        return msg.amount * 2


def agent(script: FakeMessagesAPI, **attrs: Any) -> type[us.Agent]:
    attrs.setdefault("tools", ("weather", "money"))
    attrs.setdefault("system", "You help travellers.")
    attrs.setdefault("model", model(script))
    return type("Helper", (us.Agent,), attrs)


async def start(rt: us.Runtime) -> None:
    await rt.spawn(Weather, name="weather")
    await rt.spawn(Money, name="money")


async def spawn(rt: us.Runtime, cls: type[us.Actor], name: str) -> us.Ref:
    """Start a conversation under a supervisor. Until the core branch's errors-as-answers
    lands, a typed outcome raised by the agent crashes it; the supervisor restarts it and it
    resumes from its log (after the merge it is an answer and the actor just goes on)."""
    await rt.start(
        us.Supervisor(
            strategy=us.OneForOne(max_restarts=100, within=1.0),
            children=[us.Child(cls, name=name, backoff=us.Backoff(min=0.001, max=0.001))],
        )
    )
    return rt.ref(name)


def results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool_result blocks of a request's last (user) message."""
    last = body["messages"][-1]
    assert last["role"] == "user"
    return [b for b in last["content"] if b["type"] == "tool_result"]


async def test_two_tools_called_in_parallel_and_answered(tmp_path: Path) -> None:
    Weather.peak = 0
    script = fake(
        tools(
            use("get_weather", {"city": "Paris"}, id="t1"),
            use("get_weather", {"city": "Rome", "days": 2}, id="t2"),
            use("convert", {"amount": 10, "to": "EUR"}, id="t3"),
            say="Let me check.",
        ),
        text("Paris and Rome are sunny; 10 is 20 EUR."),
    )
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await start(rt)
        conv = await spawn(rt, agent(script), "conv-1")
        answer = await conv.ask(us.Prompt("Weather in Paris and Rome? And 10 in EUR?"))
    assert answer.text == "Paris and Rome are sunny; 10 is 20 EUR."
    assert answer.turns == 2
    assert answer.usage.input == 20 and answer.usage.output == 10
    assert Weather.peak == 2  # the weather and money calls overlapped (two actors)
    first, second = sent(script)
    assert first["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert {t["name"] for t in first["tools"]} == {"get_weather", "convert"}
    weather = next(t for t in first["tools"] if t["name"] == "get_weather")
    assert weather["description"] == "The weather forecast for a city."
    assert weather["input_schema"]["required"] == ["city"]
    got = {r["tool_use_id"]: r for r in results(second)}
    assert got["t1"]["content"] == "sunny in Paris for 1 days"
    assert got["t2"]["content"] == "sunny in Rome for 2 days"
    assert got["t3"]["content"] == "20.0"
    assert not any(r.get("is_error") for r in got.values())
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]


async def test_validation_error_goes_back_and_the_model_corrects_it(tmp_path: Path) -> None:
    script = fake(
        tools(use("get_weather", {"city": 12}, id="bad")),
        tools(use("get_weather", {"city": "Oslo"}, id="good")),
        text("Oslo is sunny."),
    )
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await start(rt)
        conv = await spawn(rt, agent(script), "c")
        answer = await conv.ask(us.Prompt("Oslo?"))
    assert answer.text == "Oslo is sunny."
    (error,) = results(sent(script)[1])
    assert error["is_error"] is True
    assert "Invalid input for tool 'get_weather'" in error["content"]
    assert "$.city" in error["content"] and "Expected `str`" in error["content"]
    (ok,) = results(sent(script)[2])
    assert ok["content"] == "sunny in Oslo for 1 days" and "is_error" not in ok


async def test_unknown_tool_and_failing_tool_are_errors_the_model_reads(tmp_path: Path) -> None:
    script = fake(
        tools(
            use("teleport", {"to": "Mars"}, id="u"),
            use("convert", {"amount": 1, "to": "XXX"}, id="f"),
        ),
        text("I cannot do that."),
    )
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await start(rt)
        conv = await spawn(rt, agent(script), "c")
        answer = await conv.ask(us.Prompt("Teleport me"))
    assert answer.text == "I cannot do that."
    got = {r["tool_use_id"]: r for r in results(sent(script)[1])}
    assert got["u"]["is_error"] and "There is no tool named 'teleport'" in got["u"]["content"]
    assert "convert, get_weather" in got["u"]["content"]
    assert got["f"]["is_error"] and "ValueError: unknown currency XXX" in got["f"]["content"]


async def test_too_many_tool_errors_stop_with_a_typed_error(tmp_path: Path) -> None:
    script = fake(default=tools(use("teleport", {})))
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await start(rt)
        conv = await spawn(rt, agent(script, max_tool_errors=2, max_turns=10), "c")
        with pytest.raises(us.ToolErrorLimit, match="more than 2 tool calls failed") as info:
            await conv.ask(us.Prompt("go"))
    assert len(sent(script)) == 3
    assert info.value.errors[-1][0] == "teleport"


@pytest.mark.parametrize("stop", ["end_turn", "stop_sequence"])
async def test_end_turn_and_stop_sequence_answer(tmp_path: Path, stop: str) -> None:
    script = fake(text("done", stop=stop))
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await start(rt)
        conv = await spawn(rt, agent(script), "c")
        answer = await conv.ask(us.Prompt("hi"))
    assert answer.text == "done" and answer.stop_reason == stop


async def test_refusal_is_a_typed_outcome(tmp_path: Path) -> None:
    body = FakeMessagesAPI.refusal("I can't help with that.", category="cyber")
    script = fake(body, text("Hello again"))
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await start(rt)
        conv = await spawn(rt, agent(script), "c")
        with pytest.raises(us.Refused) as info:
            await conv.ask(us.Prompt("bad"))
        assert info.value.text == "I can't help with that."
        assert info.value.category == "cyber"
        # the conversation goes on; the next request is valid (alternating roles)
        answer = await conv.ask(us.Prompt("hello"))
    assert answer.text == "Hello again"
    roles = [m["role"] for m in sent(script)[1]["messages"]]
    assert roles == ["user", "assistant", "user"]


async def test_max_tokens_mid_tool_use_is_typed_and_the_history_stays_valid(
    tmp_path: Path,
) -> None:
    cut = message(
        [
            {"type": "text", "text": "Let me"},
            {"type": "tool_use", "id": "cut", "name": "get_weather", "input": {}},
        ],
        stop="max_tokens",
    )
    script = fake(cut, text("ok"))
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await start(rt)
        conv = await spawn(rt, agent(script, max_tokens=20), "c")
        with pytest.raises(us.OutputTruncated, match="raise max_tokens") as info:
            await conv.ask(us.Prompt("weather?"))
        assert info.value.stop_reason == "max_tokens" and info.value.text == "Let me"
        await conv.ask(us.Prompt("again"))
    last = sent(script)[1]["messages"][-1]
    # the cut tool_use is answered before the new text, in the same user message
    assert last["content"][0]["type"] == "tool_result"
    assert last["content"][0]["tool_use_id"] == "cut" and last["content"][0]["is_error"]
    assert last["content"][1] == {"type": "text", "text": "again"}


async def test_pause_turn_continues_with_the_paused_content(tmp_path: Path) -> None:
    script = fake(text("Searching", stop="pause_turn"), text(" found it"))
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await start(rt)
        conv = await spawn(rt, agent(script), "c")
        answer = await conv.ask(us.Prompt("search"))
    assert answer.text == " found it" and answer.turns == 2
    second = sent(script)[1]["messages"]
    assert second[-1] == {"role": "assistant", "content": [{"type": "text", "text": "Searching"}]}


async def test_max_turns_error(tmp_path: Path) -> None:
    script = fake(default=tools(use("get_weather", {"city": "Nice"})))
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await start(rt)
        conv = await spawn(rt, agent(script, max_turns=3), "c")
        with pytest.raises(us.MaxTurnsExceeded, match="after 3 model calls"):
            await conv.ask(us.Prompt("loop"))
    assert len(sent(script)) == 3


async def test_max_turns_forced_answer(tmp_path: Path) -> None:
    script = fake(tools(use("get_weather", {"city": "Nice"})), text("Nice is sunny."))
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await start(rt)
        conv = await spawn(rt, agent(script, max_turns=2, on_max_turns="answer"), "c")
        answer = await conv.ask(us.Prompt("loop"))
    assert answer.text == "Nice is sunny."
    last = sent(script)[1]
    assert last["tool_choice"] == {"type": "none"}
    assert last["messages"][-1]["content"][-1]["text"].startswith("Stop using tools now")


async def test_deadline_forces_a_final_answer(tmp_path: Path) -> None:
    script = fake(tools(use("get_weather", {"city": "Nice"})), text("Quick answer."))
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await start(rt)
        conv = await spawn(rt, agent(script, answer_within=100.0), "c")
        answer = await conv.ask(us.Prompt("go"), timeout=60.0)
    assert answer.text == "Quick answer."
    assert sent(script)[0]["tool_choice"] == {"type": "none"}


async def test_budget_exhausted_mid_conversation_is_typed_and_charges_nothing_more(
    tmp_path: Path,
) -> None:
    script = fake(default=tools(use("get_weather", {"city": "Nice"})))
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await start(rt)
        conv = await spawn(rt, agent(script, max_turns=50, max_tokens=100), "c")
        async with rt.budget(name="conv", tokens=400) as budget:
            with pytest.raises(us.BudgetExceeded):
                await conv.ask(us.Prompt("loop"))
        calls = len(sent(script))
        assert 1 <= calls < 50
        assert budget.spent.tokens <= 400 and budget.reserved.tokens == 0
        assert budget.spent.tokens == calls * 15


async def test_cheaper_fallback_model_when_the_budget_does_not_fit(tmp_path: Path) -> None:
    big, small = fake(text("big")), fake(text("small"))
    helper = agent(big, max_tokens=1000)
    helper.model = model(big, per_token=0.01)  # $10 for a 1,000-token answer
    helper.fallbacks = (model(small, name="claude-small", per_token=0.0001),)
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await start(rt)
        conv = await spawn(rt, helper, "c")
        async with rt.budget(usd=1.0) as budget:
            reply = await conv.ask(us.Prompt("hi"))
        assert reply.text == "small"
        assert sent(big) == [] and len(sent(small)) == 1  # the big one was never sent
        assert budget.spent.usd == pytest.approx(15 * 0.0001)
        # nothing fits at all: the typed error, and no call made
        async with rt.budget(usd=0.01):
            with pytest.raises(us.BudgetExceeded):
                await conv.ask(us.Prompt("again"))
    assert sent(big) == [] and len(sent(small)) == 1


async def test_answer_is_idempotent_by_prompt_id(tmp_path: Path) -> None:
    script = fake(text("first answer"))
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await start(rt)
        conv = await spawn(rt, agent(script), "c")
        one = await conv.ask(us.Prompt("hi", id="req-1"))
        two = await conv.ask(us.Prompt("hi", id="req-1"))
    assert one.text == two.text == "first answer"
    assert two.replayed and not one.replayed
    assert two.usage == one.usage and one.usage.total == 15
    assert len(sent(script)) == 1


async def test_streaming_events_for_tools(tmp_path: Path) -> None:
    script = fake(tools(use("get_weather", {"city": "Nice"}, id="w")), text("done"))
    seen: list[us.AgentEvent] = []

    async def on_event(event: us.AgentEvent) -> None:
        seen.append(event)

    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await start(rt)
        conv = await spawn(rt, agent(script), "c")
        await conv.ask(us.Prompt("go", on_event=on_event))
    # a Model streams: the answer's text arrives as TextDelta events after the tool's
    assert [e for e in seen if not isinstance(e, us.TextDelta)] == [
        us.ToolStarted(1, "get_weather", "w"),
        us.ToolFinished(1, "get_weather", "w", False),
    ]
    assert "".join(e.text for e in seen if isinstance(e, us.TextDelta)) == "done"


class Verdict(msgspec.Struct, frozen=True):
    city: str
    sunny: bool
    score: int


async def test_structured_output_corrected_after_validation_errors(tmp_path: Path) -> None:
    script = fake(
        tools(use("final_answer", {"city": "Nice", "sunny": "yes", "score": 3}, id="o1")),
        text("Nice is sunny"),
        tools(use("final_answer", {"city": "Nice", "sunny": True, "score": 3}, id="o2")),
    )
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await start(rt)
        conv = await spawn(rt, agent(script, output=Verdict, output_retries=2, tools=()), "c")
        answer = await conv.ask(us.Prompt("Is Nice sunny?"))
    assert answer.output == Verdict("Nice", True, 3)
    assert sent(script)[0]["tool_choice"] == {"type": "tool", "name": "final_answer"}
    (error,) = results(sent(script)[1])
    assert error["is_error"] and "Expected `bool`, got `str` - at `$.sunny`" in error["content"]
    nudge = sent(script)[2]["messages"][-1]["content"][-1]["text"]
    assert "calling the final_answer tool" in nudge


async def test_structured_output_gives_up_with_the_last_raw_output(tmp_path: Path) -> None:
    script = fake(default=tools(use("final_answer", {"city": 1})))
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await start(rt)
        conv = await spawn(rt, agent(script, output=Verdict, output_retries=1, tools=()), "c")
        with pytest.raises(us.OutputInvalid) as info:
            await conv.ask(us.Prompt("?"))
    assert len(sent(script)) == 2
    assert info.value.raw == '{"city":1}'
    assert "Expected `str`, got `int` - at `$.city`" in info.value.error
    assert "not a valid Verdict after 2 attempts" in str(info.value)


async def test_context_hook_keeps_the_last_prompts_and_records_tokens_before_and_after(
    tmp_path: Path,
) -> None:
    from understudy.agents._log import ModelTurn, decode_entries

    script = fake(
        text("Answer one is long " * 20),
        tools(use("get_weather", {"city": "Oslo"}, id="w")),
        text("Answer two."),
        text("Answer three."),
    )
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await start(rt)
        conv = await spawn(rt, agent(script, keep_prompts=1), "c")
        for question in ("one?", "two?", "three?"):
            await conv.ask(us.Prompt(question))
        assert rt.store is not None
        rows = await rt.store.journal("c")
    last = sent(script)[-1]["messages"]
    assert [m["role"] for m in last] == ["user"]
    summary, question = last[0]["content"]
    assert summary["text"].startswith("Summary of the earlier conversation:\nUser: one?")
    assert "Assistant: Answer two." in summary["text"]
    assert question == {"type": "text", "text": "three?"}
    # the second prompt's tool_use kept its tool_result (it was in the kept part)
    during = sent(script)[2]["messages"]
    assert [m["role"] for m in during] == ["user", "assistant", "user"]
    assert during[-1]["content"][0]["type"] == "tool_result"
    turns = [e for _, e in decode_entries(rows) if isinstance(e, ModelTurn)]
    assert turns[0].tokens_before == turns[0].tokens_after
    assert turns[-1].tokens_before > turns[-1].tokens_after


async def test_streaming_text_deltas_reach_the_caller_in_order(tmp_path: Path) -> None:
    script = fake(
        tools(use("get_weather", {"city": "Nice"}, id="w"), say="Checking now."),
        text("Nice is sunny today."),
    )
    seen: list[us.AgentEvent] = []

    async def on_event(event: us.AgentEvent) -> None:
        seen.append(event)

    helper = agent(script)  # a Model has stream(): with on_event, the agent streams
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await start(rt)
        conv = await spawn(rt, helper, "c")
        reply = await conv.ask(us.Prompt("go", on_event=on_event))
    assert reply.text == "Nice is sunny today."
    kinds = [type(e).__name__ for e in seen]
    started = kinds.index("ToolStarted")
    # the first turn's text in pieces, the tool's events, then the answer's text in pieces
    assert kinds[started : started + 2] == ["ToolStarted", "ToolFinished"]
    before = [e.text for e in seen[:started] if isinstance(e, us.TextDelta)]
    after = [e.text for e in seen[started + 2 :] if isinstance(e, us.TextDelta)]
    assert len(before) == started >= 2 and len(after) == len(kinds) - started - 2 >= 2
    assert "".join(before) == "Checking now." and "".join(after) == "Nice is sunny today."
    # the streamed tool input arrived whole
    assert sent(script)[1]["messages"][1]["content"][1]["input"] == {"city": "Nice"}


async def test_stream_as_an_async_iterator_ends_with_the_reply(tmp_path: Path) -> None:
    from understudy.agents import Done, stream

    script = fake(tools(use("get_weather", {"city": "Nice"}, id="w")), text("done"))
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await start(rt)
        conv = await spawn(rt, agent(script), "c")
        async with stream(conv, us.Prompt("go")) as events:
            seen = [event async for event in events]
        kinds = [type(e).__name__ for e in seen if not isinstance(e, us.TextDelta)]
        assert kinds == ["ToolStarted", "ToolFinished", "Done"]
        last = seen[-1]
        assert isinstance(last, Done) and last.reply.text == "done"
        script.script(FakeMessagesAPI.refusal("no"))
        with pytest.raises(us.Refused):
            async with stream(conv, us.Prompt("bad")) as events:
                async for _ in events:
                    pass


class Slow(us.Request[str], frozen=True):
    """A slow lookup."""

    q: str


class SlowTool(us.Tool):
    read_only = True

    async def slow(self, msg: Slow) -> str:
        await anyio.sleep(0.3)
        return "slow answer"


async def test_a_passed_deadline_stops_the_loop_and_the_prompt_continues_later(
    tmp_path: Path,
) -> None:
    script = fake(tools(use("slow", {"q": "x"}, id="s")), text("finally"))
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await rt.spawn(SlowTool, name="slowtool")
        conv = await spawn(rt, agent(script, tools=("slowtool",), tool_timeout=None), "c")
        with pytest.raises(us.DeadlineExceeded):
            await conv.ask(us.Prompt("go", id="p"), timeout=0.1)
        await anyio.sleep(0.5)  # the tool answered; the agent made no model call after it
        assert len(sent(script)) == 1
        reply = await conv.ask(us.Prompt("go", id="p"))
    assert reply.text == "finally" and len(sent(script)) == 2
    last = sent(script)[1]["messages"][-1]["content"][0]
    # The tool's ask was cut by the deadline; that read-only result was not committed, so
    # (the instance having been restarted) the tool ran again for the continued prompt. An
    # instance that survives (errors as answers) sends the timeout as is_error instead.
    assert last["content"] == "slow answer" or "did not answer in time" in last["content"]


async def test_an_agents_calls_are_attributed_to_its_conversation_in_the_costs(
    tmp_path: Path,
) -> None:
    from understudy.cli import main

    one = fake(tools(use("get_weather", {"city": "Nice"})), text("Nice is sunny."))
    two = fake(text("Hello."))
    db = tmp_path / "a.db"
    async with us.Runtime(store=db) as rt:
        await start(rt)
        first = await spawn(rt, agent(one, model=model(one, per_token=0.001)), "conv-1")
        second = await spawn(rt, agent(two, model=model(two, per_token=0.001)), "conv-2")
        # one budget (named for neither) over both: the records still name each conversation
        async with rt.budget(name="nightly", usd=10.0) as budget:
            await first.ask(us.Prompt("Nice?"))
            await second.ask(us.Prompt("hi"))
        rows = {row["conversation"]: row for row in await us.llm.costs(rt, by="conversation")}
        settled = budget.spent.usd
    assert set(rows) == {"conv-1", "conv-2"}
    assert rows["conv-1"]["calls"] == 2 and rows["conv-2"]["calls"] == 1
    assert rows["conv-1"]["usd"] == pytest.approx(2 * 15 * 0.001)
    assert rows["conv-1"]["usd"] + rows["conv-2"]["usd"] == pytest.approx(settled)
    out = io.StringIO()
    assert main(["costs", str(db), "--by", "conversation", "--format", "json"], out) == 0
    printed = {row["conversation"]: row["calls"] for row in json.loads(out.getvalue())}
    assert printed == {"conv-1": 2, "conv-2": 1}

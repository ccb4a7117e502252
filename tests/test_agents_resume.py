"""Conversations that resume, and the tool effect journal (intent before, result after)."""

from __future__ import annotations

import inspect
import itertools
from pathlib import Path
from typing import Any

import anyio
import pytest

import understudy as us
from tests.agents_replies import fake, model, sent, text, tools, use
from understudy.testing import FakeMessagesAPI

pytestmark = pytest.mark.anyio


class Send(us.Request[str], frozen=True):
    """Send an email."""

    to: str
    body: str


class Look(us.Request[str], frozen=True):
    """Look something up."""

    q: str


class Outbox:
    """The outside world: emails actually sent, by idempotency key."""

    def __init__(self) -> None:
        self.sent: dict[str, str] = {}
        self.attempts = 0
        self.gate: anyio.Event | None = None
        self.entered: anyio.Event | None = None


OUTBOX = Outbox()


class Mailer(us.Tool):
    async def send(self, msg: Send) -> str:
        OUTBOX.attempts += 1
        if OUTBOX.entered is not None:
            OUTBOX.entered.set()
        assert self.idempotency_key is not None
        OUTBOX.sent[self.idempotency_key] = msg.to  # the effect happens...
        if OUTBOX.gate is not None:
            await OUTBOX.gate.wait()  # ...and the agent is killed before the result commits
        return f"sent to {msg.to}"


class ReconcilingMailer(Mailer):
    async def reconcile(self, key: str, request: Any) -> Any:
        if key in OUTBOX.sent:
            return f"sent to {OUTBOX.sent[key]} (reconciled)"
        return us.NOT_RUN


class Lookup(us.Tool):
    read_only = True
    calls = 0

    async def look(self, msg: Look) -> str:
        Lookup.calls += 1
        return f"found {msg.q}"


def agent(script: FakeMessagesAPI, tools: tuple[str, ...] = ("mailer", "lookup")) -> type[us.Agent]:
    return type(
        "Assistant",
        (us.Agent,),
        {"model": model(script), "tools": tools, "system": "You send mail."},
    )


async def supervised(rt: us.Runtime, cls: type[us.Actor], name: str) -> us.Ref:
    await rt.start(
        us.Supervisor(
            strategy=us.OneForOne(max_restarts=100, within=1.0),
            children=[us.Child(cls, name=name, backoff=us.Backoff(min=0.001, max=0.001))],
        )
    )
    return rt.ref(name)


@pytest.fixture(autouse=True)
def fresh_outbox() -> None:
    OUTBOX.__init__()  # type: ignore[misc]
    Lookup.calls = 0


async def _kill_during_send(rt: us.Runtime, conv: us.Ref, prompt: us.Prompt) -> None:
    """Ask, and kill the conversation while the mailer is sending."""
    OUTBOX.gate = anyio.Event()
    OUTBOX.entered = anyio.Event()
    chaos = us.Chaos(rt, seed=1)
    async with anyio.create_task_group() as group:

        async def ask() -> None:
            with pytest.raises((us.Killed, us.ActorStopped)):
                await conv.ask(prompt)

        group.start_soon(ask)
        await OUTBOX.entered.wait()
        assert await chaos.kill(conv.name)
    OUTBOX.gate.set()
    OUTBOX.gate = None
    await anyio.sleep(0.01)  # the mailer finishes the call nobody waits for any more


async def test_killed_agent_resumes_without_repeating_committed_model_calls(
    tmp_path: Path,
) -> None:
    script = fake(
        tools(use("look", {"q": "a"}, id="l1")),
        tools(use("send", {"to": "bob", "body": "hi"}, id="s1")),
        text("Sent."),
    )
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await rt.spawn(ReconcilingMailer, name="mailer")
        await rt.spawn(Lookup, name="lookup")
        conv = await supervised(rt, agent(script), "conv-7")
        prompt = us.Prompt("Mail bob", id="req-1")
        await _kill_during_send(rt, conv, prompt)
        assert len(sent(script)) == 2
        answer = await conv.ask(prompt)  # the same prompt again: it continues
    assert answer.text == "Sent." and not answer.replayed
    assert len(sent(script)) == 3  # the two committed model calls were not repeated
    assert Lookup.calls == 1  # its committed result was replayed, not re-run
    assert OUTBOX.attempts == 1 and list(OUTBOX.sent) == ["conv-7:2:s1"]
    final = sent(script)[2]["messages"]
    assert [m["role"] for m in final] == ["user", "assistant", "user", "assistant", "user"]
    assert final[-1]["content"] == [
        {"type": "tool_result", "tool_use_id": "s1", "content": "sent to bob (reconciled)"}
    ]


async def test_in_doubt_without_reconcile_stops_and_a_human_resolves_it(tmp_path: Path) -> None:
    script = fake(tools(use("send", {"to": "eve", "body": "x"}, id="s9")), text("Done."))
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await rt.spawn(Mailer, name="mailer")
        await rt.spawn(Lookup, name="lookup")
        conv = await supervised(rt, agent(script), "c")
        prompt = us.Prompt("Mail eve", id="p")
        await _kill_during_send(rt, conv, prompt)
        with pytest.raises(us.EffectInDoubt) as info:
            await conv.ask(prompt)
        assert info.value.key == "c:1:s9" and info.value.tool == "send"
        assert "it was not re-run" in str(info.value).lower() or "not re-run" in str(info.value)
        assert OUTBOX.attempts == 1  # never re-run blindly
        with pytest.raises(us.EffectInDoubt):  # asking again does not re-run it either
            await conv.ask(prompt)
        await conv.ask(us.Resolve("c:1:s9", "sent to eve (checked by hand)"))
        answer = await conv.ask(prompt)
    assert answer.text == "Done."
    assert OUTBOX.attempts == 1
    assert sent(script)[-1]["messages"][-1]["content"][0]["content"] == (
        "sent to eve (checked by hand)"
    )


async def test_reconcile_not_run_runs_the_call_once(tmp_path: Path) -> None:
    script = fake(tools(use("send", {"to": "amy", "body": "x"}, id="s2")), text("ok"))
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await rt.spawn(ReconcilingMailer, name="mailer")
        await rt.spawn(Lookup, name="lookup")
        conv = await supervised(rt, agent(script), "c")
        prompt = us.Prompt("Mail amy", id="p")
        # kill after the intent is committed but before the mailer ran: the outbox is empty
        OUTBOX.gate = anyio.Event()
        OUTBOX.entered = anyio.Event()
        async with anyio.create_task_group() as group:

            async def ask() -> None:
                with pytest.raises((us.Killed, us.ActorStopped)):
                    await conv.ask(prompt)

            group.start_soon(ask)
            await OUTBOX.entered.wait()
            OUTBOX.sent.clear()  # as if the send had not reached the outside world
            OUTBOX.attempts = 0
            await us.Chaos(rt).kill("c")
        OUTBOX.gate.set()
        OUTBOX.gate = None
        await anyio.sleep(0.01)
        OUTBOX.sent.clear()
        OUTBOX.attempts = 0
        answer = await conv.ask(prompt)
    assert answer.text == "ok"
    assert OUTBOX.attempts == 1 and list(OUTBOX.sent) == ["c:1:s2"]


async def test_a_committed_result_replays_after_a_restart_of_the_runtime(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    first = fake(tools(use("send", {"to": "bob", "body": "hi"}, id="s1")))  # then: no reply
    async with us.Runtime(store=db) as rt:
        await rt.spawn(Mailer, name="mailer")
        await rt.spawn(Lookup, name="lookup")
        conv = await supervised(rt, agent(first), "c")
        with anyio.move_on_after(5):
            with pytest.raises(Exception, match="api_error"):
                await conv.ask(us.Prompt("Mail bob", id="p"))
    assert OUTBOX.attempts == 1
    second = fake(text("Sent it."))
    async with us.Runtime(store=db) as rt:  # a new process, the same store
        await rt.spawn(Mailer, name="mailer")
        await rt.spawn(Lookup, name="lookup")
        conv = await supervised(rt, agent(second), "c")
        answer = await conv.ask(us.Prompt("Mail bob", id="p"))
        again = await conv.ask(us.Prompt("Mail bob", id="p"))
    assert answer.text == "Sent it." and again.replayed
    assert OUTBOX.attempts == 1  # the committed result replayed
    (request,) = sent(second)
    assert request["messages"][-1]["content"][0]["content"] == "sent to bob"


async def test_a_new_prompt_abandons_an_unfinished_one_and_keeps_the_history_valid(
    tmp_path: Path,
) -> None:
    first = fake(tools(use("look", {"q": "x"}, id="l1")))
    db = tmp_path / "a.db"
    async with us.Runtime(store=db) as rt:
        await rt.spawn(Mailer, name="mailer")
        await rt.spawn(Lookup, name="lookup")
        conv = await supervised(rt, agent(first), "c")
        with pytest.raises(Exception, match="api_error"):
            await conv.ask(us.Prompt("look x"))
    second = fake(text("Hello"))
    async with us.Runtime(store=db) as rt:
        await rt.spawn(Mailer, name="mailer")
        await rt.spawn(Lookup, name="lookup")
        conv = await supervised(rt, agent(second), "c")
        answer = await conv.ask(us.Prompt("hi"))
    assert answer.text == "Hello"
    (request,) = sent(second)
    assert [m["role"] for m in request["messages"]] == ["user", "assistant", "user"]
    assert request["messages"][-1]["content"][0]["tool_use_id"] == "l1"
    assert request["messages"][-1]["content"][-1] == {"type": "text", "text": "hi"}


async def test_changed_tool_schema_refuses_a_resumed_conversation(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    async with us.Runtime(store=db) as rt:
        await rt.spawn(Mailer, name="mailer")
        await rt.spawn(Lookup, name="lookup")
        conv = await supervised(rt, agent(fake(text("hi"))), "c")
        await conv.ask(us.Prompt("hello"))

    class Look2(us.Request[str], frozen=True):
        """Look something up."""

        q: int
        tool_name = "look"

    class Lookup2(us.Tool):
        read_only = True

        async def look(self, msg: Look2) -> str:
            return "x"

    async with us.Runtime(store=db) as rt:
        await rt.spawn(Mailer, name="mailer")
        await rt.spawn(Lookup2, name="lookup")
        conv = await supervised(rt, agent(fake(text("hi"))), "c")
        with pytest.raises(us.DeploymentChanged, match="tool 'look' has a new input schema"):
            await conv.ask(us.Prompt("again"))


async def test_the_log_grows_by_delta(tmp_path: Path) -> None:
    script = fake(default=text("ok " * 20))
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await rt.spawn(Mailer, name="mailer")
        await rt.spawn(Lookup, name="lookup")
        conv = await supervised(rt, agent(script), "c")
        sizes = []
        for i in range(30):
            await conv.ask(us.Prompt(f"question {i}"))
            assert rt.store is not None
            sizes.append(rt.store.stats.bytes_written)
    steps = [b - a for a, b in itertools.pairwise(sizes)]
    assert max(steps) - min(steps) < 16  # each prompt adds the same bytes, however long


async def crash_once(rt: us.Runtime, helper: type[us.Agent], method: str, why: str) -> us.Ref:
    """Start conversation ``c`` of ``helper`` (supervised, with its tools) and ask it a
    prompt (id ``p``) during which ``helper.method`` raises ``RuntimeError(why)``: a crash
    at that point. Returns the conversation's ref; the next call of ``method`` is real."""
    real = getattr(helper, method)
    crashes = [why]

    def crash() -> None:
        if crashes:
            raise RuntimeError(crashes.pop())

    async def crash_in_async(self: us.Agent, *args: Any, **kwargs: Any) -> Any:
        crash()
        return await real(self, *args, **kwargs)

    def crash_in_sync(self: us.Agent, *args: Any, **kwargs: Any) -> Any:
        crash()
        return real(self, *args, **kwargs)

    setattr(helper, method, crash_in_async if inspect.iscoroutinefunction(real) else crash_in_sync)
    await rt.spawn(Mailer, name="mailer")
    await rt.spawn(Lookup, name="lookup")
    conv = await supervised(rt, helper, "c")
    with pytest.raises(RuntimeError, match=why):
        await conv.ask(us.Prompt("q", id="p"))
    return conv


async def test_a_prompt_lost_before_its_first_response_leaves_no_trace_and_runs_again(
    tmp_path: Path,
) -> None:
    script = fake(text("The answer."))
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        conv = await crash_once(rt, agent(script), "_call", "killed before the first response")
        assert rt.store is not None
        _, rows = await rt.store.load_journaled("c")
        assert rows == []  # nothing was acknowledged: the prompt was not committed either
        reply = await conv.ask(us.Prompt("q", id="p"))
        _, rows = await rt.store.load_journaled("c")
    assert reply.text == "The answer." and not reply.replayed
    assert len(sent(script)) == 1
    # the prompt that ran: its deployment, user turn, response and outcome, once each
    assert [kind for _, kind, _, _ in rows] == ["Started", "UserTurn", "ModelTurn", "Finished"]


async def test_a_committed_final_response_is_not_asked_again_after_a_crash(
    tmp_path: Path,
) -> None:
    script = fake(text("The answer."))
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        # the final response and its outcome commit together, before the answer is made
        why = "killed between the commit of the response and the answer"
        conv = await crash_once(rt, agent(script), "_answer", why)
        reply = await conv.ask(us.Prompt("q", id="p"))
    assert reply.text == "The answer." and reply.replayed
    assert len(sent(script)) == 1  # the committed response was used, not asked again

"""An agent as an entity type: one actor per conversation, keyed by the conversation id,
passivated when idle and resumed from its log in the store."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import understudy as us
from tests.agents_replies import fake, model, sent, text, tools, use
from understudy.testing import FakeMessagesAPI

pytestmark = pytest.mark.anyio


class GetWeather(us.Request[str], frozen=True):
    """The weather forecast for a city."""

    city: str


class Weather(us.Tool):
    read_only = True

    async def forecast(self, msg: GetWeather) -> str:
        return f"sunny in {msg.city}"


def support(api: FakeMessagesAPI) -> type[us.Agent]:
    return type(
        "Support",
        (us.Agent,),
        {"model": model(api), "tools": ("weather",), "system": "You answer customers."},
    )


async def start(rt: us.Runtime, agent: type[us.Agent], **options: object) -> None:
    await rt.spawn(Weather, name="weather")
    await rt.start(us.Supervisor(children=[us.Entities(agent, name="support", **options)]))


async def passivated(rt: us.Runtime, key: str) -> None:
    with anyio.fail_after(3):
        while us.entity_lookup(rt, "support", key).state != "passivated":
            await anyio.sleep(0.02)


def texts(body: dict[str, object]) -> list[str]:
    """The text blocks of a request's messages, in order."""
    out: list[str] = []
    for message in body["messages"]:  # type: ignore[attr-defined]
        for block in message["content"]:
            if block["type"] == "text":
                out.append(block["text"])
    return out


async def test_an_agent_entity_per_conversation_passivates_and_resumes_from_the_store(
    tmp_path: Path,
) -> None:
    api = fake(
        tools(use("get_weather", {"city": "Paris"}, id="w1")),
        text("Paris is sunny."),
        text("Hello, Bob."),
        text("Rome too, probably."),
        text("You asked about Paris and Rome."),
    )
    db = tmp_path / "a.db"
    async with us.Runtime(store=db) as rt:
        await start(rt, support(api), passivate_after=0.05)
        alice, bob = rt.entity("support", "alice"), rt.entity("support", "bob")
        first = await alice.ask(us.Prompt("Weather in Paris?", id="a1"))
        assert first.text == "Paris is sunny." and first.turns == 2
        assert (await bob.ask(us.Prompt("Hi, I am Bob."))).text == "Hello, Bob."
        # bob's conversation is his own: one user message, none of alice's
        assert texts(sent(api)[2]) == ["Hi, I am Bob."]
        await passivated(rt, "alice")
        assert us.entity_lookup(rt, "support", "alice").state == "passivated"
        # reactivated from the store: the committed answer is replayed, not asked again
        again = await alice.ask(us.Prompt("Weather in Paris?", id="a1"))
        assert again.text == "Paris is sunny." and again.replayed and len(sent(api)) == 3
        # and the next prompt goes on from the whole committed history
        assert (await alice.ask(us.Prompt("And Rome?"))).text == "Rome too, probably."
        resumed = sent(api)[3]
        roles = [m["role"] for m in resumed["messages"]]
        assert roles == ["user", "assistant", "user", "assistant", "user"]  # tool turn kept
        assert texts(resumed) == ["Weather in Paris?", "Paris is sunny.", "And Rome?"]
        records = us.llm.call_log(rt).records
        assert {r.conversation for r in records} == {"support/alice", "support/bob"}
    # another runtime on the same store (a restarted process) resumes alice from her log
    async with us.Runtime(store=db) as rt:
        await start(rt, support(api))
        reply = await rt.entity("support", "alice").ask(us.Prompt("What did I ask?"))
        assert reply.text == "You asked about Paris and Rome."
        assert texts(sent(api)[4]) == [
            "Weather in Paris?",
            "Paris is sunny.",
            "And Rome?",
            "Rome too, probably.",
            "What did I ask?",
        ]
        # bob was not asked here: he is not activated (his log waits in the store)
        assert us.entity_lookup(rt, "support", "bob").state != "active"


async def test_inspect_lists_agent_conversations_kept_as_journals(tmp_path: Path) -> None:
    """An agent conversation has no snapshot (its state is its journal): ``inspect`` lists
    it, ``--entities`` counts its key, ``--entity`` shows its entries."""
    import io
    import json

    from understudy.cli import main

    api = fake(text("Hello."))
    db = tmp_path / "a.db"
    async with us.Runtime(store=db) as rt:
        await start(rt, support(api))
        await rt.entity("support", "alice").ask(us.Prompt("Hi."))
    out = io.StringIO()
    assert main(["inspect", str(db)], out) == 0
    assert "support/alice" in out.getvalue() and "no persisted actors" not in out.getvalue()
    out = io.StringIO()
    assert main(["inspect", str(db), "--entities", "--json"], out) == 0
    assert json.loads(out.getvalue())["entities"] == {"support": ["alice"]}
    out = io.StringIO()
    assert main(["inspect", str(db), "--entity", "support/alice"], out) == 0
    shown = json.loads(out.getvalue())
    kinds = [entry["kind"] for entry in shown["journal"]]
    assert kinds[0] == "Started" and "ModelTurn" in kinds and kinds[-1] == "Finished"
    assert "--conversation support/alice" in shown["turn_by_turn"]

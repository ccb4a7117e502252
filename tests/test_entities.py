"""Entities: an actor per key, activated on its first message, passivated when idle."""

from __future__ import annotations

from pathlib import Path

import anyio
import msgspec
import pytest

import understudy as us


class Say(us.Request[list[str]], frozen=True):
    text: str
    seconds: float = 0.0


class Boom(us.Request[None], frozen=True):
    pass


class Conversation(us.Actor):
    starts = 0

    class State(msgspec.Struct):
        history: us.Log[str] = us.Log.field()  # append-only, persisted by delta

    async def on_start(self) -> None:
        Conversation.starts += 1

    async def say(self, msg: Say) -> list[str]:
        if msg.seconds:
            await anyio.sleep(msg.seconds)
        self.state.history.append(msg.text)
        return list(self.state.history)

    async def boom(self, msg: Boom) -> None:
        self.state.history.append("half-applied")
        raise RuntimeError("boom")


def _tree(rt: us.Runtime) -> dict[str, us.EntityTypeInfo]:
    return {info.type: info for info in us.entity_types(rt)}


@pytest.mark.anyio
async def test_first_message_activates_and_state_is_per_key(tmp_path: Path) -> None:
    async with us.Runtime(store=tmp_path / "e.db") as rt:
        await rt.start(us.Supervisor(children=[us.Entities(Conversation, name="support")]))
        a, b = rt.entity("support", "a"), rt.entity("support", "b")
        assert us.entity_lookup(rt, "support", "a").state == "unknown"
        assert await a.ask(Say("hi")) == ["hi"]
        assert await b.ask(Say("yo")) == ["yo"]
        assert await a.ask(Say("again")) == ["hi", "again"]
        assert a == rt.entity("support", "a") and a != b
        assert _tree(rt)["support"].active == 2
        found = us.entity_lookup(rt, "support", "a")
        assert found.state == "active" and found.actor is not None


@pytest.mark.anyio
async def test_concurrent_first_messages_activate_once_and_keep_order() -> None:
    async with us.Runtime() as rt:
        await rt.start(us.Supervisor(children=[us.Entities(Conversation, name="c")]))
        before = Conversation.starts
        ref = rt.entity("c", "k")
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(ref.tell, Say(str(i)))
        assert Conversation.starts == before + 1
        history = await ref.ask(Say("end"))
        assert sorted(history[:-1], key=int) == [str(i) for i in range(20)]


@pytest.mark.anyio
async def test_a_persistent_entity_passivates_when_idle_and_wakes_from_the_store(
    tmp_path: Path,
) -> None:
    async with us.Runtime(store=tmp_path / "e.db") as rt:
        await rt.start(
            us.Supervisor(
                children=[
                    us.Entities(Conversation, name="p", persistent=True, passivate_after=0.05)
                ]
            )
        )
        ref = rt.entity("p", "conv-1")
        await ref.ask(Say("one"))
        with anyio.fail_after(3):
            while us.entity_lookup(rt, "p", "conv-1").state != "passivated":
                await anyio.sleep(0.02)
        info = _tree(rt)["p"]
        assert (info.active, info.passivated, info.passivations["idle"]) == (0, 1, 1)
        assert await ref.ask(Say("two")) == ["one", "two"]  # restored
        text = rt.metrics.exposition()
        assert 'understudy_entity_activations_total{type="p"} 2.0' in text
        assert 'actor="p"' in text and "conv-1" not in text  # labelled by type, not by key
    # another process (a new runtime) sees the committed history
    async with us.Runtime(store=tmp_path / "e.db") as rt:
        await rt.start(
            us.Supervisor(children=[us.Entities(Conversation, name="p", persistent=True)])
        )
        assert await rt.entity("p", "conv-1").ask(Say("three")) == ["one", "two", "three"]


@pytest.mark.anyio
async def test_max_active_passivates_the_least_recently_used_first() -> None:
    async with us.Runtime() as rt:
        await rt.start(us.Supervisor(children=[us.Entities(Conversation, name="m", max_active=2)]))
        for key in ("a", "b"):
            await rt.entity("m", key).ask(Say(key))
        await rt.entity("m", "a").ask(Say("a2"))  # b is now the least recently used
        await rt.entity("m", "c").ask(Say("c"))
        with anyio.fail_after(3):
            while us.entity_lookup(rt, "m", "b").state != "passivated":
                await anyio.sleep(0.01)
        assert us.entity_lookup(rt, "m", "a").state == "active"
        assert _tree(rt)["m"].passivations["max_active"] == 1


@pytest.mark.anyio
async def test_a_crash_restarts_that_key_only_from_its_last_commit(tmp_path: Path) -> None:
    async with us.Runtime(store=tmp_path / "e.db") as rt:
        await rt.start(
            us.Supervisor(children=[us.Entities(Conversation, name="s", persistent=True)])
        )
        a, b = rt.entity("s", "a"), rt.entity("s", "b")
        await a.ask(Say("kept"))
        await b.ask(Say("other"))
        b_actor = us.entity_lookup(rt, "s", "b").actor
        with pytest.raises(RuntimeError, match="boom"):
            await a.ask(Boom())
        assert await a.ask(Say("next")) == ["kept", "next"]  # no half-applied change
        assert await b.ask(Say("still")) == ["other", "still"]
        after = us.entity_lookup(rt, "s", "b").actor
        assert b_actor is not None and after is not None and after.restarts == 0
        found = us.entity_lookup(rt, "s", "a").actor
        assert found is not None and found.restarts == 1


@pytest.mark.anyio
async def test_a_key_that_keeps_crashing_is_passivated_not_the_type() -> None:
    async with us.Runtime() as rt:
        await rt.start(
            us.Supervisor(children=[us.Entities(Conversation, name="x", max_restarts=1)])
        )
        bad = rt.entity("x", "bad")
        for _ in range(2):
            with pytest.raises(RuntimeError):
                await bad.ask(Boom())
        with anyio.fail_after(3):
            while us.entity_lookup(rt, "x", "bad").state == "active":
                await anyio.sleep(0.01)
        assert _tree(rt)["x"].passivations["crashes"] == 1
        assert await rt.entity("x", "good").ask(Say("fine")) == ["fine"]
        assert await bad.ask(Say("fresh")) == ["fresh"]  # reactivated


@pytest.mark.anyio
async def test_the_tree_shows_the_type_not_its_keys() -> None:
    async with us.Runtime() as rt:
        await rt.start(us.Supervisor(name="root", children=[us.Entities(Conversation, name="t")]))
        for i in range(5):
            await rt.entity("t", f"k{i}").ask(Say("x"))
        (root,) = rt.tree()
        (entities,) = root.children
        assert entities.name == "t" and entities.children == []
        assert _tree(rt)["t"].active == 5


@pytest.mark.anyio
async def test_ctx_entity_reaches_an_entity_from_a_handler() -> None:
    class Ask(us.Request[list[str]], frozen=True):
        key: str

    class Front(us.Actor):
        async def ask(self, msg: Ask) -> list[str]:
            return await self.ctx.entity("f", msg.key).ask(Say("via front"))

    async with us.Runtime() as rt:
        await rt.start(us.Supervisor(children=[us.Entities(Conversation, name="f")]))
        front = await rt.spawn(Front)
        assert await front.ask(Ask("z")) == ["via front"]


@pytest.mark.anyio
async def test_malformed_keys_and_types_are_clear_errors() -> None:
    async with us.Runtime() as rt:
        await rt.start(us.Supervisor(children=[us.Entities(Conversation, name="k")]))
        with pytest.raises(TypeError, match="must be a str, not int"):
            rt.entity("k", 12)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="the limit is 200"):
            rt.entity("k", "x" * 201)
        with pytest.raises(ValueError, match="must not be empty"):
            rt.entity("k", "")
        with pytest.raises(ValueError, match="control characters"):
            rt.entity("k", "a\nb")
        with pytest.raises(us.UnknownActor, match="no running entity type"):
            rt.entity("nope", "a")
    with pytest.raises(ValueError, match="passivate_after"):
        us.Entities(Conversation, name="e", passivate_after=0)
    with pytest.raises(ValueError, match="must not contain '/'"):
        us.Entities(Conversation, name="a/b")
    with pytest.raises(ValueError, match="max_active must be at least 1"):
        us.Entities(Conversation, name="e", max_active=0)


@pytest.mark.anyio
async def test_inspect_lists_entity_types_and_keys_and_shows_one(tmp_path: Path) -> None:
    import io

    from understudy.cli import main

    path = tmp_path / "i.db"
    async with us.Runtime(store=path) as rt:
        await rt.start(
            us.Supervisor(children=[us.Entities(Conversation, name="chat", persistent=True)])
        )
        await rt.entity("chat", "one").ask(Say("hello"))
        await rt.entity("chat", "two").ask(Say("bye"))
    out = io.StringIO()
    assert main(["inspect", str(path), "--entities"], out=out) == 0
    listing = out.getvalue()
    assert "chat" in listing and "one" in listing and "two" in listing
    out = io.StringIO()
    assert main(["inspect", str(path), "--entity", "chat/one"], out=out) == 0
    assert "hello" in out.getvalue() and "bye" not in out.getvalue()


class SlowStart(us.Actor):
    async def on_start(self) -> None:
        await anyio.sleep(1.0)

    async def say(self, msg: Say) -> list[str]:
        return []


@pytest.mark.anyio
async def test_an_ask_timeout_covers_the_activation() -> None:
    async with us.Runtime() as rt:
        await rt.start(us.Supervisor(children=[us.Entities(SlowStart, name="slow")]))
        with pytest.raises(us.DeadlineExceeded, match="activation took longer"):
            await rt.entity("slow", "k").ask(Say("x"), timeout=0.05)


@pytest.mark.anyio
async def test_each_key_has_its_own_breaker_labelled_by_type() -> None:
    async with us.Runtime() as rt:
        await rt.start(
            us.Supervisor(
                children=[
                    us.Entities(
                        Conversation, name="br", breaker=us.Breaker(failures=1, reset_after=60)
                    )
                ]
            )
        )
        a, b = rt.entity("br", "a"), rt.entity("br", "b")
        await b.ask(Say("ok"))
        with pytest.raises(RuntimeError):
            await a.ask(Boom())
        with pytest.raises(us.CircuitOpen):
            await a.ask(Say("refused"))
        assert await b.ask(Say("still")) == ["ok", "still"]
        text = rt.metrics.exposition()
        assert 'understudy_breaker_state{actor="br",state="open"} 1.0' in text
        assert "br/a" not in text

"""Names that survive restarts (issue 11 §2) and the name rules (issue 12 items 10, 14, 19)."""

from __future__ import annotations

import gc
import tracemalloc

import anyio
import pytest
from helpers import GUARD

import understudy as us

pytestmark = pytest.mark.anyio


class Ping(us.Request[str], frozen=True):
    pass


class Note(us.Message, frozen=True):
    text: str


class Crash(us.Message, frozen=True):
    pass


class AskPeer(us.Request[str], frozen=True):
    name: str


class AskSelf(us.Request[str], frozen=True):
    by_name: bool = False


class Worker(us.Actor):
    answers = ()

    def __init__(self) -> None:
        self.notes: list[str] = []

    async def ping(self, msg: Ping) -> str:
        return f"pong from {self.ctx.name} #{id(self)}"

    async def note(self, msg: Note) -> None:
        self.notes.append(msg.text)

    async def crash(self, msg: Crash) -> None:
        raise RuntimeError("crash")

    async def ask_peer(self, msg: AskPeer) -> str:
        return await self.ctx.ref(msg.name).ask(Ping(), timeout=GUARD)

    async def ask_self(self, msg: AskSelf) -> str:
        me = self.ctx.ref(self.ctx.name) if msg.by_name else self.ctx.self_ref
        try:
            return await me.ask(Ping(), timeout=GUARD)
        except RuntimeError as exc:
            return f"refused: {exc}"


def nested() -> us.Supervisor:
    """root -> inner (gives up after one restart) -> w: when w crashes twice, inner gives up
    and root restarts inner, whose new instance spawns a *new* identity named w."""
    return us.Supervisor(
        name="root",
        strategy=us.OneForOne(max_restarts=10, within=60.0),
        children=[
            us.Supervisor(
                name="inner",
                strategy=us.OneForOne(max_restarts=0, within=60.0),
                children=[us.Child(Worker, name="w")],
            )
        ],
    )


async def test_a_name_ref_survives_the_restart_of_the_supervisor_an_identity_ref_does_not() -> None:
    async with us.Runtime() as rt:
        await rt.start(nested())
        by_name = rt.ref("w")
        first = by_name.live()
        identity = first.ref if first is not None else None
        assert identity is not None and identity.bound_to == "identity"
        await by_name.tell(Crash())  # inner gives up; root restarts it with a new w
        with anyio.fail_after(GUARD):
            while by_name.live() in (None, first):
                await anyio.sleep(0.001)
        assert (await by_name.ask(Ping(), timeout=GUARD)).startswith("pong from w")
        with pytest.raises(us.ActorStopped):
            await identity.ask(Ping(), timeout=GUARD)


async def test_a_send_while_the_name_is_between_identities_waits_for_the_next_one() -> None:
    async with us.Runtime() as rt:
        first = await rt.spawn(Worker, name="w")
        by_name = rt.ref("w")
        await rt.stop(first)
        done = anyio.Event()

        async def send_later() -> None:
            await by_name.tell(Note("kept"))  # waits: no actor has the name yet
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(send_later)
            await anyio.sleep(0.02)
            assert not done.is_set()
            await rt.spawn(Worker, name="w")
        assert (await by_name.ask(Ping(), timeout=GUARD)).startswith("pong from w")
        assert "unknown_actor" not in rt.dead_letters.counts


async def test_ctx_ref_looks_an_actor_up_by_name_from_a_handler() -> None:
    async with us.Runtime() as rt:
        a = await rt.spawn(Worker, name="a")
        await rt.spawn(Worker, name="b")
        assert (await a.ask(AskPeer("b"), timeout=GUARD)).startswith("pong from b")


@pytest.mark.parametrize(
    ("name", "error"), [("", ValueError), (3, TypeError), ("\x00", ValueError)]
)
async def test_ctx_ref_refuses_a_bad_name(name: object, error: type[Exception]) -> None:
    seen: list[BaseException] = []

    class Looker(us.Actor):
        async def ping(self, msg: Ping) -> str:
            try:
                self.ctx.ref(name)  # type: ignore[arg-type]
            except Exception as exc:
                seen.append(exc)
            return "ok"

    async with us.Runtime() as rt:
        looker = await rt.spawn(Looker, name="looker")
        assert await looker.ask(Ping(), timeout=GUARD) == "ok"
    assert len(seen) == 1 and isinstance(seen[0], error) and "ctx.ref" in str(seen[0])


class Answer(us.Request[str], frozen=True):
    pass


class Primary(us.Actor):
    async def answer(self, msg: Answer) -> str:
        return "primary"


class Backup(us.Actor):
    async def answer(self, msg: Answer) -> str:
        return "backup"


async def test_first_of_takes_names_and_falls_back_at_once_while_the_primary_is_missing() -> None:
    async with us.Runtime(name_wait=GUARD) as rt:
        primary = await rt.spawn(Primary, name="primary")
        backup = await rt.spawn(Backup, name="backup")
        chain = us.first_of(rt.ref("primary"), backup)
        assert await chain.ask(Answer(), timeout=GUARD) == "primary"
        await rt.stop(primary)
        with anyio.fail_after(1.0):  # no wait for the name: the backup answers
            result = await chain.ask_with_source(Answer(), timeout=GUARD)
        assert result.value == "backup"
        assert [(name, type(e)) for name, e in result.failures] == [("primary", us.UnknownActor)]
        await rt.spawn(Primary, name="primary")  # back: the same chain uses it again
        assert await chain.ask(Answer(), timeout=GUARD) == "primary"

        class Chooser(us.Actor):
            async def answer(self, msg: Answer) -> str:
                return await us.first_of("primary", "backup").ask(msg, timeout=GUARD)

        chooser = await rt.spawn(Chooser, name="chooser")
        assert await chooser.ask(Answer(), timeout=GUARD) == "primary"
    with pytest.raises(TypeError, match="is not a Ref or an actor name"):
        us.first_of(3)  # type: ignore[arg-type]


async def test_an_actor_asking_itself_is_refused_at_the_call() -> None:
    async with us.Runtime() as rt:
        me = await rt.spawn(Worker, name="me")
        for by_name in (False, True):
            with anyio.fail_after(1.0):  # refused at once, not a deadlock until the timeout
                reply = await me.ask(AskSelf(by_name), timeout=GUARD)
            assert reply.startswith("refused: actor 'me' cannot ask itself")
            assert (await me.ask(Ping(), timeout=GUARD)).startswith("pong")


async def test_what_is_kept_per_distinct_stopped_name_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(us.metrics, "RETIRED_NAMES", 50)  # the window (1000) made small

    async def cycle(prefix: str, count: int) -> None:
        for n in range(count):
            ref = await rt.spawn(Worker, name=f"{prefix}{n}")
            await ref.tell(Note("x"))
            await ref.ask(Ping())  # (no timeout: no deadline entry keeps the cell a while)
            await rt.stop(ref)

    async with us.Runtime() as rt:
        tracemalloc.start()
        try:
            await cycle("warm", 100)  # fills the window of retired names
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            await cycle("entity-", 400)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        # On main about 700 bytes stayed per distinct stopped name, for ever.
        assert grown / 400 < 100, f"{grown / 400:.0f} bytes kept per stopped name"
        assert len(rt.metrics.retired) <= 51
        exposition = rt.metrics.exposition()
    # Nothing is lost from the totals: the oldest names are summed under one label.
    assert 'understudy_actors_terminated_total{actor="~retired",reason="shutdown"}' in exposition

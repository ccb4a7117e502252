"""``self.ctx``: children, watching, timers, stopping oneself, correlation ids."""

import functools

import anyio
import msgspec
import pytest
from helpers import GUARD, Probe

import understudy as us

pytestmark = pytest.mark.anyio


class Ping(us.Request[str], frozen=True):
    pass


class Boom(us.Message, frozen=True):
    pass


class Watch(us.Message, frozen=True):
    ref: us.Ref


class Unwatch(us.Message, frozen=True):
    ref: us.Ref


class Spawn(us.Request[us.Ref], frozen=True):
    name: str


class Tick(us.Message, frozen=True):
    pass


class Count(us.Request[int], frozen=True):
    pass


class CancelTicks(us.Request[int], frozen=True):
    pass


class StopSelf(us.Message, frozen=True):
    pass


class Note(us.Message, frozen=True):
    text: str


class WhoAmI(us.Request[tuple[str, str]], frozen=True):
    pass


class Worker(us.Actor):
    """A child that records its stop and can be made to crash."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    async def ping(self, msg: Ping) -> str:
        return f"pong from {self.ctx.name}"

    async def boom(self, msg: Boom) -> None:
        raise RuntimeError(f"{self.ctx.name} exploded")

    async def note(self, msg: Note) -> None:
        self.probe.record(msg.text)

    async def stop_self(self, msg: StopSelf) -> None:
        self.ctx.stop()

    async def on_stop(self) -> None:
        self.probe.record(f"{self.ctx.name} stopped")


class Parent(us.Actor):
    """Spawns named children; does not handle Terminated, so a child's failure is its own."""

    def __init__(self, probe: Probe, children: tuple[str, ...] = ("c1", "c2", "c3")) -> None:
        self.probe = probe
        self.names = children

    async def on_start(self) -> None:
        self.children = {
            name: await self.ctx.spawn(functools.partial(Worker, self.probe), name=name)
            for name in self.names
        }

    async def spawn_child(self, msg: Spawn) -> us.Ref:
        return await self.ctx.spawn(functools.partial(Worker, self.probe), name=msg.name)

    async def boom(self, msg: Boom) -> None:
        await self.children["c1"].tell(Boom())

    async def ping(self, msg: Ping) -> str:
        return "parent pong"

    async def on_stop(self) -> None:
        self.probe.record(f"{self.ctx.name} stopped")


class Watcher(us.Actor):
    """Watches what it is told to and records every Terminated it receives."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    async def watch(self, msg: Watch) -> None:
        self.ctx.watch(msg.ref)

    async def unwatch(self, msg: Unwatch) -> None:
        self.ctx.unwatch(msg.ref)

    async def terminated(self, msg: us.Terminated) -> None:
        self.probe.record(msg)

    async def ping(self, msg: Ping) -> str:
        return "watcher pong"


# -- identity --


async def test_self_ref_and_name_identify_the_actor() -> None:
    class Me(us.Actor):
        async def who(self, msg: WhoAmI) -> tuple[str, str]:
            return self.ctx.name, self.ctx.self_ref.name

        async def ping(self, msg: Ping) -> str:
            return "yes" if self.ctx.self_ref is self.ref_seen else "no"

        async def on_start(self) -> None:
            self.ref_seen = self.ctx.self_ref

    async with us.Runtime() as rt:
        named = await rt.spawn(Me, name="me")
        anonymous = await rt.spawn(Me)
        assert await named.ask(WhoAmI(), timeout=GUARD) == ("me", "me")
        label, ref_name = await anonymous.ask(WhoAmI(), timeout=GUARD)
        assert label == ref_name == anonymous.name
        assert label.startswith("Me#")
        assert await named.ask(Ping(), timeout=GUARD) == "yes"
        assert rt.ref("me").live() is named._cell


# -- children --


async def test_children_stop_with_their_parent_in_reverse_start_order() -> None:
    probe = Probe()
    async with us.Runtime() as rt:
        parent = await rt.spawn(functools.partial(Parent, probe), name="parent")
        assert await rt.ref("c2").ask(Ping(), timeout=GUARD) == "pong from c2"
        await rt.stop(parent)
        assert probe.items == ["c3 stopped", "c2 stopped", "c1 stopped", "parent stopped"]
        for name in ("parent", "c1", "c2", "c3"):
            assert name not in rt


async def test_children_stop_before_their_parent_when_the_runtime_exits() -> None:
    probe = Probe()
    async with us.Runtime() as rt:
        await rt.spawn(functools.partial(Parent, probe, ("a",)), name="p1")
        await rt.spawn(functools.partial(Parent, probe, ("b",)), name="p2")
    assert probe.items == ["b stopped", "p2 stopped", "a stopped", "p1 stopped"]


async def test_a_child_spawned_in_a_handler_stops_with_its_parent() -> None:
    probe = Probe()
    async with us.Runtime() as rt:
        parent = await rt.spawn(functools.partial(Parent, probe, ()), name="parent")
        child = await parent.ask(Spawn("late"), timeout=GUARD)
        assert await child.ask(Ping(), timeout=GUARD) == "pong from late"
        await rt.stop(parent)
        assert probe.items == ["late stopped", "parent stopped"]
        with pytest.raises(us.ActorStopped):
            await child.ask(Ping(), timeout=GUARD)


async def test_a_failed_child_fails_a_parent_that_does_not_handle_terminated() -> None:
    probe = Probe()
    async with us.Runtime() as rt:
        with rt.events.subscribe(us.ActorTerminated) as events:
            parent = await rt.spawn(functools.partial(Parent, probe), name="parent")
            await parent.tell(Boom())
            with anyio.fail_after(GUARD):
                ended = {}
                async for event in events:
                    assert isinstance(event, us.ActorTerminated)
                    ended[event.actor] = event
                    if "parent" in ended:
                        break
    assert ended["c1"].reason == "failed"
    assert isinstance(ended["c1"].error, RuntimeError)
    failure = ended["parent"].error
    assert ended["parent"].reason == "failed"
    assert isinstance(failure, us.ChildFailed)
    assert failure.child == "c1"
    assert failure.error is ended["c1"].error
    assert failure.__cause__ is ended["c1"].error
    assert "'c1'" in str(failure)
    # The parent stopped its other children (newest first) before its own on_stop.
    assert probe.items[-3:] == ["c3 stopped", "c2 stopped", "parent stopped"]


async def test_a_parent_that_handles_terminated_survives_its_childs_failure() -> None:
    probe = Probe()

    class Guardian(Parent):
        async def terminated(self, msg: us.Terminated) -> None:
            self.probe.record((msg.ref.name, msg.reason, type(msg.error).__name__))

    async with us.Runtime() as rt:
        parent = await rt.spawn(functools.partial(Guardian, probe, ("c1",)), name="guardian")
        await parent.tell(Boom())
        await probe.wait_until(lambda items: ("c1", "failed", "RuntimeError") in items)
        assert await parent.ask(Ping(), timeout=GUARD) == "parent pong"
        assert "guardian" in rt
        assert "c1" not in rt


async def test_a_child_stopping_normally_does_not_disturb_its_parent() -> None:
    probe = Probe()
    async with us.Runtime() as rt:
        parent = await rt.spawn(functools.partial(Parent, probe, ("c1",)), name="parent")
        await rt.ref("c1").tell(StopSelf())
        await probe.wait_until(lambda items: "c1 stopped" in items)
        assert await parent.ask(Ping(), timeout=GUARD) == "parent pong"


# -- watch --


@pytest.mark.parametrize(
    ("how", "reason"), [("rt.stop", "shutdown"), ("ctx.stop", "normal"), ("crash", "failed")]
)
async def test_a_watcher_receives_terminated_with_the_reason(how: str, reason: str) -> None:
    probe = Probe()
    async with us.Runtime() as rt:
        watcher = await rt.spawn(functools.partial(Watcher, probe), name="watcher")
        worker = await rt.spawn(functools.partial(Worker, Probe()), name="worker")
        await watcher.tell(Watch(worker))
        assert await watcher.ask(Ping(), timeout=GUARD) == "watcher pong"
        if how == "rt.stop":
            await rt.stop(worker)
        elif how == "ctx.stop":
            await worker.tell(StopSelf())
        else:
            await worker.tell(Boom())
        [note] = await probe.wait_for(1)
    assert isinstance(note, us.Terminated)
    assert note.ref is worker
    assert note.reason == reason
    if reason == "failed":
        assert isinstance(note.error, RuntimeError)
        assert str(note.error) == "worker exploded"
    else:
        assert note.error is None


async def test_watching_an_actor_that_already_stopped_delivers_terminated_at_once() -> None:
    probe = Probe()
    async with us.Runtime() as rt:
        watcher = await rt.spawn(functools.partial(Watcher, probe))
        worker = await rt.spawn(functools.partial(Worker, Probe()))
        await rt.stop(worker)
        await watcher.tell(Watch(worker))
        [note] = await probe.wait_for(1)
        assert (note.ref, note.reason) == (worker, "shutdown")


async def test_an_unwatched_actor_sends_no_terminated() -> None:
    probe = Probe()
    async with us.Runtime() as rt:
        watcher = await rt.spawn(functools.partial(Watcher, probe))
        worker = await rt.spawn(functools.partial(Worker, Probe()))
        await watcher.tell(Watch(worker))
        await watcher.tell(Unwatch(worker))
        assert await watcher.ask(Ping(), timeout=GUARD) == "watcher pong"
        await rt.stop(worker)
        # A Terminated would be in the watcher's system lane, served before this ask.
        assert await watcher.ask(Ping(), timeout=GUARD) == "watcher pong"
    assert probe.items == []


async def test_watch_requires_a_terminated_handler() -> None:
    class Blind(us.Actor):
        async def watch(self, msg: Watch) -> None:
            self.ctx.watch(msg.ref)

    async with us.Runtime() as rt:
        blind = await rt.spawn(Blind, name="blind")
        worker = await rt.spawn(functools.partial(Worker, Probe()), name="worker")
        with rt.events.subscribe(us.ActorTerminated) as events:
            await blind.tell(Watch(worker))
            with anyio.fail_after(GUARD):
                ended = await anext(events)
        assert isinstance(ended, us.ActorTerminated)
        assert ended.actor == "blind"
        assert isinstance(ended.error, TypeError)
        assert "'blind' cannot watch 'worker'" in str(ended.error)
        assert "Terminated" in str(ended.error)


async def test_an_actor_cannot_watch_itself() -> None:
    class Narcissus(Watcher):
        async def ping(self, msg: Ping) -> str:
            try:
                self.ctx.watch(self.ctx.self_ref)
            except ValueError as exc:
                return str(exc)
            return "watching"

    async with us.Runtime() as rt:
        ref = await rt.spawn(functools.partial(Narcissus, Probe()), name="n")
        assert await ref.ask(Ping(), timeout=GUARD) == "actor 'n' cannot watch itself"


# -- timers --


class Ticker(us.Actor):
    class State(msgspec.Struct):
        ticks: int = 0

    def __init__(self, probe: Probe, interval: float = 0.01) -> None:
        self.probe = probe
        self.interval = interval

    async def on_start(self) -> None:
        self.timer = self.ctx.schedule_every(self.interval, Tick())

    async def tick(self, msg: Tick) -> None:
        self.state.ticks += 1
        self.probe.record(self.ctx.correlation_id)

    async def count(self, msg: Count) -> int:
        return self.state.ticks

    async def cancel(self, msg: CancelTicks) -> int:
        self.timer.cancel()
        return self.state.ticks


async def test_schedule_every_ticks_until_cancelled_and_never_after() -> None:
    probe = Probe()
    async with us.Runtime() as rt:
        ticker = await rt.spawn(functools.partial(Ticker, probe))
        await probe.wait_for(3)
        at_cancel = await ticker.ask(CancelTicks(), timeout=GUARD)
        assert at_cancel >= 3
        await anyio.sleep(0.05)  # five intervals: any surviving timer would tick
        assert await ticker.ask(Count(), timeout=GUARD) == at_cancel
    assert len(set(probe.items)) == len(probe.items)  # every tick has its own id


async def test_timers_stop_when_their_actor_stops() -> None:
    probe = Probe()
    async with us.Runtime() as rt:
        ticker = await rt.spawn(functools.partial(Ticker, probe))
        await probe.wait_for(2)
        await rt.stop(ticker)
        ticks = len(probe.items)
        await anyio.sleep(0.05)
        assert len(probe.items) == ticks
        assert rt.dead_letters.total == 0


async def test_schedule_delivers_once_with_the_senders_correlation_id() -> None:
    probe = Probe()

    class Later(us.Actor):
        async def note(self, msg: Note) -> None:
            if msg.text == "now":
                probe.record(("scheduled by", self.ctx.correlation_id))
                self.ctx.schedule(0.01, Note("later"))
            else:
                probe.record(("delivered", self.ctx.correlation_id))

    async with us.Runtime() as rt:
        ref = await rt.spawn(Later)
        await ref.tell(Note("now"))
        await probe.wait_for(2)
        await anyio.sleep(0.03)  # a repeating timer would deliver again
    (first, scheduled_by), (second, delivered_with) = probe.items
    assert (first, second) == ("scheduled by", "delivered")
    assert delivered_with == scheduled_by


async def test_schedule_refuses_a_message_the_actor_does_not_handle() -> None:
    class Scheduler(us.Actor):
        async def ping(self, msg: Ping) -> str:
            try:
                self.ctx.schedule(0.01, Boom())
            except TypeError as exc:
                return str(exc)
            return "scheduled"

    async with us.Runtime() as rt:
        ref = await rt.spawn(Scheduler, name="sched")
        reply = await ref.ask(Ping(), timeout=GUARD)
    assert "'sched'" in reply
    assert "no handler for Boom" in reply


@pytest.mark.parametrize("delay", [-1, float("nan"), "soon"])
async def test_schedule_refuses_a_bad_delay(delay: object) -> None:
    class Scheduler(us.Actor):
        async def ping(self, msg: Ping) -> str:
            try:
                self.ctx.schedule(delay, Ping())  # type: ignore[arg-type]
            except ValueError as exc:
                return str(exc)
            return "scheduled"

    async with us.Runtime() as rt:
        ref = await rt.spawn(Scheduler)
        assert "delay must be a non-negative number" in await ref.ask(Ping(), timeout=GUARD)


@pytest.mark.parametrize("interval", [0, -1, float("nan")])
async def test_schedule_every_refuses_a_non_positive_interval(interval: float) -> None:
    class Scheduler(us.Actor):
        async def ping(self, msg: Ping) -> str:
            try:
                self.ctx.schedule_every(interval, Tick())
            except ValueError as exc:
                return str(exc)
            return "scheduled"

        async def tick(self, msg: Tick) -> None: ...

    async with us.Runtime() as rt:
        ref = await rt.spawn(Scheduler)
        assert "interval" in await ref.ask(Ping(), timeout=GUARD)


async def test_a_tick_refused_by_a_full_mailbox_is_a_dead_letter_not_a_crash() -> None:
    gate = anyio.Event()

    class Busy(Ticker):
        async def on_start(self) -> None:
            self.ctx.schedule_every(0.005, Tick())

        async def hold(self, msg: Note) -> None:
            self.probe.record("holding")
            await gate.wait()

    probe = Probe()
    async with us.Runtime() as rt:
        with rt.events.subscribe(us.DeadLetter) as letters:
            ref = await rt.spawn(
                functools.partial(Busy, probe), name="busy", capacity=1, overflow="fail"
            )
            await ref.tell(Note("hold"))
            await probe.wait_until(lambda items: "holding" in items)
            with anyio.fail_after(GUARD):
                refused = [await anext(letters) for _ in range(2)]
            before = len(probe.items)
            gate.set()
            await probe.wait_until(lambda items: len(items) >= before + 2)  # ticking again
        assert [letter.reason for letter in refused] == ["mailbox_full", "mailbox_full"]  # type: ignore[attr-defined]
        assert "busy" in rt


# -- ctx.stop --


async def test_ctx_stop_ends_the_actor_after_the_current_message() -> None:
    probe = Probe()
    async with us.Runtime() as rt:
        worker = await rt.spawn(functools.partial(Worker, probe), name="worker")
        await worker.tell(Note("before"))
        await worker.tell(StopSelf())
        await worker.tell(Note("after"))
        await probe.wait_until(lambda items: "worker stopped" in items)
        assert "worker" not in rt
    assert probe.items == ["before", "worker stopped"]
    [letter] = list(rt.dead_letters)
    assert (letter.message, letter.reason) == (Note("after"), "stopped")


# -- correlation ids --


class Relay(us.Actor):
    """Records the correlation id of each message and passes it on to ``next``."""

    def __init__(self, probe: Probe, next: us.Ref | None = None) -> None:
        self.probe = probe
        self.next = next

    async def note(self, msg: Note) -> None:
        self.probe.record((self.ctx.name, msg.text, self.ctx.correlation_id))
        if self.next is not None:
            await self.next.tell(msg)

    async def who(self, msg: WhoAmI) -> tuple[str, str]:
        if self.next is not None:
            name, _ = await self.next.ask(msg, timeout=GUARD)
            return name, self.ctx.correlation_id
        return self.ctx.correlation_id, self.ctx.correlation_id


async def test_top_level_sends_get_distinct_correlation_ids() -> None:
    probe = Probe()
    async with us.Runtime() as rt:
        relay = await rt.spawn(functools.partial(Relay, probe))
        for text in "abc":
            await relay.tell(Note(text))
        await probe.wait_for(3)
    ids = [corr for _, _, corr in probe.items]
    assert len(set(ids)) == 3


async def test_sends_from_a_handler_inherit_the_correlation_id() -> None:
    probe = Probe()
    async with us.Runtime() as rt:
        last = await rt.spawn(functools.partial(Relay, probe), name="last")
        middle = await rt.spawn(functools.partial(Relay, probe, last), name="middle")
        first = await rt.spawn(functools.partial(Relay, probe, middle), name="first")
        await first.tell(Note("x"))
        await first.tell(Note("y"))
        await probe.wait_for(6)
    by_text: dict[str, set[str]] = {}
    for _, text, corr in probe.items:
        by_text.setdefault(text, set()).add(corr)
    assert len(by_text["x"]) == 1
    assert len(by_text["y"]) == 1
    assert by_text["x"] != by_text["y"]


async def test_an_ask_from_a_handler_inherits_the_correlation_id() -> None:
    async with us.Runtime() as rt:
        inner = await rt.spawn(functools.partial(Relay, Probe()))
        outer = await rt.spawn(functools.partial(Relay, Probe(), inner))
        inner_id, outer_id = await outer.ask(WhoAmI(), timeout=GUARD)
        again, _ = await outer.ask(WhoAmI(), timeout=GUARD)
    assert inner_id == outer_id
    assert again != inner_id

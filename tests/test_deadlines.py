"""Deadline propagation: every message carries the deadline of the ask it belongs to.

Backend-neutral, with a manual runtime clock where the test moves time; the cycle test uses
a short real deadline only to be unwedged by it (nothing asserts how long it took).
Virtual-time versions are in ``test_deadlines_trio.py``.
"""

from __future__ import annotations

import math

import anyio
import anyio.lowlevel
import pytest

import understudy as us

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Probe(us.Request[list[tuple[str, float | None]]], frozen=True):
    """Asks down the chain; each hop reports (name, ctx.deadline)."""

    timeouts: tuple[float | None, ...] = ()


class Hop(us.Actor):
    def __init__(self, next_hop: us.Ref | None) -> None:
        self.next_hop = next_hop

    async def probe(self, msg: Probe) -> list[tuple[str, float | None]]:
        seen = [(self.ctx.name, self.ctx.deadline)]
        if self.next_hop is None:
            return seen
        timeout, *rest = msg.timeouts or (None,)
        return seen + await self.next_hop.ask(Probe(tuple(rest)), timeout=timeout)


async def chain(rt: us.Runtime, length: int = 4) -> list[us.Ref]:
    refs: list[us.Ref] = []
    next_hop: us.Ref | None = None
    for n in reversed(range(length)):
        next_hop = await rt.spawn(lambda hop=next_hop: Hop(hop), name=f"hop{n}")
        refs.insert(0, next_hop)
    return refs


async def test_a_deadline_crosses_a_chain_of_four_actors() -> None:
    clock = Clock()
    async with us.Runtime(clock=clock) as rt:
        first, *_ = await chain(rt)
        # hop0 asks hop1 with no timeout, hop1 asks hop2 with a longer one, hop2 asks hop3
        # with a shorter one: the innermost sees the tightest, the others the outer one.
        seen = await first.ask(Probe((None, 500.0, 3.0)), timeout=10.0)
    assert seen == [("hop0", 110.0), ("hop1", 110.0), ("hop2", 110.0), ("hop3", 103.0)]


async def test_without_a_deadline_there_is_none_to_inherit() -> None:
    clock = Clock()
    async with us.Runtime(clock=clock) as rt:
        first, *_ = await chain(rt)
        seen = await first.ask(Probe())
        assert seen == [("hop0", None), ("hop1", None), ("hop2", None), ("hop3", None)]
        seen = await first.ask(Probe((None, None, 7.0)))
        assert seen == [("hop0", None), ("hop1", None), ("hop2", None), ("hop3", 107.0)]


class Hold(us.Request[str], frozen=True):
    pass


class Job(us.Request[str], frozen=True):
    name: str


class Forward(us.Request[str], frozen=True):
    name: str


class Gated(us.Actor):
    """``Hold`` blocks until the gate opens; ``Job`` records that it ran."""

    def __init__(self, gate: anyio.Event, ran: list[str]) -> None:
        self.gate = gate
        self.ran = ran

    async def hold(self, msg: Hold) -> str:
        self.ran.append("hold")
        await self.gate.wait()
        return "held"

    async def job(self, msg: Job) -> str:
        self.ran.append(msg.name)
        return msg.name


class Caller(us.Actor):
    def __init__(self, target: us.Ref) -> None:
        self.target = target

    async def forward(self, msg: Forward) -> str:
        return await self.target.ask(Job(msg.name))


async def test_a_message_whose_deadline_passed_in_the_mailbox_is_never_processed() -> None:
    clock = Clock()
    gate, ran = anyio.Event(), []
    async with us.Runtime(clock=clock) as rt:
        with rt.events.subscribe(us.DeadLetter) as letters:
            slow = await rt.spawn(lambda: Gated(gate, ran), name="slow")
            caller = await rt.spawn(lambda: Caller(slow), name="caller")
            outcome: dict[str, object] = {}

            async def outer() -> None:
                try:
                    outcome["reply"] = await caller.ask(Forward("late"), timeout=30.0)
                except Exception as exc:
                    outcome["error"] = exc

            async with anyio.create_task_group() as tg:
                tg.start_soon(slow.ask, Hold())  # occupies slow
                while ran != ["hold"]:
                    await anyio.lowlevel.checkpoint()
                tg.start_soon(outer)  # caller -> slow: queued behind Hold, deadline 130
                while len(slow._cell.mailbox) == 0:
                    await anyio.lowlevel.checkpoint()
                clock.now += 31.0  # the runtime clock passes the deadline
                gate.set()
            letter = letters.get_nowait()
        assert ran == ["hold"]  # "late" never ran
        error = outcome["error"]
        assert isinstance(error, us.DeadlineExceeded)
        assert isinstance(error, TimeoutError)
        assert "not processed" in str(error)
        assert isinstance(letter, us.DeadLetter)
        assert (letter.reason, letter.message) == ("expired", Job("late"))
        assert rt.dead_letters.counts["expired"] == 1
        text = rt.metrics.exposition()
    assert 'understudy_timeouts_total{actor="slow",kind="expired"} 1.0' in text


async def test_an_ask_whose_inherited_deadline_has_passed_is_refused_at_once() -> None:
    clock = Clock()
    ran: list[str] = []

    class Late(us.Actor):
        def __init__(self, target: us.Ref) -> None:
            self.target = target

        async def forward(self, msg: Forward) -> str:
            clock.now += 60.0  # this handler took a minute
            assert self.ctx.time_left() < 0
            return await self.target.ask(Job(msg.name))

    async with us.Runtime(clock=clock) as rt:
        target = await rt.spawn(lambda: Gated(anyio.Event(), ran))
        late = await rt.spawn(lambda: Late(target))
        with pytest.raises(us.DeadlineExceeded, match="before it was sent"):
            await late.ask(Forward("x"), timeout=10.0)
        assert ran == []
        assert rt.dead_letters.counts["expired"] == 1


async def test_ctx_time_left_and_deadline() -> None:
    clock = Clock()
    seen: list[tuple[float | None, float]] = []

    class Watcher(us.Actor):
        async def job(self, msg: Job) -> str:
            seen.append((self.ctx.deadline, self.ctx.time_left()))
            return "ok"

    async with us.Runtime(clock=clock) as rt:
        watcher = await rt.spawn(Watcher)
        await watcher.ask(Job("a"), timeout=4.0)
        await watcher.ask(Job("b"))
    assert seen == [(104.0, 4.0), (None, math.inf)]


async def test_the_asker_gets_deadline_exceeded_for_its_own_timeout_too() -> None:
    gate, ran = anyio.Event(), []
    async with us.Runtime() as rt:
        slow = await rt.spawn(lambda: Gated(gate, ran))
        with pytest.raises(us.DeadlineExceeded, match=r"within 0\.01 s"):
            await slow.ask(Hold(), timeout=0.01)
        gate.set()
        with pytest.raises(ValueError, match="positive"):
            await slow.ask(Job("x"), timeout=0)
        with pytest.raises(ValueError, match="positive"):
            await slow.ask(Job("x"), timeout=-1.0)
        with pytest.raises(TypeError, match="number"):
            await slow.ask(Job("x"), timeout="1")  # type: ignore[arg-type]


async def test_a_scheduled_message_keeps_the_deadline_of_the_message_that_scheduled_it() -> None:
    clock = Clock()
    seen: list[float | None] = []

    class Later(us.Message, frozen=True):
        pass

    class Scheduler(us.Actor):
        async def job(self, msg: Job) -> str:
            self.ctx.schedule(0, Later())
            return "scheduled"

        async def later(self, msg: Later) -> None:
            seen.append(self.ctx.deadline)

    async with us.Runtime(clock=clock) as rt:
        scheduler = await rt.spawn(Scheduler)
        await scheduler.ask(Job("x"), timeout=5.0)
        with anyio.fail_after(5):
            while not seen:
                await anyio.sleep(0.001)
    assert seen == [105.0]


# ---------------------------------------------------------------- blocked tells and cycles


class Volley(us.Message, frozen=True):
    left: int


class Serve(us.Request[str], frozen=True):
    volleys: int


class Ping(us.Request[str], frozen=True):
    pass


class Player(us.Actor):
    """Tells its partner ``Volley`` messages from its handler: with both mailboxes full,
    both block on each other."""

    async def ping(self, msg: Ping) -> str:
        return "pong"

    def __init__(self, partner: list[us.Ref], errors: list[BaseException]) -> None:
        self.partner = partner
        self.errors = errors

    async def serve(self, msg: Serve) -> str:
        try:
            for n in range(msg.volleys):
                await self.partner[0].tell(Volley(n))
        except us.DeadlineExceeded as exc:
            self.errors.append(exc)
            raise
        return "all sent"

    async def volley(self, msg: Volley) -> None:
        try:
            for n in range(3):
                await self.partner[0].tell(Volley(n))
        except us.DeadlineExceeded as exc:
            self.errors.append(exc)
            raise


async def test_two_actors_telling_each_other_with_full_mailboxes_unwedge_at_the_deadline() -> None:
    errors: list[BaseException] = []
    a_partner: list[us.Ref] = []
    b_partner: list[us.Ref] = []
    async with us.Runtime() as rt:
        a = await rt.spawn(lambda: Player(a_partner, errors), name="a", capacity=1)
        b = await rt.spawn(lambda: Player(b_partner, errors), name="b", capacity=1)
        a_partner.append(b)
        b_partner.append(a)
        with anyio.fail_after(30):  # a wedge would hang here; the deadline must end it
            with pytest.raises(us.DeadlineExceeded):
                await a.ask(Serve(100), timeout=0.2)
            while not errors:
                await anyio.sleep(0.01)
            # Unwedged: whichever of the two is still running answers again (one whose
            # blocked tell raised DeadlineExceeded failed with it).
            for name in ("a", "b"):
                if name in rt:
                    assert await rt.ref(name).ask(Ping()) == "pong"
    assert all(isinstance(error, us.DeadlineExceeded) for error in errors)
    assert rt.dead_letters.counts["expired"] >= 1


async def test_a_tell_blocked_on_a_full_mailbox_waits_until_the_deadline_of_a_budget() -> None:
    gate, ran = anyio.Event(), []
    async with us.Runtime() as rt:
        slow = await rt.spawn(lambda: Gated(gate, ran), name="slow", capacity=1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(slow.ask, Hold())
            while ran != ["hold"]:
                await anyio.lowlevel.checkpoint()
            await slow.tell(Job("fills the mailbox"))
            with anyio.fail_after(30):
                async with rt.budget(seconds=0.05):
                    with pytest.raises(us.DeadlineExceeded, match="stayed full"):
                        await slow.tell(Job("blocked"))
            gate.set()
        assert rt.dead_letters.counts["expired"] == 1

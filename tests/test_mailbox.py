"""The mailbox: bounded FIFO, overflow policies, the system lane, fairness."""

import functools

import anyio
import msgspec
import pytest
from helpers import GUARD, Probe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import understudy as us

pytestmark = pytest.mark.anyio


class Job(us.Message, frozen=True):
    n: int


class Hold(us.Message, frozen=True):
    """Handled only once the actor's gate opens."""


class Ask(us.Request[int], frozen=True):
    n: int


class Handled(us.Request[list[int]], frozen=True):
    pass


class Watch(us.Message, frozen=True):
    ref: us.Ref


class Stamp(us.Message, frozen=True):
    sender: int
    seq: int


class Stamps(us.Request[list[tuple[int, int]]], frozen=True):
    pass


class Gated(us.Actor):
    """Blocks on ``Hold`` until the gate opens; records the jobs it handles."""

    def __init__(self, gate: anyio.Event, probe: Probe) -> None:
        self.gate = gate
        self.probe = probe

    async def hold(self, msg: Hold) -> None:
        self.probe.record("holding")
        await self.gate.wait()

    async def job(self, msg: Job) -> None:
        self.probe.record(msg.n)

    async def ask(self, msg: Ask) -> int:
        self.probe.record(msg.n)
        return msg.n

    async def handled(self, msg: Handled) -> list[int]:
        return [n for n in self.probe.items if isinstance(n, int)]

    async def watch(self, msg: Watch) -> None:
        self.ctx.watch(msg.ref)

    async def terminated(self, msg: us.Terminated) -> None:
        self.probe.record(f"terminated {msg.ref.name}")


async def spawn_held(
    rt: us.Runtime, *, capacity: int, overflow: us.Overflow, name: str = "held"
) -> tuple[us.Ref, anyio.Event, Probe]:
    """An actor busy with a ``Hold`` (so its user lane fills up) and its gate and probe."""
    gate, probe = anyio.Event(), Probe()
    ref = await rt.spawn(
        functools.partial(Gated, gate, probe), name=name, capacity=capacity, overflow=overflow
    )
    await ref.tell(Hold())
    await probe.wait_for(1)
    return ref, gate, probe


# -- block --


async def test_block_makes_the_sender_wait_until_the_actor_drains() -> None:
    async with us.Runtime() as rt:
        ref, gate, _ = await spawn_held(rt, capacity=2, overflow="block")
        await ref.tell(Job(1))
        await ref.tell(Job(2))
        sent: list[int] = []

        async def send(n: int) -> None:
            await ref.tell(Job(n))
            sent.append(n)

        async with anyio.create_task_group() as tg:
            tg.start_soon(send, 3)
            await anyio.wait_all_tasks_blocked()
            assert sent == []  # the lane is full: the sender waits
            gate.set()
        assert sent == [3]
        assert await ref.ask(Handled(), timeout=GUARD) == [1, 2, 3]
    assert rt.dead_letters.total == 0


async def test_an_ask_that_times_out_waiting_for_room_is_never_handled() -> None:
    async with us.Runtime() as rt:
        ref, gate, _ = await spawn_held(rt, capacity=1, overflow="block")
        await ref.tell(Job(1))
        with pytest.raises(TimeoutError):
            await ref.ask(Ask(99), timeout=0.01)
        gate.set()
        await ref.tell(Job(2))
        assert await ref.ask(Handled(), timeout=GUARD) == [1, 2]


async def test_a_blocked_sender_that_gives_up_does_not_hold_up_the_next_one() -> None:
    async with us.Runtime() as rt:
        ref, gate, _ = await spawn_held(rt, capacity=1, overflow="block")
        await ref.tell(Job(1))
        gave_up = anyio.Event()

        async def impatient() -> None:
            with pytest.raises(TimeoutError):
                await ref.ask(Ask(99), timeout=0.01)
            gave_up.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(impatient)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ref.tell, Job(2))  # waits behind the impatient ask
            await gave_up.wait()
            gate.set()
        assert await ref.ask(Handled(), timeout=GUARD) == [1, 2]


async def test_senders_blocked_on_a_full_mailbox_are_released_when_the_actor_stops() -> None:
    async with us.Runtime() as rt:
        ref, gate, probe = await spawn_held(rt, capacity=1, overflow="block", name="full")
        await ref.tell(Job(1))
        outcome: dict[str, object] = {}

        async def tell() -> None:
            await ref.tell(Job(2))
            outcome["tell"] = "returned"

        async def ask() -> None:
            with pytest.raises(us.ActorStopped, match="'full'") as info:
                await ref.ask(Ask(3), timeout=GUARD)
            outcome["ask"] = info.value

        async with anyio.create_task_group() as tg:
            tg.start_soon(tell)
            tg.start_soon(ask)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(rt.stop, ref)
            await anyio.wait_all_tasks_blocked()
            gate.set()
        assert outcome["tell"] == "returned"
        assert isinstance(outcome["ask"], us.ActorStopped)
        assert probe.items == ["holding"]
    letters = sorted((repr(letter.message), letter.reason) for letter in rt.dead_letters)
    assert letters == [("Ask(n=3)", "stopped"), ("Job(n=1)", "stopped"), ("Job(n=2)", "stopped")]


# -- fail --


async def test_fail_raises_mailbox_full_and_dead_letters_the_message() -> None:
    async with us.Runtime() as rt:
        ref, gate, probe = await spawn_held(rt, capacity=2, overflow="fail", name="strict")
        await ref.tell(Job(1))
        await ref.tell(Job(2))
        with pytest.raises(us.MailboxFull, match=r"'strict' is full \(2 messages\)"):
            await ref.tell(Job(3))
        with pytest.raises(us.MailboxFull):
            await ref.ask(Ask(4), timeout=GUARD)
        letters = [(letter.message, letter.reason) for letter in rt.dead_letters]
        assert letters == [(Job(3), "mailbox_full"), (Ask(4), "mailbox_full")]
        gate.set()
        await probe.wait_for(3)  # "holding", 1, 2: the lane drained
        await ref.tell(Job(5))  # room again
        assert await ref.ask(Handled(), timeout=GUARD) == [1, 2, 5]
    assert rt.dead_letters.counts == {"mailbox_full": 2}


# -- drop_oldest --


async def test_drop_oldest_evicts_the_oldest_message_as_a_dead_letter() -> None:
    async with us.Runtime() as rt:
        ref, gate, probe = await spawn_held(rt, capacity=2, overflow="drop_oldest")
        for n in range(1, 6):
            await ref.tell(Job(n))
        gate.set()
        await probe.wait_for(3)
        assert probe.items == ["holding", 4, 5]
        letters = [(letter.message, letter.reason) for letter in rt.dead_letters]
    assert letters == [(Job(1), "dropped"), (Job(2), "dropped"), (Job(3), "dropped")]


async def test_an_evicted_ask_gets_mailbox_full() -> None:
    async with us.Runtime() as rt:
        ref, gate, probe = await spawn_held(rt, capacity=1, overflow="drop_oldest", name="lossy")
        async with anyio.create_task_group() as tg:

            async def evicted() -> None:
                with pytest.raises(us.MailboxFull, match=r"evicted.*'lossy'"):
                    await ref.ask(Ask(1), timeout=GUARD)

            tg.start_soon(evicted)
            await anyio.wait_all_tasks_blocked()
            await ref.tell(Job(2))
        gate.set()
        await probe.wait_for(2)
        assert probe.items == ["holding", 2]
    [letter] = list(rt.dead_letters)
    assert (letter.message, letter.reason) == (Ask(1), "dropped")


# -- capacity --


async def test_the_default_capacity_bounds_the_mailbox() -> None:
    assert us.DEFAULT_CAPACITY == 1000
    async with us.Runtime() as rt:
        ref, gate, _ = await spawn_held(rt, capacity=None, overflow="fail")  # type: ignore[arg-type]
        for n in range(us.DEFAULT_CAPACITY):
            await ref.tell(Job(n))
        with pytest.raises(us.MailboxFull):
            await ref.tell(Job(-1))
        gate.set()


async def test_the_runtime_sets_the_default_capacity() -> None:
    async with us.Runtime(mailbox_capacity=3) as rt:
        ref, gate, _ = await spawn_held(rt, capacity=None, overflow="fail")  # type: ignore[arg-type]
        for n in range(3):
            await ref.tell(Job(n))
        with pytest.raises(us.MailboxFull, match=r"\(3 messages\)"):
            await ref.tell(Job(3))
        gate.set()


@pytest.mark.parametrize(
    ("capacity", "error"), [(0, ValueError), (-1, ValueError), (True, TypeError), (2.5, TypeError)]
)
async def test_a_bad_capacity_is_refused_naming_the_actor_class(
    capacity: object, error: type[Exception]
) -> None:
    async with us.Runtime() as rt:
        with pytest.raises(error, match=r"spawn\('Gated'\): capacity must be"):
            await rt.spawn(Gated, capacity=capacity)  # type: ignore[arg-type]
        assert list(rt.dead_letters) == []


@pytest.mark.parametrize("capacity", [0, -5, False, 1.0])
def test_a_bad_runtime_mailbox_capacity_is_refused(capacity: object) -> None:
    with pytest.raises((ValueError, TypeError), match="mailbox_capacity"):
        us.Runtime(mailbox_capacity=capacity)  # type: ignore[arg-type]


async def test_an_unknown_overflow_policy_is_refused_listing_the_policies() -> None:
    async with us.Runtime() as rt:
        with pytest.raises(ValueError, match=r"overflow must be one of.*'drop_oldest'"):
            await rt.spawn(Gated, overflow="drop_newest")  # type: ignore[arg-type]


# -- the system lane --


async def test_a_stop_request_overtakes_a_full_user_lane() -> None:
    async with us.Runtime() as rt:
        ref, gate, probe = await spawn_held(rt, capacity=2, overflow="block")
        await ref.tell(Job(1))
        await ref.tell(Job(2))
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.stop, ref)
            await anyio.wait_all_tasks_blocked()
            gate.set()
        assert probe.items == ["holding"]
        letters = [(letter.message, letter.reason) for letter in rt.dead_letters]
    assert letters == [(Job(1), "stopped"), (Job(2), "stopped")]


async def test_a_terminated_notice_is_handled_before_queued_messages() -> None:
    gate, probe = anyio.Event(), Probe()
    async with us.Runtime() as rt:
        watcher = await rt.spawn(functools.partial(Gated, gate, probe))
        other = await rt.spawn(functools.partial(Gated, anyio.Event(), Probe()), name="other")
        await watcher.tell(Watch(other))
        await watcher.tell(Hold())
        await probe.wait_for(1)
        await watcher.tell(Job(1))
        await watcher.tell(Job(2))
        await rt.stop(other)
        gate.set()
        assert await watcher.ask(Handled(), timeout=GUARD) == [1, 2]
    assert probe.items == ["holding", "terminated other", 1, 2]


# -- fairness --


async def test_a_flooded_actor_does_not_starve_another() -> None:
    flood = 20_000
    async with us.Runtime() as rt:
        busy_probe, idle_probe = Probe(), Probe()
        busy = await rt.spawn(functools.partial(Gated, anyio.Event(), busy_probe), capacity=flood)
        idle = await rt.spawn(functools.partial(Gated, anyio.Event(), idle_probe))
        for n in range(flood):
            await busy.tell(Job(n))
        assert await idle.ask(Ask(1), timeout=GUARD) == 1
        handled_by_busy = len(busy_probe.items)
        assert handled_by_busy < flood  # the idle actor answered while the flood was queued
        assert len(await busy.ask(Handled(), timeout=GUARD)) == flood


# -- FIFO per sender, under any interleaving --


class Recorder(us.Actor):
    class State(msgspec.Struct):
        stamps: list[tuple[int, int]] = msgspec.field(default_factory=list)

    async def stamp(self, msg: Stamp) -> None:
        self.state.stamps.append((msg.sender, msg.seq))
        if msg.seq % 3 == 0:
            await anyio.lowlevel.checkpoint()

    async def stamps(self, msg: Stamps) -> list[tuple[int, int]]:
        return self.state.stamps


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    plans=st.lists(st.lists(st.booleans(), max_size=25), min_size=1, max_size=5),
    capacity=st.integers(min_value=1, max_value=4),
)
async def test_each_senders_messages_arrive_in_the_order_sent(
    plans: list[list[bool]], capacity: int
) -> None:
    """Senders interleave arbitrarily (each bool: yield before that send); per-sender FIFO."""
    with anyio.fail_after(GUARD):
        async with us.Runtime() as rt:
            ref = await rt.spawn(Recorder, capacity=capacity)

            async def sender(index: int, plan: list[bool]) -> None:
                for seq, pause in enumerate(plan):
                    if pause:
                        await anyio.lowlevel.checkpoint()
                    await ref.tell(Stamp(index, seq))

            async with anyio.create_task_group() as tg:
                for index, plan in enumerate(plans):
                    tg.start_soon(sender, index, plan)
            stamps = await ref.ask(Stamps())
    for index, plan in enumerate(plans):
        assert [seq for sender, seq in stamps if sender == index] == list(range(len(plan)))
    assert len(stamps) == sum(map(len, plans))
    assert rt.dead_letters.total == 0

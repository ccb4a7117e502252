"""The event stream: typed lifecycle events, bounded subscribers that never slow the runtime."""

import functools

import anyio
import pytest
from helpers import GUARD, Probe

import understudy as us

pytestmark = pytest.mark.anyio


class Job(us.Message, frozen=True):
    n: int


class Crash(us.Request[None], frozen=True):
    pass


class Ping(us.Request[str], frozen=True):
    pass


class Worker(us.Actor):
    async def job(self, msg: Job) -> None: ...

    async def crash(self, msg: Crash) -> None:
        raise ZeroDivisionError("crash")

    async def ping(self, msg: Ping) -> str:
        return "pong"


async def drain(subscription: us.Subscription) -> list[us.Event]:
    return list(iter(subscription.get_nowait, None))


async def test_a_subscriber_sees_an_actor_start_and_stop() -> None:
    async with us.Runtime() as rt:
        with rt.events.subscribe() as events:
            ref = await rt.spawn(Worker, name="w")
            await rt.stop(ref)
            started, terminated = await drain(events)
    assert isinstance(started, us.ActorStarted)
    assert (started.actor, started.actor_class) == ("w", "Worker")
    assert isinstance(terminated, us.ActorTerminated)
    assert (terminated.actor, terminated.reason, terminated.error) == ("w", "shutdown", None)
    assert started.time <= terminated.time


async def test_a_failure_is_published_as_dead_letter_failed_and_terminated() -> None:
    async with us.Runtime() as rt:
        with rt.events.subscribe() as events:
            ref = await rt.spawn(Worker, name="w")
            with pytest.raises(ZeroDivisionError) as info:
                await ref.ask(Crash(), timeout=GUARD)
            with anyio.fail_after(GUARD):
                seen = [await anext(events) for _ in range(4)]
    started, letter, failed, terminated = seen
    assert isinstance(started, us.ActorStarted)
    assert isinstance(letter, us.DeadLetter)
    assert (letter.actor, letter.message, letter.reason) == ("w", Crash(), "crashed")
    assert isinstance(failed, us.ActorFailed)
    assert (failed.actor, failed.error) == ("w", info.value)
    assert isinstance(terminated, us.ActorTerminated)
    assert (terminated.reason, terminated.error) == ("failed", info.value)
    assert [letter.reason for letter in rt.dead_letters] == ["crashed"]


async def test_a_subscription_can_choose_event_types() -> None:
    async with us.Runtime() as rt:
        with (
            rt.events.subscribe(us.DeadLetter) as letters,
            rt.events.subscribe(us.ActorStarted, us.ActorTerminated) as lifecycle,
        ):
            ref = await rt.spawn(Worker)
            await rt.stop(ref)
            await ref.tell(Job(1))
            assert [type(event) for event in await drain(letters)] == [us.DeadLetter]
            assert [type(event) for event in await drain(lifecycle)] == [
                us.ActorStarted,
                us.ActorTerminated,
            ]


async def test_every_dead_letter_is_published_with_its_correlation_id() -> None:
    async with us.Runtime() as rt:
        with rt.events.subscribe(us.DeadLetter) as events:
            ref = await rt.spawn(Worker)
            await rt.stop(ref)
            for n in range(3):
                await ref.tell(Job(n))
            published = await drain(events)
    assert published == list(rt.dead_letters)
    assert [letter.message for letter in published] == [Job(0), Job(1), Job(2)]  # type: ignore[attr-defined]
    assert len({letter.correlation_id for letter in published}) == 3  # type: ignore[attr-defined]


async def test_a_slow_subscriber_drops_and_counts_without_slowing_the_runtime() -> None:
    sent = 500
    async with us.Runtime() as rt:
        with (
            rt.events.subscribe(us.DeadLetter, buffer=3) as slow,
            rt.events.subscribe(us.DeadLetter, buffer=sent) as fast,
        ):
            ref = await rt.spawn(Worker)
            await rt.stop(ref)
            with anyio.fail_after(GUARD):
                for n in range(sent):
                    await ref.tell(Job(n))
            assert len(await drain(fast)) == sent
            kept = await drain(slow)
            assert [event.message for event in kept] == [Job(0), Job(1), Job(2)]  # type: ignore[attr-defined]
            assert slow.dropped == sent - 3
            assert fast.dropped == 0
            assert rt.events.dropped == sent - 3
        assert rt.dead_letters.total == sent


async def test_a_subscriber_iterates_until_the_runtime_exits() -> None:
    received: list[us.Event] = []

    async def consume(subscription: us.Subscription) -> None:
        async for event in subscription:
            received.append(event)

    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg, us.Runtime() as rt:
            subscription = rt.events.subscribe(us.ActorStarted, us.ActorTerminated)
            tg.start_soon(consume, subscription)
            await rt.spawn(Worker, name="a")
            await rt.spawn(Worker, name="b")
    assert [(type(event), event.actor) for event in received] == [
        (us.ActorStarted, "a"),
        (us.ActorStarted, "b"),
        (us.ActorTerminated, "b"),
        (us.ActorTerminated, "a"),
    ]


async def test_closing_a_subscription_ends_its_iteration_after_what_is_buffered() -> None:
    async with us.Runtime() as rt:
        subscription = rt.events.subscribe(us.ActorStarted)
        await rt.spawn(Worker, name="a")
        subscription.close()
        await rt.spawn(Worker, name="b")
        with anyio.fail_after(GUARD):
            received = [event.actor async for event in subscription]
    assert received == ["a"]


async def test_subscribing_after_the_runtime_exited_raises_runtime_closed() -> None:
    async with us.Runtime() as rt:
        pass
    with pytest.raises(us.RuntimeClosed):
        rt.events.subscribe()


async def test_publishing_with_no_subscriber_costs_nothing_visible() -> None:
    async with us.Runtime() as rt:
        assert not rt.events.active
        ref = await rt.spawn(Worker)
        await rt.stop(ref)
        await ref.tell(Job(1))
        assert rt.events.dropped == 0
        assert rt.dead_letters.total == 1


@pytest.mark.parametrize("buffer", [0, -1, True, 2.0])
def test_a_bad_buffer_is_refused(buffer: object) -> None:
    stream = us.Runtime().events
    with pytest.raises(ValueError, match="buffer must be a positive int"):
        stream.subscribe(buffer=buffer)  # type: ignore[arg-type]


def test_subscribing_to_something_that_is_not_an_event_type_is_refused() -> None:
    stream = us.Runtime().events
    with pytest.raises(TypeError, match="is not an event type"):
        stream.subscribe(Job)  # type: ignore[arg-type]


async def test_events_of_several_actors_interleave_in_the_order_they_happened() -> None:
    probe = Probe()

    class Recorder(Worker):
        async def on_stop(self) -> None:
            probe.record(self.ctx.name)

    async with us.Runtime() as rt:
        with rt.events.subscribe(us.ActorTerminated) as events:
            refs = [await rt.spawn(functools.partial(Recorder), name=name) for name in ("x", "y")]
            for ref in reversed(refs):
                await rt.stop(ref)
            assert [event.actor for event in await drain(events)] == ["y", "x"]
    assert probe.items == ["y", "x"]

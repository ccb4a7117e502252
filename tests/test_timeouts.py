"""Per-identity time limits: handler ``timeout``, ``queue_timeout``, ``idle_timeout``.

Backend-neutral; nothing asserts on how long real time took (the limits are tiny and the
handlers they cut would otherwise sleep for minutes). Virtual-time versions are in
``test_timeouts_trio.py``.
"""

from __future__ import annotations

import math

import anyio
import anyio.lowlevel
import pytest

import understudy as us

pytestmark = pytest.mark.anyio


class Work(us.Request[str], frozen=True):
    seconds: float


class Beat(us.Request[str], frozen=True):
    beats: int
    every: float


class Stall(us.Request[str], frozen=True):
    pass


class Worker(us.Actor):
    def __init__(self, calls: list[str] | None = None) -> None:
        self.calls = calls if calls is not None else []

    async def on_start(self) -> None:
        self.calls.append("start")

    async def work(self, msg: Work) -> str:
        self.calls.append("work")
        await anyio.sleep(msg.seconds)
        return "done"

    async def beat(self, msg: Beat) -> str:
        for _ in range(msg.beats):
            await anyio.sleep(msg.every)
            self.ctx.heartbeat()
        return "streamed"

    async def stall(self, msg: Stall) -> str:
        self.ctx.heartbeat()
        await anyio.sleep(600)
        return "never"


def supervised(calls: list[str], **options: object) -> us.Supervisor:
    return us.Supervisor(
        strategy=us.OneForOne(max_restarts=100, within=60),
        children=[us.Child(lambda: Worker(calls), name="worker", **options)],
    )


# -------------------------------------------------------------------------- handler timeout


async def test_a_handler_past_its_timeout_is_cancelled_and_the_actor_restarted() -> None:
    calls: list[str] = []
    async with us.Runtime() as rt:
        with rt.events.subscribe(us.DeadLetter, us.ChildRestarted) as events:
            tree = await rt.start(supervised(calls, timeout=0.05))
            worker = rt.ref("worker")
            with pytest.raises(us.HandlerTimeout) as caught:
                await worker.ask(Work(600))
            assert isinstance(caught.value, TimeoutError)
            assert isinstance(caught.value, us.TimedOut)
            assert caught.value.actor == "worker"
            assert "timeout (0.05 s)" in str(caught.value)
            # The supervisor restarted it, and it serves again.
            assert await worker.ask(Work(0)) == "done"
            [child] = await tree.which_children()
            assert child.restarts == 1
            kinds = []
            while (event := events.get_nowait()) is not None:
                kinds.append(event)
        letters = [e for e in kinds if isinstance(e, us.DeadLetter)]
        assert [(e.reason, type(e.message)) for e in letters] == [("timeout", Work)]
        restarted = [e for e in kinds if isinstance(e, us.ChildRestarted)]
        assert [(e.actor, e.reason, type(e.error)) for e in restarted] == [
            ("worker", "failed", us.HandlerTimeout)
        ]
    assert calls == ["start", "work", "start", "work"]
    assert rt.dead_letters.counts["timeout"] == 1


async def test_a_handler_within_its_timeout_is_untouched() -> None:
    async with us.Runtime() as rt:
        worker = await rt.spawn(Worker, timeout=30)
        for _ in range(3):
            assert await worker.ask(Work(0.001)) == "done"
        assert rt.dead_letters.total == 0


async def test_a_handler_timeout_stops_an_unsupervised_actor() -> None:
    async with us.Runtime() as rt:
        with rt.events.subscribe(us.ActorTerminated) as ended:
            worker = await rt.spawn(Worker, name="alone", timeout=0.01)
            with pytest.raises(us.HandlerTimeout):
                await worker.ask(Work(600))
            event = await ended.__anext__()
        assert isinstance(event, us.ActorTerminated)
        assert (event.actor, event.reason, type(event.error)) == (
            "alone",
            "failed",
            us.HandlerTimeout,
        )


async def test_handler_timeouts_count_as_breaker_failures() -> None:
    calls: list[str] = []
    async with us.Runtime() as rt:
        await rt.start(supervised(calls, timeout=0.01, breaker=us.Breaker(failures=2)))
        worker = rt.ref("worker")
        for _ in range(2):
            with pytest.raises(us.HandlerTimeout):
                await worker.ask(Work(600))
        with pytest.raises(us.CircuitOpen):
            await worker.ask(Work(0))
        info = rt.breaker("worker")
        assert (info.state, info.failures) == ("open", 2)


async def test_a_handler_shielded_past_its_timeout_returns_normally() -> None:
    """The timeout cancels the handler; one that shields itself and returns without
    reaching a checkpoint never sees the cancellation, and its reply stands."""

    class Stubborn(us.Actor):
        async def work(self, msg: Work) -> str:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.05)
            return "late"

    async with us.Runtime() as rt:
        stubborn = await rt.spawn(Stubborn, timeout=0.01)
        assert await stubborn.ask(Work(0)) == "late"


async def test_handler_timeouts_are_metrics_with_their_own_outcome_and_kind() -> None:
    calls: list[str] = []
    async with us.Runtime() as rt:
        await rt.start(supervised(calls, timeout=0.01))
        worker = rt.ref("worker")
        with pytest.raises(us.HandlerTimeout):
            await worker.ask(Work(600))
        assert await worker.ask(Work(0)) == "done"
        text = rt.metrics.exposition()
    assert 'understudy_messages_total{actor="worker",outcome="timeout"} 1.0' in text
    assert 'understudy_messages_total{actor="worker",outcome="error"}' not in text  # none
    assert 'understudy_timeouts_total{actor="worker",kind="timeout"} 1.0' in text
    assert 'understudy_dead_letters_total{reason="timeout"} 1.0' in text


@pytest.mark.parametrize("option", ["timeout", "queue_timeout", "idle_timeout"])
@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (-1.5, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        ("2", TypeError),
        (True, TypeError),
    ],
)
async def test_bad_time_limits_are_refused_at_the_call_site(
    option: str, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match=option):
        us.Child(Worker, **{option: value})
    async with us.Runtime() as rt:
        with pytest.raises(error, match=option):
            await rt.spawn(Worker, name="w", **{option: value})  # type: ignore[arg-type]
        assert "w" not in rt  # nothing was started


# ---------------------------------------------------------------------------- queue timeout


async def test_a_message_that_waited_past_its_queue_timeout_is_not_processed() -> None:
    now = [0.0]
    calls: list[str] = []
    async with us.Runtime(clock=lambda: now[0]) as rt:
        gate = anyio.Event()

        class Slow(us.Actor):
            async def work(self, msg: Work) -> str:
                calls.append("work")
                await gate.wait()
                return "done"

        slow = await rt.spawn(Slow, name="slow", queue_timeout=5)
        results: list[object] = []
        async with anyio.create_task_group() as tg:

            async def ask() -> None:
                try:
                    results.append(await slow.ask(Work(0)))
                except us.QueueTimeout as exc:
                    results.append(exc)

            tg.start_soon(ask)  # the first ask occupies the actor
            while not calls:
                await anyio.lowlevel.checkpoint()
            tg.start_soon(ask)  # queued behind it
            await anyio.sleep(0.01)
            now[0] += 6  # the queued one has now waited 6 s of the runtime clock
            gate.set()
        assert "done" in results
        [refused] = [r for r in results if r != "done"]
        assert isinstance(refused, us.QueueTimeout)
        assert isinstance(refused, TimeoutError)
        assert calls == ["work"]  # the expired one never ran
        assert "slow" in rt  # and the actor was not restarted or stopped
        assert rt.dead_letters.counts["queue_timeout"] == 1
        text = rt.metrics.exposition()
    assert 'understudy_timeouts_total{actor="slow",kind="queue_timeout"} 1.0' in text


async def test_a_message_within_its_queue_timeout_runs() -> None:
    async with us.Runtime() as rt:
        worker = await rt.spawn(Worker, queue_timeout=60)
        assert await worker.ask(Work(0)) == "done"


# ----------------------------------------------------------------------------- idle timeout


async def test_a_handler_that_keeps_beating_outlives_its_idle_timeout() -> None:
    async with us.Runtime() as rt:
        worker = await rt.spawn(Worker, idle_timeout=0.5)
        # 20 beats 10 ms apart: 200 ms in all, never 500 ms without a heartbeat.
        assert await worker.ask(Beat(20, 0.01)) == "streamed"


async def test_a_handler_that_stops_beating_is_cancelled_as_hung() -> None:
    calls: list[str] = []
    async with us.Runtime() as rt:
        await rt.start(supervised(calls, idle_timeout=0.02, timeout=600))
        worker = rt.ref("worker")
        with pytest.raises(us.IdleTimeout) as caught:
            await worker.ask(Stall())
        assert isinstance(caught.value, TimeoutError)
        assert "heartbeat" in str(caught.value)
        assert await worker.ask(Work(0)) == "done"  # restarted
        assert rt.dead_letters.counts["idle_timeout"] == 1
        text = rt.metrics.exposition()
    assert 'understudy_timeouts_total{actor="worker",kind="idle_timeout"} 1.0' in text
    assert 'understudy_messages_total{actor="worker",outcome="timeout"} 1.0' in text


async def test_heartbeat_without_an_idle_timeout_does_nothing() -> None:
    async with us.Runtime() as rt:
        worker = await rt.spawn(Worker)
        assert await worker.ask(Beat(3, 0)) == "streamed"

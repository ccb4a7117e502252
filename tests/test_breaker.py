"""Circuit breakers: the state machine, standalone use, and per actor identity.

Time is a manual clock (``Runtime(clock=...)`` / ``Breaker(clock=...)``), so nothing waits
in real time; trio's MockClock versions are in ``test_breaker_trio.py``.
"""

from __future__ import annotations

import math

import anyio
import anyio.lowlevel
import pytest

import understudy as us
from understudy.breaker import Breaker

pytestmark = pytest.mark.anyio


class Clock:
    """A manual clock: ``clock()`` reads it, ``clock.advance(s)`` moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Boom(Exception):
    pass


# ------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"failures": 0}, ValueError, "failures"),
        ({"failures": -1}, ValueError, "failures"),
        ({"failures": 2.5}, TypeError, "failures"),
        ({"failures": True}, TypeError, "failures"),
        ({"reset_after": 0}, ValueError, "reset_after"),
        ({"reset_after": -1.0}, ValueError, "reset_after"),
        ({"reset_after": math.nan}, ValueError, "reset_after"),
        ({"reset_after": math.inf}, ValueError, "reset_after"),
        ({"reset_after": "30"}, TypeError, "reset_after"),
        ({"half_open_calls": 0}, ValueError, "half_open_calls"),
        ({"successes": 0}, ValueError, "successes"),
        ({"successes": -3}, ValueError, "successes"),
        ({"max_reset_after": 0}, ValueError, "max_reset_after"),
        ({"reset_after": 10, "max_reset_after": 5}, ValueError, "must not be below"),
        ({"factor": 0.5}, ValueError, "factor"),
        ({"factor": 0}, ValueError, "factor"),
        ({"jitter": 1.0}, ValueError, "jitter"),
        ({"jitter": -0.1}, ValueError, "jitter"),
        ({"slow_call": 0}, ValueError, "slow_call"),
        ({"slow_call": -1}, ValueError, "slow_call"),
        ({"exclude": (ValueError, "x")}, TypeError, "exclude"),
        ({"exclude": [ValueError]}, TypeError, "exclude"),
        ({"clock": 5}, TypeError, "clock"),
        ({"name": ""}, TypeError, "name"),
    ],
)
def test_bad_settings_are_refused_at_construction(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        us.Breaker(**kwargs)  # type: ignore[arg-type]


def test_defaults_and_a_single_excluded_type() -> None:
    breaker = us.Breaker(exclude=ValueError)  # type: ignore[arg-type]
    assert breaker.exclude == (ValueError,)
    assert (breaker.failures, breaker.reset_after, breaker.half_open_calls) == (3, 30.0, 1)
    assert breaker.successes == 2
    assert breaker.max_reset_after == 300.0
    assert breaker.factor == 2.0
    assert breaker.jitter == 0.1
    assert breaker.slow_call is None


# ------------------------------------------------------------ the state machine, standalone


def breaker(clock: Clock, **kwargs: object) -> Breaker:
    settings: dict[str, object] = {"failures": 3, "reset_after": 10.0, "jitter": 0.0}
    settings.update(kwargs)
    return us.Breaker(clock=clock, name="dep", **settings)  # type: ignore[arg-type]


async def fail() -> None:
    raise Boom


async def succeed() -> str:
    return "ok"


async def test_closed_opens_after_consecutive_failures_and_a_success_resets_the_count() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(2):
        with pytest.raises(Boom):
            await b.call(fail)
    assert await b.call(succeed) == "ok"  # resets the count
    for _ in range(2):
        with pytest.raises(Boom):
            await b.call(fail)
    assert b.state == "closed"
    with pytest.raises(Boom):
        await b.call(fail)
    assert b.state == "open"


async def test_open_refuses_at_once_with_the_time_until_the_trial() -> None:
    clock = Clock()
    b = breaker(clock, failures=1)
    with pytest.raises(Boom):
        await b.call(fail)
    clock.advance(4.0)
    called = []

    async def note() -> None:
        called.append(1)

    with pytest.raises(us.CircuitOpen) as caught:
        await b.call(note)
    assert called == []
    assert caught.value.retry_after == pytest.approx(6.0)
    assert caught.value.breaker == "dep"
    assert b.snapshot().refusals == 1


async def test_after_the_reset_time_it_is_half_open_and_admits_only_the_trial_calls() -> None:
    clock = Clock()
    b = breaker(clock, failures=1, half_open_calls=2, successes=3)
    with pytest.raises(Boom):
        await b.call(fail)
    clock.advance(10.0)
    assert b.state == "half_open"
    # Two trials in flight at once; the third is refused without waiting.
    first, second = b.refusal(), b.refusal()
    assert first is None and second is None
    third = b.refusal()
    assert isinstance(third, us.CircuitOpen)
    assert third.retry_after == 0.0
    b.record_success()  # a slot frees
    assert b.refusal() is None
    b.record_success()
    b.record_success()  # three in a row: closed
    assert b.state == "closed"
    assert b.snapshot().transitions == {"closed": 1, "open": 1, "half_open": 1}


async def test_a_failed_trial_reopens_with_the_reset_time_grown_up_to_the_maximum() -> None:
    clock = Clock()
    b = breaker(clock, failures=1, factor=3.0, max_reset_after=50.0)
    with pytest.raises(Boom):
        await b.call(fail)
    expected = [30.0, 50.0, 50.0]  # 10 -> 30 -> 90 capped at 50
    waited = 10.0
    for reset in expected:
        clock.advance(waited)
        assert b.state == "half_open"
        with pytest.raises(Boom):
            await b.call(fail)
        assert b.state == "open"
        info = b.snapshot()
        assert info.reset_after == reset
        assert info.retry_after == pytest.approx(reset)
        clock.advance(reset - 0.001)
        assert b.state == "open"
        waited = 0.001
    # Closing resets the reset time.
    clock.advance(waited)
    assert await b.call(succeed) == "ok"
    assert await b.call(succeed) == "ok"
    assert b.state == "closed"
    assert b.snapshot().reset_after == 10.0


async def test_jitter_spreads_the_reset_time_within_its_bounds() -> None:
    clock = Clock()
    seen = set()
    for _ in range(20):
        b = breaker(clock, failures=1, jitter=0.5)
        with pytest.raises(Boom):
            await b.call(fail)
        retry = b.snapshot().retry_after
        assert 5.0 <= retry <= 15.0
        seen.add(round(retry, 6))
    assert len(seen) > 1


async def test_excluded_exceptions_count_as_neither_failure_nor_success() -> None:
    clock = Clock()
    b = breaker(clock, failures=2, exclude=(ValueError,))

    async def bad_input() -> None:
        raise ValueError("caller's mistake")

    with pytest.raises(Boom):
        await b.call(fail)
    for _ in range(5):
        with pytest.raises(ValueError, match="mistake"):
            await b.call(bad_input)
    assert b.snapshot().consecutive_failures == 1  # not reset, not grown
    with pytest.raises(Boom):
        await b.call(fail)
    assert b.state == "open"


async def test_slow_calls_count_as_failures_but_return_their_result() -> None:
    clock = Clock()
    b = breaker(clock, failures=2, slow_call=1.0)

    async def slow() -> str:
        clock.advance(1.5)
        return "late"

    assert await b.call(slow) == "late"
    assert await b.call(slow) == "late"
    info = b.snapshot()
    assert info.state == "open"
    assert info.slow_calls == 2


async def test_async_with_and_the_decorator_go_through_the_breaker() -> None:
    clock = Clock()
    b = breaker(clock, failures=2)

    @b
    async def flaky(ok: bool) -> str:
        if not ok:
            raise Boom
        return "fine"

    assert await flaky(True) == "fine"
    with pytest.raises(Boom):
        await flaky(False)
    with pytest.raises(Boom):
        async with b:
            raise Boom
    assert b.state == "open"
    entered = False
    with pytest.raises(us.CircuitOpen):
        async with b:
            entered = True
    assert not entered
    with pytest.raises(us.CircuitOpen):
        await flaky(True)


async def test_a_cancelled_trial_frees_its_slot() -> None:
    clock = Clock()
    b = breaker(clock, failures=1)
    with pytest.raises(Boom):
        await b.call(fail)
    clock.advance(10.0)
    with anyio.move_on_after(0):
        async with b:
            await anyio.sleep(1)
    assert b.snapshot().trials == 0
    assert await b.call(succeed) == "ok"


def test_the_decorator_needs_an_async_function() -> None:
    with pytest.raises(TypeError, match="async functions"):
        us.Breaker()(lambda: None)  # type: ignore[arg-type,return-value]


async def test_the_default_clock_is_the_event_loop_clock() -> None:
    b = us.Breaker(failures=1, reset_after=0.01, jitter=0.0)
    with pytest.raises(Boom):
        await b.call(fail)
    assert b.state == "open"
    await anyio.sleep(0.02)
    assert b.state == "half_open"


# --------------------------------------------------------------------- per actor identity


class Call(us.Request[str], frozen=True):
    pass


class Note(us.Message, frozen=True):
    pass


class Service(us.Actor):
    """Fails while ``switch['fail']`` is set; counts every handler invocation."""

    def __init__(self, switch: dict[str, bool], calls: list[str]) -> None:
        self.switch = switch
        self.calls = calls

    async def call(self, msg: Call) -> str:
        self.calls.append(self.ctx.name)
        if self.switch["fail"]:
            raise Boom("dependency down")
        return "ok"

    async def note(self, msg: Note) -> None:
        self.calls.append(self.ctx.name)
        if self.switch["fail"]:
            raise Boom("dependency down")


def supervised(
    switch: dict[str, bool], calls: list[str], breaker: Breaker, **options: object
) -> us.Supervisor:
    return us.Supervisor(
        strategy=us.OneForOne(max_restarts=10_000, within=1.0),
        children=[us.Child(lambda: Service(switch, calls), name="svc", breaker=breaker, **options)],
    )


async def test_an_actor_breaker_opens_and_refuses_asks_and_tells_before_enqueuing() -> None:
    clock = Clock()
    switch, calls = {"fail": True}, []
    async with us.Runtime(clock=clock) as rt:
        with rt.events.subscribe(us.BreakerStateChanged, us.DeadLetter) as events:
            await rt.start(supervised(switch, calls, us.Breaker(failures=3, reset_after=30)))
            svc = rt.ref("svc")
            for _ in range(3):
                with pytest.raises(Boom):
                    await svc.ask(Call())
            assert len(calls) == 3
            with pytest.raises(us.CircuitOpen) as caught:
                await svc.ask(Call())
            assert 27.0 <= caught.value.retry_after <= 33.0
            assert caught.value.breaker == "svc"
            with pytest.raises(us.CircuitOpen):
                await svc.tell(Note())
            assert len(calls) == 3  # nothing reached the handler
            assert len(rt.ref("svc")._cell.mailbox) == 0  # nor the mailbox
            assert rt.dead_letters.counts["circuit_open"] == 2
            info = rt.breaker("svc")
            assert info.state == "open"
            assert info.refusals == 2
            assert info.failures == 3
            seen = []
            while (event := events.get_nowait()) is not None:
                seen.append(event)
        changes = [e for e in seen if isinstance(e, us.BreakerStateChanged)]
        assert [(e.actor, e.previous, e.state) for e in changes] == [("svc", "closed", "open")]
        assert isinstance(changes[0].error, Boom)
        letters = [e for e in seen if isinstance(e, us.DeadLetter) and e.reason == "circuit_open"]
        assert [type(e.message) for e in letters] == [Call, Note]


async def test_half_open_trials_close_the_actor_breaker_and_restarts_keep_it() -> None:
    clock = Clock()
    switch, calls = {"fail": True}, []
    async with us.Runtime(clock=clock) as rt:
        with rt.events.subscribe(us.BreakerStateChanged) as events:
            tree = await rt.start(
                supervised(switch, calls, us.Breaker(failures=2, reset_after=5, jitter=0))
            )
            svc = rt.ref("svc")
            for _ in range(2):
                with pytest.raises(Boom):
                    await svc.ask(Call())
            [child] = await tree.which_children()
            assert child.restarts == 2  # each failure crashed and restarted the actor
            assert rt.breaker("svc").state == "open"  # the identity kept its breaker
            clock.advance(5.0)
            switch["fail"] = False
            assert await svc.ask(Call()) == "ok"  # the trial
            assert rt.breaker("svc").state == "half_open"
            assert await svc.ask(Call()) == "ok"
            assert rt.breaker("svc").state == "closed"
            states = []
            while (event := events.get_nowait()) is not None:
                assert isinstance(event, us.BreakerStateChanged)
                states.append(event.state)
        assert states == ["open", "half_open", "closed"]
        assert rt.breaker("svc").transitions == {"closed": 1, "open": 1, "half_open": 1}


async def test_a_failed_trial_reopens_the_actor_breaker_with_a_longer_reset() -> None:
    clock = Clock()
    switch, calls = {"fail": True}, []
    async with us.Runtime(clock=clock) as rt:
        await rt.start(
            supervised(switch, calls, us.Breaker(failures=1, reset_after=5, jitter=0, factor=4))
        )
        svc = rt.ref("svc")
        with pytest.raises(Boom):
            await svc.ask(Call())
        clock.advance(5.0)
        with pytest.raises(Boom):
            await svc.ask(Call())  # the trial fails
        info = rt.breaker("svc")
        assert (info.state, info.reset_after) == ("open", 20.0)
        with pytest.raises(us.CircuitOpen) as caught:
            await svc.ask(Call())
        assert caught.value.retry_after == pytest.approx(20.0)


async def test_a_breaker_storm_runs_at_most_failures_plus_trials_handlers_per_open_period() -> None:
    """1,000 concurrent asks to a failing actor: queued messages are refused once the
    breaker opens, and a half-open breaker admits only its trial calls."""
    clock = Clock()
    switch, calls = {"fail": True}, []
    settings = us.Breaker(failures=3, reset_after=10, half_open_calls=2, jitter=0)
    outcomes: dict[str, int] = {}

    async def one(svc: us.Ref) -> None:
        try:
            await svc.ask(Call())
        except Exception as exc:
            name = type(exc).__name__
            outcomes[name] = outcomes.get(name, 0) + 1

    async with us.Runtime(clock=clock, mailbox_capacity=2000) as rt:
        await rt.start(supervised(switch, calls, settings))
        svc = rt.ref("svc")
        handled = 0
        for period in range(3):
            outcomes.clear()
            calls.clear()
            async with anyio.create_task_group() as tg:
                for _ in range(1000):
                    tg.start_soon(one, svc)
            limit = 3 if period == 0 else 2  # failures, then half_open_calls trials
            assert len(calls) <= limit, (period, len(calls))
            assert outcomes == {"Boom": len(calls), "CircuitOpen": 1000 - len(calls)}
            assert rt.breaker("svc").state == "open"
            handled += len(calls)
            clock.advance(10.0 * 2**period)  # past the (growing) reset time
        assert rt.dead_letters.counts["circuit_open"] == 3000 - handled
        assert rt.breaker("svc").refusals == 3000 - handled


async def test_each_identity_gets_its_own_breaker_from_one_template() -> None:
    clock = Clock()
    template = us.Breaker(failures=1, reset_after=5)
    switch_a, switch_b, calls = {"fail": True}, {"fail": False}, []
    async with us.Runtime(clock=clock) as rt:
        sup = await rt.start(
            us.Supervisor(
                strategy=us.OneForOne(max_restarts=100, within=1.0),
                children=[
                    us.Child(lambda: Service(switch_a, calls), name="a", breaker=template),
                    us.Child(lambda: Service(switch_b, calls), name="b", breaker=template),
                ],
            )
        )
        assert sup is not None
        with pytest.raises(Boom):
            await rt.ref("a").ask(Call())
        assert rt.breaker("a").state == "open"
        assert rt.breaker("b").state == "closed"
        assert await rt.ref("b").ask(Call()) == "ok"
    assert template.state == "closed"  # the template itself is never used


async def test_spawn_and_ctx_spawn_take_a_breaker() -> None:
    clock = Clock()
    switch, calls = {"fail": True}, []

    class Parent(us.Actor):
        async def on_start(self) -> None:
            await self.ctx.spawn(
                lambda: Service(switch, calls), name="kid", breaker=us.Breaker(failures=5)
            )

    async with us.Runtime(clock=clock) as rt:
        await rt.spawn(lambda: Service(switch, calls), name="top", breaker=us.Breaker())
        await rt.spawn(Parent, name="parent")
        assert rt.breaker("top").state == "closed"
        assert rt.breaker("kid").state == "closed"
        with pytest.raises(LookupError, match="no circuit breaker"):
            rt.breaker("parent")
        with pytest.raises(us.UnknownActor):
            rt.breaker("nobody")


async def test_bad_breaker_options_are_refused_at_the_call_site() -> None:
    with pytest.raises(TypeError, match=r"us\.Breaker"):
        us.Child(Service, breaker="yes")
    with pytest.raises(TypeError, match="unknown option"):
        us.Child(Service, breakers=us.Breaker())
    async with us.Runtime() as rt:
        with pytest.raises(TypeError, match=r"us\.Breaker"):
            await rt.spawn(Service, breaker=3)  # type: ignore[arg-type]
        assert not rt.tree()


async def test_an_unsupervised_actor_whose_breaker_opens_still_fails_as_before() -> None:
    switch, calls = {"fail": True}, []
    async with us.Runtime() as rt:
        svc = await rt.spawn(lambda: Service(switch, calls), breaker=us.Breaker(failures=1))
        with pytest.raises(Boom):
            await svc.ask(Call())
        with pytest.raises((us.CircuitOpen, us.ActorStopped)):
            await svc.ask(Call())


async def test_breaker_metrics_state_transitions_and_refusals() -> None:
    clock = Clock()
    switch, calls = {"fail": True}, []
    async with us.Runtime(clock=clock) as rt:
        await rt.start(supervised(switch, calls, us.Breaker(failures=1, reset_after=5)))
        svc = rt.ref("svc")
        with pytest.raises(Boom):
            await svc.ask(Call())
        for _ in range(3):
            with pytest.raises(us.CircuitOpen):
                await svc.tell(Note())
        text = rt.metrics.exposition()
    assert 'understudy_breaker_state{actor="svc",state="open"} 1.0' in text
    assert 'understudy_breaker_state{actor="svc",state="closed"} 0.0' in text
    assert 'understudy_breaker_transitions_total{actor="svc",state="open"} 1.0' in text
    assert 'understudy_breaker_refusals_total{actor="svc"} 3.0' in text
    assert 'understudy_dead_letters_total{reason="circuit_open"} 3.0' in text


async def test_a_stopped_actors_breaker_counters_are_kept() -> None:
    clock = Clock()
    switch, calls = {"fail": True}, []
    async with us.Runtime(clock=clock) as rt:
        svc = await rt.spawn(
            lambda: Service(switch, calls), name="svc", breaker=us.Breaker(failures=1)
        )
        with pytest.raises(Boom):
            await svc.ask(Call())  # opens, and the unsupervised actor stops
        rt.metrics.exposition()
        await anyio.lowlevel.checkpoint()
        text = rt.metrics.exposition()
    assert 'understudy_breaker_transitions_total{actor="svc",state="open"} 1.0' in text
    assert 'understudy_breaker_state{actor="svc"' not in text

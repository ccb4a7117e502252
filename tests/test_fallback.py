"""Fallback chains (``us.first_of``) and retry policies (``ask(..., retry=us.Retry(...))``)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import understudy as us

pytestmark = pytest.mark.anyio


class Complete(us.Request[str], frozen=True):
    prompt: str


class Model(us.Actor):
    """Answers with its name; ``mode['fail']`` makes it raise, ``mode['hang']`` sleep."""

    def __init__(self, mode: dict[str, object], calls: list[str]) -> None:
        self.mode = mode
        self.calls = calls

    async def complete(self, msg: Complete) -> str:
        self.calls.append(self.ctx.name)
        failure = self.mode.get("fail")
        if isinstance(failure, list) and failure:
            raise failure.pop(0)
        if failure is True:
            raise ConnectionError(f"{self.ctx.name} is down")
        if self.mode.get("hang"):
            await anyio.sleep(600)
        return f"{self.ctx.name}: {msg.prompt}"


def model(name: str, mode: dict[str, object], calls: list[str], **options: Any) -> us.Child:
    return us.Child(lambda: Model(mode, calls), name=name, **options)


async def models(rt: us.Runtime, *children: us.Child) -> list[us.Ref]:
    await rt.start(
        us.Supervisor(strategy=us.OneForOne(max_restarts=100, within=60), children=children)
    )
    return [rt.ref(child.name) for child in children if child.name is not None]


# --------------------------------------------------------------------------- fallback chains


async def test_an_open_primary_is_skipped_at_once() -> None:
    calls: list[str] = []
    primary_mode: dict[str, object] = {"fail": True}
    async with us.Runtime() as rt:
        with rt.events.subscribe(us.FallbackTaken) as events:
            primary, secondary = await models(
                rt,
                model("opus", primary_mode, calls, breaker=us.Breaker(failures=1, reset_after=60)),
                model("haiku", {}, calls),
            )
            with pytest.raises(ConnectionError):
                await primary.ask(Complete("x"))  # opens its breaker
            calls.clear()
            chain = us.first_of(primary, secondary)
            answer = await chain.ask_with_source(Complete("hello"))
            event = events.get_nowait()
        assert answer.value == "haiku: hello"
        assert answer.source == secondary
        assert answer.name == "haiku"
        assert [(name, type(error)) for name, error in answer.failures] == [
            ("opus", us.CircuitOpen)
        ]
        assert calls == ["haiku"]  # the open primary's handler never ran
        assert isinstance(event, us.FallbackTaken)
        assert (event.actor, event.to, type(event.error)) == ("opus", "haiku", us.CircuitOpen)
        assert await chain.ask(Complete("again")) == "haiku: again"
        text = rt.metrics.exposition()
    assert 'understudy_fallbacks_total{from="opus",to="haiku"} 2.0' in text


async def test_a_failing_primary_falls_back_and_a_healthy_one_answers_itself() -> None:
    calls: list[str] = []
    mode: dict[str, object] = {"fail": True}
    async with us.Runtime() as rt:
        primary, secondary = await models(rt, model("opus", mode, calls), model("haiku", {}, calls))
        chain = us.first_of(primary, secondary)
        assert await chain.ask(Complete("a")) == "haiku: a"
        mode["fail"] = False
        answer = await chain.ask_with_source(Complete("b"))
        assert (answer.value, answer.source, answer.failures) == ("opus: b", primary, [])
    assert calls == ["opus", "haiku", "opus"]


async def test_a_timing_out_primary_falls_back_within_the_overall_deadline() -> None:
    calls: list[str] = []
    async with us.Runtime() as rt:
        slow, fast, cut = await models(
            rt,
            model("slow", {"hang": True}, calls, shutdown="brutal_kill"),
            model("fast", {}, calls),
            model("cut", {"hang": True}, calls, timeout=0.02),
        )
        # `each` bounds one target: the hung primary leaves time for the secondary.
        answer = await us.first_of(slow, fast, each=0.02).ask_with_source(Complete("q"), timeout=30)
        assert answer.value == "fast: q"
        assert [(n, type(e)) for n, e in answer.failures] == [("slow", us.DeadlineExceeded)]
        # A primary with its own handler timeout moves the chain on by itself.
        answer = await us.first_of(cut, fast).ask_with_source(Complete("r"), timeout=30)
        assert answer.value == "fast: r"
        assert [(n, type(e)) for n, e in answer.failures] == [("cut", us.HandlerTimeout)]


async def test_every_target_failing_raises_or_returns_the_default() -> None:
    calls: list[str] = []
    async with us.Runtime() as rt:
        a, b = await models(
            rt, model("a", {"fail": True}, calls), model("b", {"fail": True}, calls)
        )
        with pytest.raises(us.FallbackExhausted) as caught:
            await us.first_of(a, b).ask(Complete("x"))
        assert [(n, type(e)) for n, e in caught.value.failures] == [
            ("a", ConnectionError),
            ("b", ConnectionError),
        ]
        assert "a: ConnectionError" in str(caught.value)
        chain = us.first_of(a, b, default="a canned answer")
        assert await chain.ask(Complete("y")) == "a canned answer"
        answer = await chain.ask_with_source(Complete("z"))
        assert (answer.source, answer.name) == (None, "default")
        assert len(answer.failures) == 2
        assert await us.first_of(a, default=None).ask(Complete("w")) is None
        text = rt.metrics.exposition()
    assert 'understudy_fallbacks_total{from="a",to="b"} 3.0' in text
    assert 'understudy_fallbacks_total{from="b",to="default"} 2.0' in text


async def test_the_overall_deadline_bounds_the_whole_chain() -> None:
    calls: list[str] = []
    async with us.Runtime() as rt:
        a, b = await models(
            rt,
            model("a", {"hang": True}, calls, shutdown="brutal_kill"),
            model("b", {"hang": True}, calls, shutdown="brutal_kill"),
        )
        with anyio.fail_after(30):
            with pytest.raises(us.DeadlineExceeded):
                await us.first_of(a, b).ask(Complete("x"), timeout=0.05)
            assert await us.first_of(a, b, default="late").ask(Complete("x"), timeout=0.05) == (
                "late"
            )


def test_bad_fallback_chains_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        us.first_of()
    with pytest.raises(TypeError, match="not a Ref"):
        us.first_of(b"opus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="first_of: a name must not be empty"):
        us.first_of("")


async def test_bad_each_and_mixed_runtimes_are_refused() -> None:
    async with us.Runtime() as rt, us.Runtime() as other:
        a = await rt.spawn(lambda: Model({}, []), name="a")
        b = await other.spawn(lambda: Model({}, []), name="b")
        with pytest.raises(ValueError, match="same runtime"):
            us.first_of(a, b)
        with pytest.raises(ValueError, match="each"):
            us.first_of(a, each=0)
        with pytest.raises(TypeError, match="each"):
            us.first_of(a, each="1")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ retry

FAST = us.Backoff(0.001, 0.001, jitter=0)


async def test_a_retry_asks_again_after_the_failures_it_names() -> None:
    calls: list[str] = []
    mode: dict[str, object] = {"fail": [ConnectionError("1"), ConnectionError("2")]}
    async with us.Runtime() as rt:
        with rt.events.subscribe(us.AskRetried) as events:
            [flaky] = await models(rt, model("flaky", mode, calls))
            policy = us.Retry(attempts=3, backoff=FAST, on=(ConnectionError,))
            assert await flaky.ask(Complete("x"), retry=policy) == "flaky: x"
            retried = [events.get_nowait() for _ in range(2)]
        assert [(e.actor, e.attempt, type(e.error)) for e in retried] == [  # type: ignore[union-attr]
            ("flaky", 2, ConnectionError),
            ("flaky", 3, ConnectionError),
        ]
        text = rt.metrics.exposition()
    assert calls == ["flaky"] * 3
    assert 'understudy_retries_total{actor="flaky"} 2.0' in text


async def test_a_retry_gives_up_after_its_attempts_and_never_on_unnamed_errors() -> None:
    calls: list[str] = []
    async with us.Runtime() as rt:
        [flaky] = await models(rt, model("flaky", {"fail": True}, calls))
        with pytest.raises(ConnectionError):
            await flaky.ask(Complete("x"), retry=us.Retry(2, FAST, on=(ConnectionError,)))
        assert calls == ["flaky"] * 2
        calls.clear()
        with pytest.raises(ConnectionError):
            await flaky.ask(Complete("x"), retry=us.Retry(5, FAST, on=(ValueError,)))
        assert calls == ["flaky"]


async def test_a_retry_never_goes_into_an_open_circuit() -> None:
    calls: list[str] = []
    async with us.Runtime() as rt:
        [flaky] = await models(
            rt, model("flaky", {"fail": True}, calls, breaker=us.Breaker(failures=2))
        )
        with pytest.raises(us.CircuitOpen):
            await flaky.ask(Complete("x"), retry=us.Retry(10, FAST, on=(ConnectionError,)))
        assert calls == ["flaky"] * 2  # it opened after two, and the third was not sent


async def test_a_retry_does_not_wait_past_the_deadline() -> None:
    calls: list[str] = []
    slow_backoff = us.Backoff(60, 60, jitter=0)
    async with us.Runtime() as rt:
        [flaky] = await models(rt, model("flaky", {"fail": True}, calls))
        with anyio.fail_after(30):  # a 60 s wait would hang here
            with pytest.raises(ConnectionError):
                await flaky.ask(
                    Complete("x"),
                    timeout=5,
                    retry=us.Retry(3, slow_backoff, on=(ConnectionError,)),
                )
        assert calls == ["flaky"]


async def test_the_default_policy_retries_the_runtimes_transient_failures() -> None:
    calls: list[str] = []
    mode: dict[str, object] = {"fail": [us.HandlerTimeout("cut", "flaky")]}
    async with us.Runtime() as rt:
        [flaky] = await models(rt, model("flaky", mode, calls))
        assert await flaky.ask(Complete("x"), retry=us.Retry(backoff=FAST)) == "flaky: x"
        assert us.HandlerTimeout in us.RETRIED_BY_DEFAULT
        assert us.DeadlineExceeded not in us.RETRIED_BY_DEFAULT


def test_bad_retry_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="attempts"):
        us.Retry(attempts=0)
    with pytest.raises(TypeError, match="attempts"):
        us.Retry(attempts=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="backoff"):
        us.Retry(backoff=0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on"):
        us.Retry(on=("ConnectionError",))  # type: ignore[arg-type]
    assert us.Retry(on=ConnectionError).on == (ConnectionError,)  # type: ignore[arg-type]

"""Errors that are answers, not crashes (issue 11 §1) and the triage scenario it is for."""

from __future__ import annotations

import logging
import random

import anyio
import msgspec
import pytest
from helpers import GUARD

import understudy as us

pytestmark = pytest.mark.anyio


class Withdraw(us.Request[int], frozen=True):
    amount: int


class Deposit(us.Message, frozen=True):
    amount: int


class Refuse(us.Message, frozen=True):
    pass


class GetBalance(us.Request[int], frozen=True):
    pass


class Bug(us.Request[int], frozen=True):
    pass


class ToolError(Exception):
    pass


class Account(us.Actor):
    class State(msgspec.Struct):
        balance: int = 0

    state: State

    async def deposit(self, msg: Deposit) -> None:
        self.state.balance += msg.amount

    async def refuse(self, msg: Refuse) -> None:
        self.state.balance += 1000  # changed, then refused: a plain actor keeps the change
        raise ValueError("refused")

    async def withdraw(self, msg: Withdraw) -> int:
        if msg.amount > self.state.balance:
            raise ValueError(f"insufficient funds: {self.state.balance} < {msg.amount}")
        self.state.balance -= msg.amount
        return self.state.balance

    async def balance(self, msg: GetBalance) -> int:
        return self.state.balance

    async def bug(self, msg: Bug) -> int:
        return {}["nothing"]  # type: ignore[no-any-return]


def supervised(**options: object) -> us.Supervisor:
    return us.Supervisor(
        strategy=us.OneForOne(max_restarts=1, within=60.0),
        children=[us.Child(Account, name="acct", **options)],
    )


async def test_an_answered_error_reaches_the_asker_and_keeps_the_actor_and_its_state() -> None:
    async with us.Runtime() as rt:
        await rt.start(supervised())
        acct = rt.ref("acct")
        await acct.tell(Deposit(10))
        with rt.events.subscribe(us.ErrorAnswered, us.ActorFailed) as events:
            for _ in range(5):  # far more than the restart intensity (1 in 60 s) allows
                with pytest.raises(ValueError, match="insufficient funds: 10 < 50") as info:
                    await acct.ask(Withdraw(50), timeout=GUARD)
            seen = [events.get_nowait() for _ in range(5)]
            assert events.get_nowait() is None  # no ActorFailed: nothing crashed
        assert any("an answer: no restart" in note for note in info.value.__notes__)
        assert all(isinstance(e, us.ErrorAnswered) and e.message == "Withdraw" for e in seen)
        assert await acct.ask(GetBalance(), timeout=GUARD) == 10  # state kept
        assert rt.tree()[0].children[0].restarts == 0
        assert "crashed" not in rt.dead_letters.counts
        exposition = rt.metrics.exposition()
    assert 'understudy_messages_total{actor="acct",outcome="error"} 5.0' in exposition
    assert 'understudy_messages_total{actor="acct",outcome="crash"}' not in exposition  # none yet


async def test_a_tell_answered_with_an_error_is_a_dead_letter_with_reason_error() -> None:
    async with us.Runtime() as rt:
        acct = await rt.spawn(Account, name="acct")
        await acct.tell(Refuse())
        assert await acct.ask(GetBalance(), timeout=GUARD) == 1000
        assert rt.dead_letters.counts == {"error": 1}
        assert isinstance(list(rt.dead_letters)[-1].message, Refuse)


async def test_anything_else_is_still_a_crash_that_restarts_from_a_fresh_state() -> None:
    async with us.Runtime() as rt:
        await rt.start(supervised())
        acct = rt.ref("acct")
        await acct.tell(Deposit(10))
        with pytest.raises(KeyError):
            await acct.ask(Bug(), timeout=GUARD)
        assert await acct.ask(GetBalance(), timeout=GUARD) == 0  # served by the new instance
        with anyio.fail_after(GUARD):  # the supervisor records the restart in its own task
            while rt.tree()[0].children[0].restarts != 1:
                await anyio.sleep(0.001)


async def test_answers_option_on_child_and_spawn_replaces_the_class_default() -> None:
    async with us.Runtime() as rt:
        await rt.start(supervised(answers=()))  # every exception a crash...
        with pytest.raises(ValueError, match="insufficient funds"):
            await rt.ref("acct").ask(Withdraw(1), timeout=GUARD)
        with anyio.fail_after(GUARD):
            while rt.tree()[0].children[0].restarts != 1:
                await anyio.sleep(0.001)
        other = await rt.spawn(Account, name="other", answers=(KeyError,))  # ...or an answer
        with pytest.raises(KeyError):
            await other.ask(Bug(), timeout=GUARD)
        assert "other" in rt and other.live() is not None


@pytest.mark.parametrize("bad", [ValueError("x"), (1,), [KeyError], "KeyError", (BaseException,)])
async def test_bad_answers_are_refused_where_they_are_given(bad: object) -> None:
    with pytest.raises(TypeError, match="answers must be a tuple of exception classes"):
        us.Child(Account, answers=bad)
    async with us.Runtime() as rt:
        with pytest.raises(TypeError, match="answers must be a tuple of exception classes"):
            await rt.spawn(Account, name="a", answers=bad)  # type: ignore[arg-type]
        assert "a" not in rt
    with pytest.raises(TypeError, match=r"Bad.answers: answers must be a tuple"):

        class Bad(us.Actor):
            answers = bad  # type: ignore[assignment]


class Front(us.Actor):
    """Asks a backend with a budget, a deadline, a breaker: the caller's limits."""

    answers = ()  # even with no answers declared, those limits are answers

    def __init__(self, backend: us.Ref) -> None:
        self.backend = backend

    async def withdraw(self, msg: Withdraw) -> int:
        return await self.backend.ask(msg, timeout=0.01)


class Slow(us.Actor):
    async def withdraw(self, msg: Withdraw) -> int:
        await anyio.sleep(1)
        return 0


async def test_a_nested_deadline_is_an_answer_even_without_declared_answers() -> None:
    async with us.Runtime() as rt:
        slow = await rt.spawn(Slow, name="slow")
        front = await rt.spawn(lambda: Front(slow), name="front")
        with pytest.raises(us.DeadlineExceeded):
            await front.ask(Withdraw(1), timeout=GUARD)
        assert front.live() is not None  # not crashed
        assert "crashed" not in rt.dead_letters.counts


class PersistentAccount(Account):
    persistent = True


async def test_a_persistent_actor_rolls_back_what_an_answered_message_changed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        acct = await rt.spawn(PersistentAccount, name="acct")
        await acct.tell(Deposit(10))
        await acct.tell(Refuse())  # +1000, then ValueError: nothing half-applied
        assert await acct.ask(GetBalance(), timeout=GUARD) == 10
        assert rt.dead_letters.counts == {"error": 1}
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        acct = await rt.spawn(PersistentAccount, name="acct")
        assert await acct.ask(GetBalance(), timeout=GUARD) == 10


async def test_an_answer_is_logged_once_without_traceback_a_crash_with_the_actors_frames(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="understudy")
    async with us.Runtime() as rt:
        acct = await rt.spawn(Account, name="acct")
        with pytest.raises(ValueError, match="insufficient funds"):
            await acct.ask(Withdraw(5), timeout=GUARD)
        answered = [r for r in caplog.records if "answered" in r.getMessage()]
        assert len(answered) == 1
        assert answered[0].levelno <= logging.WARNING and answered[0].exc_info is None
        with pytest.raises(KeyError):
            await acct.ask(Bug(), timeout=GUARD)
    [crash] = [r for r in caplog.records if "crashed handling Bug" in r.getMessage()]
    assert crash.levelno == logging.ERROR and crash.exc_info is not None
    tb = crash.exc_info[2]
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "bug" in frames
    assert "test_an_answer_is_logged_once_without_traceback_a_crash_with_the_actors_frames" not in (
        frames
    )
    # The termination that follows names the error without repeating its traceback.
    stopped = [r for r in caplog.records if "stopped: it failed" in r.getMessage()]
    assert len(stopped) == 1 and stopped[0].exc_info is None


# -- the triage scenario (issue 11, "Done when") ----------------------------------------------


class Search(us.Request[str], frozen=True):
    query: str


class Question(us.Request[str], frozen=True):
    text: str


class FlakySearch(us.Actor):
    """A tool failing half the time, as a real one does: with a ToolError."""

    answers = (ToolError,)

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    async def search(self, msg: Search) -> str:
        if self.rng.random() < 0.5:
            raise ToolError(f"search backend failed for {msg.query!r}")
        return f"results for {msg.query}"


class Triage(us.Actor):
    """Asks the flaky search through a fallback chain; answers every question."""

    async def question(self, msg: Question) -> str:
        chain = us.first_of(self.ctx.ref("search"), default="(no search results)")
        found = await chain.ask(Search(msg.text), timeout=1.0)
        return f"{msg.text}: {found}"


async def test_a_flaky_tool_behind_a_breaker_and_a_fallback_never_takes_the_runtime_down() -> None:
    questions = 10_000
    async with us.Runtime(metrics=False) as rt:
        rng = random.Random(7)
        await rt.start(
            us.Supervisor(  # a default supervisor: 3 restarts in 5 s
                children=[
                    us.Child(
                        lambda: FlakySearch(rng),
                        name="search",
                        breaker=us.Breaker(failures=3, reset_after=0.001),
                    ),
                    us.Child(Triage, name="triage"),
                ]
            )
        )
        triage = rt.ref("triage")
        answered = fell_back = 0
        for n in range(questions):
            try:
                reply = await triage.ask(Question(f"q{n}"), timeout=GUARD)
            except us.UnderstudyError:  # a typed error is an acceptable answer too
                continue
            answered += 1
            fell_back += reply.endswith("(no search results)")
        assert answered == questions  # the fallback's default covers every failure
        assert 0 < fell_back < questions
        assert rt.tree()[0].children[0].restarts == 0  # failures were answers
        assert rt.tree()[0].state == "running"  # the root never gave up


class Deposited(msgspec.Struct):
    amount: int


class OpThenRefuse(us.Request[int], frozen=True):
    amount: int


class Ledger(us.EventSourced):
    events = (Deposited,)
    snapshot_every = 2

    class State(msgspec.Struct):
        balance: int = 0

    state: State

    def apply(self, event: Deposited) -> None:
        self.state.balance += event.amount

    async def deposit(self, msg: Deposit) -> None:
        await self.ctx.persist(Deposited(msg.amount))

    async def op_then_refuse(self, msg: OpThenRefuse) -> int:
        await self.ctx.persist(Deposited(msg.amount))
        raise ValueError("refused after persisting")

    async def balance(self, msg: GetBalance) -> int:
        return self.state.balance


async def test_an_event_sourced_actor_drops_the_events_of_an_answered_message(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with us.Runtime(store=tmp_path / "l.db") as rt:
        ledger = await rt.spawn(Ledger, name="ledger")
        for amount in (1, 2, 3):
            await ledger.tell(Deposit(amount))
        with pytest.raises(ValueError, match="refused after persisting"):
            await ledger.ask(OpThenRefuse(100), timeout=GUARD)
        assert await ledger.ask(GetBalance(), timeout=GUARD) == 6
        await ledger.tell(Deposit(4))
        assert await ledger.ask(GetBalance(), timeout=GUARD) == 10
    async with us.Runtime(store=tmp_path / "l.db") as rt:
        ledger = await rt.spawn(Ledger, name="ledger")
        assert await ledger.ask(GetBalance(), timeout=GUARD) == 10

"""Budgets: time, tokens and dollars for a request, carried through every hop."""

from __future__ import annotations

import math

import anyio
import anyio.lowlevel
import pytest

import understudy as us

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class Plan(us.Request[str], frozen=True):
    tokens: int
    usd: float


class Charge(us.Request[None], frozen=True):
    tokens: int
    usd: float


class Where(us.Request[list[str]], frozen=True):
    pass


class Agent(us.Actor):
    """Reserves an estimate, 'calls the model', settles the real use, then asks the next
    agent in the chain to do the same."""

    def __init__(self, next_agent: us.Ref | None, seen: list[us.Budget | None]) -> None:
        self.next_agent = next_agent
        self.seen = seen
        self.refused: list[us.BudgetExceeded] = []

    async def plan(self, msg: Plan) -> str:
        budget = self.ctx.budget
        self.seen.append(budget)
        if budget is not None:
            try:
                reservation = budget.reserve(tokens=msg.tokens, usd=msg.usd)
            except us.BudgetExceeded as exc:
                self.refused.append(exc)
                return f"degraded ({exc.kind})"  # a cheaper model, a template answer...
            unused = reservation.settle(tokens=msg.tokens // 2, usd=msg.usd / 2)
            assert unused == us.Usage(msg.tokens - msg.tokens // 2, msg.usd / 2)
        if self.next_agent is None:
            return self.ctx.name
        return self.ctx.name + ">" + await self.next_agent.ask(msg)

    async def charge(self, msg: Charge) -> None:
        assert self.ctx.budget is not None
        self.ctx.budget.charge(tokens=msg.tokens, usd=msg.usd)

    async def where(self, msg: Where) -> list[str]:
        return [self.ctx.correlation_id]


async def chain(rt: us.Runtime, seen: list[us.Budget | None], length: int = 3) -> us.Ref:
    next_agent: us.Ref | None = None
    for n in reversed(range(length)):
        next_agent = await rt.spawn(lambda a=next_agent: Agent(a, seen), name=f"agent{n}")
    assert next_agent is not None
    return next_agent


async def test_a_budget_is_carried_by_every_hop_and_settlements_add_up() -> None:
    seen: list[us.Budget | None] = []
    async with us.Runtime() as rt:
        first = await chain(rt, seen)
        async with rt.budget(name="conv-123", tokens=10_000, usd=1.0) as budget:
            assert await first.ask(Plan(tokens=1000, usd=0.1)) == "agent0>agent1>agent2"
        assert seen == [budget, budget, budget]
        assert budget.spent == us.Usage(1500, pytest.approx(0.15))
        assert budget.reserved == us.Usage(0, 0.0)
        assert budget.tokens_left() == 8500
        assert budget.usd_left() == pytest.approx(0.85)
        # Outside the body, messages carry no budget.
        seen.clear()
        assert await first.ask(Plan(tokens=1, usd=0.0)) == "agent0>agent1>agent2"
        assert seen == [None, None, None]


async def test_a_reservation_that_does_not_fit_raises_and_holds_nothing() -> None:
    seen: list[us.Budget | None] = []
    async with us.Runtime() as rt:
        with rt.events.subscribe(us.BudgetExhausted) as events:
            first = await chain(rt, seen, length=1)
            async with rt.budget(name="small", tokens=500, usd=1.0) as budget:
                assert await first.ask(Plan(tokens=600, usd=0.1)) == "degraded (tokens)"
                assert budget.spent == us.Usage(0, 0.0)
                assert budget.reserved == us.Usage(0, 0.0)
                # What fits still goes through.
                assert await first.ask(Plan(tokens=400, usd=0.1)) == "agent0"
            event = events.get_nowait()
        agent = first._cell.instance
        assert isinstance(agent, Agent)
        [error] = agent.refused
        assert (error.budget, error.kind, error.requested, error.available) == (
            "small",
            "tokens",
            600,
            500,
        )
        assert isinstance(event, us.BudgetExhausted)
        assert (event.actor, event.budget, event.kind) == ("agent0", "small", "tokens")
        text = rt.metrics.exposition()
    assert 'understudy_budget_exhausted_total{kind="tokens"} 1.0' in text
    assert 'understudy_budget_exhausted_total{kind="usd"} 0.0' in text


async def test_dollars_are_limited_like_tokens() -> None:
    async with us.Runtime() as rt, rt.budget(usd=0.05) as budget:
        budget.reserve(usd=0.03).settle(usd=0.03)
        with pytest.raises(us.BudgetExceeded, match="usd"):
            budget.reserve(usd=0.03)
        assert budget.tokens_left() == math.inf
        budget.reserve(tokens=10**9, usd=0.02).release()  # no token limit


async def test_charges_are_recorded_even_over_the_limit_and_then_nothing_fits() -> None:
    seen: list[us.Budget | None] = []
    async with us.Runtime() as rt:
        first = await chain(rt, seen, length=1)
        async with rt.budget(tokens=100) as budget:
            await first.ask(Charge(tokens=150, usd=0.0))
            assert budget.spent.tokens == 150
            with pytest.raises(us.BudgetExceeded):
                budget.reserve(tokens=1)
        assert rt.resilience.budget_exhausted["tokens"] == 2  # the overrun, the refusal


async def test_settling_more_than_reserved_is_recorded_and_unused_is_zero() -> None:
    async with us.Runtime() as rt, rt.budget(tokens=1000) as budget:
        reservation = budget.reserve(tokens=100)
        assert reservation.settle(tokens=300) == us.Usage(0, 0.0)
        assert budget.spent.tokens == 300
        with pytest.raises(RuntimeError, match="already settled"):
            reservation.settle(tokens=1)
        with pytest.raises(RuntimeError, match="already settled"):
            reservation.release()


async def test_a_reservation_used_as_a_context_manager_is_released_on_error() -> None:
    async with us.Runtime() as rt, rt.budget(tokens=1000) as budget:
        with pytest.raises(ConnectionError), budget.reserve(tokens=800):
            assert budget.tokens_left() == 200
            raise ConnectionError("the model call failed")
        assert budget.tokens_left() == 1000
        with budget.reserve(tokens=800) as reservation:
            reservation.settle(tokens=700)
        assert budget.tokens_left() == 300


async def test_nested_budgets_are_bounded_by_their_parent_and_charge_both() -> None:
    rt = us.Runtime()
    async with rt, rt.budget(name="conversation", tokens=1000, usd=1.0) as outer:
        outer.charge(tokens=300)
        with pytest.raises(ValueError, match="larger than the enclosing budget"):
            async with rt.budget(name="too-big", tokens=2000):
                pass
        with pytest.raises(us.BudgetExceeded) as caught:
            async with rt.budget(name="too-much-left", tokens=800):
                pass
        assert (caught.value.budget, caught.value.kind) == ("conversation", "tokens")
        async with rt.budget(name="step", tokens=500) as inner:
            assert inner.parent is outer
            inner.reserve(tokens=400).settle(tokens=400)
            assert inner.spent.tokens == 400
            assert outer.spent.tokens == 700
            # The inner one has 100 left of its own, the outer 300: the smaller binds.
            assert inner.tokens_left() == 100
            with pytest.raises(us.BudgetExceeded) as caught:
                inner.reserve(tokens=200)
            assert caught.value.budget == "step"
        async with rt.budget(name="unbounded-step") as free:
            # No limit of its own: the parent's remaining 300 still binds.
            assert free.tokens_left() == 300
            with pytest.raises(us.BudgetExceeded) as caught:
                free.reserve(tokens=301)
            assert caught.value.budget == "conversation"


class Delegate(us.Request[float], frozen=True):
    tokens: int


class Planner(us.Actor):
    """Opens a nested budget for one step inside its handler."""

    def __init__(self, rt: us.Runtime, worker: us.Ref) -> None:
        self.rt = rt
        self.worker = worker

    async def delegate(self, msg: Delegate) -> float:
        async with self.rt.budget(name="step", tokens=msg.tokens) as step:
            assert self.ctx.budget is step
            assert step.parent is not None and step.parent.name == "request"
            await self.worker.ask(Charge(tokens=msg.tokens, usd=0.0))
        assert self.ctx.budget is step.parent
        return step.spent.tokens


async def test_a_budget_opened_in_a_handler_nests_under_the_message_budget() -> None:
    seen: list[us.Budget | None] = []
    async with us.Runtime() as rt:
        worker = await chain(rt, seen, length=1)
        planner = await rt.spawn(lambda: Planner(rt, worker))
        async with rt.budget(name="request", tokens=100) as request:
            assert await planner.ask(Delegate(60)) == 60
            assert request.spent.tokens == 60
            with pytest.raises(us.BudgetExceeded):
                await planner.ask(Delegate(60))  # only 40 left for the step


async def test_seconds_is_a_deadline_carried_with_the_budget() -> None:
    clock = Clock()
    seen: list[float | None] = []

    class Timed(us.Actor):
        async def where(self, msg: Where) -> list[str]:
            seen.append(self.ctx.deadline)
            return []

    async with us.Runtime(clock=clock) as rt:
        timed = await rt.spawn(Timed)
        async with rt.budget(seconds=20) as budget:
            assert budget.deadline == 70.0
            assert budget.time_left() == 20.0
            await timed.ask(Where())
            await timed.ask(Where(), timeout=5)  # tighter: its own
            clock.now += 25
            with pytest.raises(us.BudgetExceeded, match="time"):
                budget.reserve(tokens=1)
            with pytest.raises(us.DeadlineExceeded):
                await timed.ask(Where())
        assert seen == [70.0, 55.0]
        assert rt.resilience.budget_exhausted["time"] == 1  # time runs out once


async def test_sends_in_a_budget_share_one_correlation_id() -> None:
    seen: list[us.Budget | None] = []
    async with us.Runtime() as rt:
        agent = await chain(rt, seen, length=1)
        async with rt.budget():
            first = await agent.ask(Where())
            second = await agent.ask(Where())
        third = await agent.ask(Where())
    assert first == second
    assert third != first


async def test_bad_budgets_and_amounts_are_refused_at_the_call_site() -> None:
    async with us.Runtime() as rt:
        for kwargs, error in [
            ({"seconds": 0}, ValueError),
            ({"seconds": -1}, ValueError),
            ({"seconds": math.inf}, ValueError),
            ({"tokens": 0}, ValueError),
            ({"tokens": 1.5}, TypeError),
            ({"usd": -0.5}, ValueError),
            ({"usd": math.nan}, ValueError),
            ({"usd": "1"}, TypeError),
            ({"name": ""}, TypeError),
        ]:
            with pytest.raises(error):
                rt.budget(**kwargs)  # type: ignore[arg-type]
        async with rt.budget(tokens=100, usd=1.0) as budget:
            with pytest.raises(ValueError, match="negative"):
                budget.reserve(tokens=-1)
            with pytest.raises(ValueError, match="negative"):
                budget.reserve(usd=-0.01)
            with pytest.raises(ValueError, match="negative"):
                budget.charge(tokens=-5)
            with pytest.raises(TypeError):
                budget.reserve(tokens=1.5)  # type: ignore[arg-type]
            assert budget.reserved == us.Usage(0, 0.0)
        scope = rt.budget(tokens=1)
    with pytest.raises(us.RuntimeClosed):
        async with scope:
            pass


async def test_a_budget_used_before_the_runtime_runs_is_a_clear_error() -> None:
    rt = us.Runtime()
    with pytest.raises(us.RuntimeClosed, match="not running"):
        async with rt.budget(tokens=10):
            pass


async def test_budget_exhaustion_metrics_are_exported_from_zero() -> None:
    async with us.Runtime() as rt:
        text = rt.metrics.exposition()
    for kind in ("time", "tokens", "usd"):
        assert f'understudy_budget_exhausted_total{{kind="{kind}"}} 0.0' in text


async def test_many_concurrent_reservations_never_overspend() -> None:
    async with us.Runtime() as rt:
        async with rt.budget(tokens=1000) as budget:
            granted: list[int] = []
            refused: list[int] = []

            async def call(n: int) -> None:
                try:
                    reservation = budget.reserve(tokens=30)
                except us.BudgetExceeded:
                    refused.append(n)
                    return
                await anyio.lowlevel.checkpoint()
                reservation.settle(tokens=30)
                granted.append(n)

            async with anyio.create_task_group() as tg:
                for n in range(100):
                    tg.start_soon(call, n)
        assert len(granted) == 33
        assert len(refused) == 67
        assert budget.spent.tokens == 990

"""Per-identity resilience: an actor's circuit breaker and time limits, and their metrics.

``rt.spawn`` / ``ctx.spawn`` / ``us.Child`` take four options that make an actor identity's
:class:`Guard` (an actor given none of them has no guard and pays nothing):

* ``breaker=us.Breaker(...)``: the identity's own circuit breaker (:mod:`understudy.breaker`),
  kept across restarts. Its calls are the actor's messages.
* ``timeout=`` seconds: each handler runs in a cancel scope with that deadline. Past it the
  handler is cancelled and the actor is treated as crashed (its supervisor restarts it);
  the message is a dead letter (``timeout``), its asker gets :class:`HandlerTimeout`, and
  the breaker counts a failure.
* ``idle_timeout=`` seconds: a handler that has not called ``ctx.heartbeat()`` (or
  started) for that long is treated as hung, exactly as above but with
  :class:`IdleTimeout` and reason ``idle_timeout``; a long call that keeps beating runs on.
* ``queue_timeout=`` seconds: a message that waited longer than that in the mailbox before
  its handler could start is not processed (a dead letter, ``queue_timeout``; its asker
  gets :class:`QueueTimeout`); the actor is not restarted.

What it costs: senders pass through the guard only while the breaker is not closed or a
``queue_timeout`` is set (``cell.gate``); the actor's loop consults it per message only
while there is something to watch (a time limit, ``slow_call``, a breaker that is not
closed or has recent failures). A handler timeout costs a cancel scope per message.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import anyio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from understudy._checks import optional_seconds
from understudy.actors import SKIPPED, Actor, Cell, Envelope, Handler, check_answers
from understudy.breaker import STATES, Breaker, BreakerState, BreakerStateChanged, check_breaker
from understudy.errors import CircuitOpen, HandlerTimeout, IdleTimeout, TimedOut
from understudy.messages import Message
from understudy.metrics import label_of

if TYPE_CHECKING:
    from understudy.actors import ActorSystem


def check_limit(value: object, what: str) -> float | None:
    """A time limit option: None, or a positive finite number of seconds."""
    return optional_seconds(value, what)


def check_options(options: dict[str, Any], where: str) -> None:
    """Validate the resilience options among spawn ``options`` (for ``us.Child``)."""
    check_breaker(options.get("breaker"), where)
    if options.get("answers") is not None:
        check_answers(options["answers"], where)
    for option in ("timeout", "queue_timeout", "idle_timeout"):
        check_limit(options.get(option), f"{where}: {option}")


class Guard:
    """One actor identity's breaker and time limits (internal; see the module docs)."""

    __slots__ = (
        "breaker",
        "cell",
        "clock",
        "expired",
        "idle_scope",
        "idle_timeout",
        "plain",
        "queue_timeout",
        "timeout",
    )

    def __init__(
        self,
        cell: Cell,
        breaker: Breaker | None,
        timeout: float | None,
        queue_timeout: float | None,
        idle_timeout: float | None,
    ) -> None:
        self.cell = cell
        self.clock: Callable[[], float] = cell.system.clock
        self.breaker = (
            None
            if breaker is None
            else breaker.copy(name=cell.label, clock=self.clock, listener=self._changed)
        )
        self.timeout = timeout
        self.queue_timeout = queue_timeout
        self.idle_timeout = idle_timeout
        self.plain = timeout is None and idle_timeout is None
        self.expired: TimedOut | None = None  # the time limit that just cancelled a handler
        self.idle_scope: anyio.CancelScope | None = None
        cell.set_gate(self if queue_timeout is not None else None)  # closed: senders pass free

    # -- senders' side (only while cell.gate is this guard) --

    def admit(self, cell: Cell, envelope: Envelope) -> Envelope:
        breaker = self.breaker
        if breaker is not None and breaker._state != "closed":
            error = breaker.refusal()
            if error is not None:
                cell.dead_letter(envelope, "circuit_open", error)
                raise error
        if self.queue_timeout is not None:
            msg, handler, reply, corr, stamp, limits = envelope
            start_by = self.clock() + self.queue_timeout
            if limits is None:
                return (msg, handler, reply, corr, stamp, (0.0, None, start_by))
            return (msg, handler, reply, corr, stamp, (limits[0], limits[1], start_by))
        return envelope

    def refuse(self, cell: Cell, msg: Message) -> None:
        # Breaker.blocked() inlined for the open case: a refusal is the hot path here.
        breaker = self.breaker
        if breaker is None:
            return
        if breaker._state == "open":
            left = breaker._open_until - self.clock()
            if left > 0:
                breaker.refusals += 1
                cell.refused(msg)
                raise CircuitOpen(cell.label, left)
        error = breaker.blocked()
        if error is not None:
            cell.refused(msg)
            raise error

    # -- the actor's side --

    def watching(self) -> bool:
        breaker = self.breaker
        return not self.plain or (
            breaker is not None
            and (
                breaker.slow_call is not None or breaker._state != "closed" or breaker._failures > 0
            )
        )

    async def run(self, cell: Cell, handler: Handler, instance: Actor, envelope: Envelope) -> Any:
        breaker = self.breaker
        started = 0.0
        if breaker is not None:
            if breaker._state == "open":  # queued before it opened: refused, not handled
                cell.dead_letter(envelope, "circuit_open", breaker.refuse())
                return SKIPPED
            if breaker.slow_call is not None:
                started = self.clock()
        if self.plain:
            result = await handler(instance, envelope[0])
        else:
            result = await self._limited(cell, handler, instance, envelope[0])
        if breaker is not None:
            breaker.record_success(
                self.clock() - started if breaker.slow_call is not None else None
            )
        return result

    async def _limited(self, cell: Cell, handler: Handler, instance: Actor, msg: Message) -> Any:
        # Cancel scopes' deadlines are in the event loop's clock, whatever the runtime's is.
        now = anyio.current_time()
        timeout, idle = self.timeout, self.idle_timeout
        run_scope = anyio.CancelScope(deadline=math.inf if timeout is None else now + timeout)
        idle_scope = anyio.CancelScope(deadline=math.inf if idle is None else now + idle)
        self.idle_scope = idle_scope
        try:
            with run_scope, idle_scope:
                return await handler(instance, msg)
        finally:
            self.idle_scope = None
        # Only reached when one of the two scopes cancelled the handler.
        what = f"{type(msg).__qualname__} in actor {cell.label!r}"
        error: TimedOut
        if idle_scope.cancelled_caught:
            error = IdleTimeout(
                f"the handler of {what} went {idle} s without ctx.heartbeat() and was "
                "cancelled as hung",
                cell.label,
            )
        else:
            error = HandlerTimeout(
                f"the handler of {what} ran past its timeout ({timeout} s) and was cancelled",
                cell.label,
            )
        self.expired = error
        raise error

    def own_limit(self, error: BaseException) -> bool:
        return error is self.expired

    def failed(self, cell: Cell, error: BaseException) -> str:
        reason = "crashed"
        if error is self.expired:
            reason = error.reason
            self.expired = None
        if self.breaker is not None:
            self.breaker.record_failure(error)
        return reason

    def interrupted(self) -> None:
        if self.breaker is not None:
            self.breaker.release()

    def heartbeat(self) -> None:
        scope = self.idle_scope
        if scope is not None and self.idle_timeout is not None:
            scope.deadline = anyio.current_time() + self.idle_timeout

    # -- the breaker's transitions --

    def _changed(
        self,
        breaker: Breaker,
        previous: BreakerState,
        state: BreakerState,
        error: BaseException | None,
    ) -> None:
        cell = self.cell
        cell.set_gate(self if state != "closed" or self.queue_timeout is not None else None)
        events = cell.system.events
        if events.active:
            retry_after = max(breaker._open_until - self.clock(), 0.0) if state == "open" else 0.0
            events.publish(
                BreakerStateChanged(
                    actor=cell.label,
                    previous=previous,
                    state=state,
                    retry_after=retry_after,
                    error=error,
                )
            )


def make_guard(
    system: ActorSystem,
    metrics: ResilienceMetrics,
    cell: Cell,
    breaker: Breaker | None,
    timeout: float | None,
    queue_timeout: float | None,
    idle_timeout: float | None,
) -> Guard:
    """Validate the options of a spawn and make the cell's guard (``system.guard``)."""
    where = f"spawn({cell.actor_class.__qualname__!r})"
    check_breaker(breaker, where)
    guard = Guard(
        cell,
        breaker,
        check_limit(timeout, f"{where}: timeout"),
        check_limit(queue_timeout, f"{where}: queue_timeout"),
        check_limit(idle_timeout, f"{where}: idle_timeout"),
    )
    if guard.breaker is not None:
        metrics.track(cell, guard.breaker)
    return guard


# ------------------------------------------------------------------------------------ metrics

BUDGET_KINDS = ("time", "tokens", "usd")


class ResilienceMetrics:
    """The runtime-wide counters of this layer, exported through ``rt.metrics.add_source``.

    Breakers are read at scrape time (their counters are plain integers on the breaker);
    a stopped actor's breaker counters are folded into its label's retired totals, so the
    counters never go backwards. The rest are plain dicts bumped when the (rare) event
    happens: budget exhaustions by kind, fallbacks taken by ``(from, to)``, retries by actor.
    """

    def __init__(self) -> None:
        self.breakers: dict[int, tuple[str, Breaker, Cell]] = {}
        self.retired: dict[str, tuple[dict[str, int], int]] = {}
        self.budget_exhausted: dict[str, int] = dict.fromkeys(BUDGET_KINDS, 0)
        # store (wave 2): what budgets spent and hold, by kind (tokens, usd)
        self.budget_spent: dict[str, float] = {"tokens": 0, "usd": 0.0}
        self.budget_reserved: dict[str, float] = {"tokens": 0, "usd": 0.0}
        self.fallbacks: dict[tuple[str, str], int] = {}
        self.retries: dict[str, int] = {}

    def track(self, cell: Cell, breaker: Breaker) -> None:
        self.breakers[cell.id] = (label_of(cell), breaker, cell)

    def count_fallback(self, source: str, target: str) -> None:
        key = (source, target)
        self.fallbacks[key] = self.fallbacks.get(key, 0) + 1

    def count_retry(self, actor: str) -> None:
        self.retries[actor] = self.retries.get(actor, 0) + 1

    def count_exhausted(self, kind: str) -> None:
        self.budget_exhausted[kind] = self.budget_exhausted.get(kind, 0) + 1

    def count_spent(self, tokens: int, usd: float) -> None:
        spent = self.budget_spent
        spent["tokens"] += tokens
        spent["usd"] += usd

    def count_reserved(self, tokens: int, usd: float) -> None:
        """``tokens``/``usd`` newly held (negative: freed) by reservations."""
        held = self.budget_reserved
        held["tokens"] += tokens
        held["usd"] += usd

    def describe(self) -> Iterator[Metric]:
        yield from self._families(describe=True)

    def collect(self) -> Iterator[Metric]:
        yield from self._families(describe=False)

    def _families(self, *, describe: bool) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "understudy_breaker_state",
            "Circuit breakers of live actors by state (closed, open, half_open).",
            labels=["actor", "state"],
        )
        transitions = CounterMetricFamily(
            "understudy_breaker_transitions",
            "Circuit breaker transitions, by the state entered.",
            labels=["actor", "state"],
        )
        refusals = CounterMetricFamily(
            "understudy_breaker_refusals",
            "Messages an open (or saturated half-open) circuit breaker refused.",
            labels=["actor"],
        )
        exhausted = CounterMetricFamily(
            "understudy_budget_exhausted",
            "Budget refusals by kind: time (deadline), tokens, usd.",
            labels=["kind"],
        )
        spent = CounterMetricFamily(
            "understudy_budget_spent",
            "Charged and settled against budgets, by kind (tokens, usd); a nested budget's "
            "use is counted once.",
            labels=["kind"],
        )
        reserved = GaugeMetricFamily(
            "understudy_budget_reserved",
            "Held by budget reservations not settled or released yet, by kind (tokens, usd).",
            labels=["kind"],
        )
        fallbacks = CounterMetricFamily(
            "understudy_fallbacks",
            "Fallbacks taken by us.first_of, from the target that failed to the next.",
            labels=["from", "to"],
        )
        retries = CounterMetricFamily(
            "understudy_retries", "Asks retried under a us.Retry policy.", labels=["actor"]
        )
        if not describe:
            self._breaker_samples(state, transitions, refusals)
            for kind, n in sorted(self.budget_exhausted.items()):
                exhausted.add_metric([kind], n)
            for kind, amount in sorted(self.budget_spent.items()):
                spent.add_metric([kind], amount)
            for kind, amount in sorted(self.budget_reserved.items()):
                reserved.add_metric([kind], max(amount, 0))
            for (source, target), n in sorted(self.fallbacks.items()):
                fallbacks.add_metric([source, target], n)
            for actor, n in sorted(self.retries.items()):
                retries.add_metric([actor], n)
        yield state
        yield transitions
        yield refusals
        yield exhausted
        yield spent
        yield reserved
        yield fallbacks
        yield retries

    def _breaker_samples(
        self,
        state: GaugeMetricFamily,
        transitions: CounterMetricFamily,
        refusals: CounterMetricFamily,
    ) -> None:
        for key, (label, breaker, cell) in list(self.breakers.items()):
            if cell.terminated:  # fold a stopped identity's counters into its label's
                del self.breakers[key]
                moved, refused = self.retired.get(label, (dict.fromkeys(STATES, 0), 0))
                for entered, n in breaker.transitions.items():
                    moved[entered] += n
                self.retired[label] = (moved, refused + breaker.refusals)
        states: dict[str, dict[str, int]] = {}
        moves: dict[str, dict[str, int]] = {}
        refused_by: dict[str, int] = {}
        for label, (moved, n) in self.retired.items():
            moves[label] = dict(moved)
            refused_by[label] = n
        for label, breaker, _ in self.breakers.values():
            counts = states.setdefault(label, dict.fromkeys(STATES, 0))
            counts[breaker._state] += 1  # the raw state: a scrape never moves a breaker
            into = moves.setdefault(label, dict.fromkeys(STATES, 0))
            for entered, n in breaker.transitions.items():
                into[entered] += n
            refused_by[label] = refused_by.get(label, 0) + breaker.refusals
        for label in sorted(states):
            for name, n in states[label].items():
                state.add_metric([label, name], n)
        for label in sorted(moves):
            for name, n in moves[label].items():
                transitions.add_metric([label, name], n)
        for label in sorted(refused_by):
            refusals.add_metric([label], refused_by[label])


__all__ = [
    "BUDGET_KINDS",
    "Guard",
    "ResilienceMetrics",
    "check_limit",
    "check_options",
    "make_guard",
]

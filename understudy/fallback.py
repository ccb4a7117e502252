"""Degrade instead of failing: fallback chains (:func:`first_of`) and retries (:class:`Retry`).

A fallback chain asks its targets in turn and returns the first reply::

    llm = us.first_of(rt.ref("claude-opus"), rt.ref("claude-haiku"), default=CANNED)
    answer = await llm.ask(Complete(prompt), timeout=20.0)

    result = await llm.ask_with_source(Complete(prompt))   # which one answered, and why not
    result.value, result.source, result.failures           # the others

A target whose circuit breaker is open is skipped at once (its refusal costs nothing); a
target that fails (its handler raised, it timed out, it stopped, its mailbox refused) is
left for the next, within the overall deadline: the ask's ``timeout`` and the deadline it
inherits, as for any ask. ``each`` bounds what one target may take, so a hung primary leaves
time for the others. When every target failed, or the time ran out, the chain returns
``default`` if one was given (``source`` None), and otherwise raises
:class:`~understudy.FallbackExhausted` (or :class:`~understudy.DeadlineExceeded` when the
time ran out), with each target's error. Every fallback taken is a :class:`FallbackTaken`
event and counts in ``understudy_fallbacks_total{from,to}``.

A retry policy asks one target again after the failures it names::

    reply = await ref.ask(msg, timeout=10.0, retry=us.Retry(attempts=3, on=(ConnectionError,)))

with exponential backoff and jitter between attempts (``us.Backoff``), never past the
deadline (a wait that would end after it is not started; the last error is raised), never
into an open circuit (:class:`~understudy.CircuitOpen` is raised as it is), and never after an
exception the policy does not name. Each retry is a :class:`AskRetried` event and counts in
``understudy_retries_total{actor}``.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import anyio
import msgspec

from understudy._checks import check_name, optional_seconds
from understudy.actors import Cell, Ref, Scope, _current, sender
from understudy.errors import (
    ActorStopped,
    CircuitOpen,
    DeadlineExceeded,
    FallbackExhausted,
    HandlerTimeout,
    IdleTimeout,
    MailboxFull,
    QueueTimeout,
    UnknownActor,
)
from understudy.events import Event
from understudy.messages import Request
from understudy.metrics import label_of
from understudy.supervision import Backoff

if TYPE_CHECKING:
    from understudy.runtime import Runtime

R = TypeVar("R")

_NO_DEFAULT: Any = object()


class FallbackTaken(Event, frozen=True, kw_only=True):
    """A fallback chain left target ``actor`` for ``to`` (``"default"``: the chain's
    default value) because of ``error``."""

    to: str
    error: BaseException


class AskRetried(Event, frozen=True, kw_only=True):
    """An ask to ``actor`` failed with ``error`` and is made again after ``delay``
    seconds (``attempt``: the attempt about to be made, from 2)."""

    attempt: int
    delay: float
    error: BaseException


class Answer(msgspec.Struct, Generic[R], frozen=True, kw_only=True):
    """What :meth:`FirstOf.ask_with_source` returns: the ``value``, the ``source`` that
    answered (None: the chain's default), and the ``failures`` of the targets tried
    before it, as (name, error)."""

    value: R
    source: Ref | None
    failures: list[tuple[str, BaseException]] = msgspec.field(default_factory=list)

    @property
    def name(self) -> str:
        """The answering target's name, or ``"default"``."""
        return self.source.name if self.source is not None else "default"


def _runtime(ref: Ref) -> Runtime:
    return cast("Runtime", ref._cell.system)


def _time_left(ref: Ref, timeout: float | None) -> tuple[float, float]:
    """``(now, deadline)`` of an ask made here with ``timeout`` (deadline ``inf``: none)."""
    now = ref._cell.system.clock()
    deadline = math.inf if timeout is None else now + timeout
    inherited = sender()
    limits = inherited[5] if inherited is not None else None
    if limits is not None and limits[0] and limits[0] < deadline:
        deadline = limits[0]
    return now, deadline


_check_seconds = optional_seconds


class FirstOf:
    """A fallback chain of refs or names (made by :func:`first_of`); see
    :mod:`understudy.fallback`."""

    __slots__ = ("default", "each", "names", "targets")

    def __init__(self, names: tuple[Ref | str, ...], default: Any, each: float | None) -> None:
        self.names = names
        self.targets: tuple[Ref, ...] | None = None
        """The refs, once the runtime is known (names resolve to name refs)."""
        if all(isinstance(target, Ref) for target in names):
            self.targets = cast("tuple[Ref, ...]", names)
        else:
            system = next((t._cell.system for t in names if isinstance(t, Ref)), None)
            if system is not None:
                self.targets = tuple(t if isinstance(t, Ref) else system.ref(t) for t in names)
        self.default = default
        self.each = each

    def _refs(self) -> tuple[Ref, ...]:
        if self.targets is not None:
            return self.targets
        current = _current.get()
        cell = (
            current
            if isinstance(current, Cell)
            else (current.cell if isinstance(current, Scope) else None)
        )
        if cell is None:
            raise TypeError(
                "first_of(...) given only names must be asked from inside an actor (to know "
                "its runtime); pass refs (rt.ref(name)) elsewhere"
            )
        system = cell.system
        return tuple(t if isinstance(t, Ref) else system.ref(t) for t in self.names)

    def __repr__(self) -> str:
        names = ", ".join(t.name if isinstance(t, Ref) else t for t in self.names)
        return f"<first_of {names}{', default' if self.default is not _NO_DEFAULT else ''}>"

    async def ask(self, msg: Request[R], *, timeout: float | None = None) -> R:
        """Ask each target in turn; the first reply (or the default). Raises
        :class:`FallbackExhausted` when every target failed and there is no default,
        :class:`DeadlineExceeded` when the time ran out first and there is no default."""
        return (await self.ask_with_source(msg, timeout=timeout)).value

    async def ask_with_source(self, msg: Request[R], *, timeout: float | None = None) -> Answer[R]:
        """Like :meth:`ask`, and say which target answered and why the others did not."""
        if timeout is not None:
            _check_seconds(timeout, "first_of(...).ask: timeout")
        targets = self._refs()
        first = targets[0]
        _, deadline = _time_left(first, timeout)
        clock = first._cell.system.clock
        failures: list[tuple[str, BaseException]] = []
        for index, target in enumerate(targets):
            if target._name is not None and target.live() is None:
                # A name no live actor has (its supervisor is restarting it, say): the next
                # target's turn at once, as for an open circuit.
                missing = UnknownActor(f"no actor named {target.name!r} is running")
                failures.append((target.name, missing))
                if index + 1 < len(targets):
                    self._taken(target, targets[index + 1], missing)
                elif self.default is not _NO_DEFAULT:
                    self._taken(target, None, missing)
                continue
            left = deadline - clock()
            if left <= 0:
                error: BaseException = DeadlineExceeded(
                    f"fallback chain: the deadline passed before {target.name!r} was asked",
                    target.name,
                )
                failures.append((target.name, error))
                break
            bound = left if self.each is None else min(left, self.each)
            try:
                value = await target.ask(msg, timeout=None if math.isinf(bound) else bound)
            except Exception as exc:  # any failure of this target: the next one's turn
                failures.append((target.name, exc))
                if index + 1 < len(targets):
                    self._taken(target, targets[index + 1], exc)
                elif self.default is not _NO_DEFAULT:
                    self._taken(target, None, exc)
                continue
            return Answer(value=value, source=target, failures=failures)
        if self.default is not _NO_DEFAULT:
            return Answer(value=self.default, source=None, failures=failures)
        last = failures[-1][1]
        if isinstance(last, DeadlineExceeded):
            last.add_note(
                "fallback chain: "
                + ", ".join(f"{name}: {type(error).__name__}" for name, error in failures)
            )
            raise last
        raise FallbackExhausted(failures)

    @staticmethod
    def _taken(source: Ref, to: Ref | None, error: BaseException) -> None:
        """Count and publish a fallback from ``source`` to ``to`` (None: the default)."""
        runtime = _runtime(source)
        runtime.resilience.count_fallback(
            label_of(source._cell), "default" if to is None else label_of(to._cell)
        )
        if runtime.events.active:
            name = "default" if to is None else to.name
            runtime.events.publish(FallbackTaken(actor=source.name, to=name, error=error))


def first_of(*targets: Ref | str, default: Any = _NO_DEFAULT, each: float | None = None) -> FirstOf:
    """A fallback chain over ``targets`` (refs of one runtime, or actor names, asked in
    order); see :mod:`understudy.fallback`. A name is looked up when the chain is asked
    (in the runtime of the refs given, or of the actor asking), so the chain follows it
    across restarts; a target whose name no live actor has is skipped at once
    (:class:`~understudy.UnknownActor` in the failures). ``default`` is returned when none
    can answer (without it, the chain raises); ``each`` is the most seconds one target may
    take. Raises ``TypeError``/``ValueError`` here for anything that is not a ref or a
    valid name, no targets, or a bad ``each``."""
    if not targets:
        raise ValueError("first_of needs at least one target")
    for target in targets:
        if isinstance(target, str):
            check_name(target, "first_of")
        elif not isinstance(target, Ref):
            raise TypeError(f"first_of: {target!r} is not a Ref or an actor name")
    systems = {id(target._cell.system) for target in targets if isinstance(target, Ref)}
    if len(systems) > 1:
        raise ValueError("first_of: every target must belong to the same runtime")
    return FirstOf(targets, default, _check_seconds(each, "first_of(each=)"))


RETRIED_BY_DEFAULT: tuple[type[BaseException], ...] = (
    HandlerTimeout,
    IdleTimeout,
    QueueTimeout,
    MailboxFull,
    ActorStopped,
)
"""What :class:`Retry` retries when ``on`` is not given: the runtime's transient failures
(a handler cut by its time limit, a queue timeout, a full mailbox, an actor that stopped —
a supervised one is being restarted). Name your own exceptions with ``on``."""


class Retry:
    """A retry policy for ``ref.ask(msg, retry=...)``: up to ``attempts`` asks in all,
    waiting ``backoff.delay(n)`` between them (default ``Backoff(0.05, 2.0)``), after an
    exception of a type in ``on`` (default :data:`RETRIED_BY_DEFAULT`). Never past the
    ask's deadline, never into an open circuit, never after another exception. Checked
    here: ``attempts`` ≥ 1, ``on`` exception types, ``backoff`` a ``us.Backoff``."""

    __slots__ = ("attempts", "backoff", "on", "rng")

    def __init__(
        self,
        attempts: int = 3,
        backoff: Backoff | None = None,
        on: tuple[type[BaseException], ...] = RETRIED_BY_DEFAULT,
    ) -> None:
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise TypeError(f"Retry(attempts=) must be an int, not {attempts!r}")
        if attempts < 1:
            raise ValueError(f"Retry(attempts=) must be at least 1, not {attempts}")
        if backoff is None:
            backoff = Backoff(0.05, 2.0)
        if not isinstance(backoff, Backoff):
            raise TypeError(f"Retry(backoff=) must be a us.Backoff, not {backoff!r}")
        if isinstance(on, type):
            on = (on,)
        if not isinstance(on, tuple) or not all(
            isinstance(tp, type) and issubclass(tp, BaseException) for tp in on
        ):
            raise TypeError(f"Retry(on=) must be a tuple of exception types, not {on!r}")
        self.attempts = attempts
        self.backoff = backoff
        self.on = on
        self.rng = random.Random()

    def __repr__(self) -> str:
        names = ", ".join(tp.__name__ for tp in self.on)
        return f"Retry(attempts={self.attempts}, backoff={self.backoff!r}, on=({names}))"

    async def ask(self, ref: Ref, msg: Request[R], timeout: float | None) -> R:
        """Ask ``ref`` under this policy (``ref.ask(msg, retry=self)`` calls this)."""
        if timeout is not None:
            _check_seconds(timeout, f"ask({type(msg).__qualname__}) to {ref.name!r}: timeout")
        _, deadline = _time_left(ref, timeout)
        clock = ref._cell.system.clock
        attempt = 1
        while True:
            left = deadline - clock()
            try:
                return await ref.ask(msg, timeout=None if math.isinf(left) else max(left, 1e-9))
            except (CircuitOpen, DeadlineExceeded):
                raise  # an open circuit, or no time left: never retried
            except self.on as exc:
                if attempt >= self.attempts:
                    raise
                delay = self.backoff.delay(attempt - 1, self.rng)
                if clock() + delay >= deadline:
                    raise  # the next attempt could not start before the deadline
                attempt += 1
                self._retried(ref, attempt, delay, exc)
                await anyio.sleep(delay)

    @staticmethod
    def _retried(ref: Ref, attempt: int, delay: float, error: BaseException) -> None:
        runtime = _runtime(ref)
        runtime.resilience.count_retry(label_of(ref._cell))
        if runtime.events.active:
            runtime.events.publish(
                AskRetried(actor=ref.name, attempt=attempt, delay=delay, error=error)
            )


__all__ = [
    "RETRIED_BY_DEFAULT",
    "Answer",
    "AskRetried",
    "FallbackTaken",
    "FirstOf",
    "Retry",
    "first_of",
]

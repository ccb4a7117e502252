"""Circuit breakers: stop calling what keeps failing, and try it again later.

A :class:`Breaker` is a small state machine over the outcomes of calls:

* **closed** (the normal state): calls go through. ``failures`` failures in a row open it.
  A failure is an exception (except the types in ``exclude``, which count as neither
  failure nor success), a handler timeout, or — when ``slow_call`` is set — a call that
  took longer than ``slow_call`` seconds (its result is still returned).
* **open**: every call is refused at once with :class:`~understudy.CircuitOpen`, which
  carries the seconds left until the next trial. After the reset time (``reset_after``,
  spread by ``jitter``) the next call finds the breaker **half-open**.
* **half-open**: at most ``half_open_calls`` trial calls are in flight at once; the others
  are refused. ``successes`` successes in a row close the breaker; one failure opens it
  again, with the reset time multiplied by ``factor`` (at most ``max_reset_after``). Closing
  resets it to ``reset_after``.

Use one standalone around any awaitable, on asyncio or trio::

    breaker = us.Breaker(failures=3, reset_after=30.0)

    async with breaker:                 # raises CircuitOpen instead of calling
        reply = await client.get(url)

    @breaker                            # or as a decorator of an async function
    async def fetch(url: str) -> bytes: ...

or give one to an actor (``rt.spawn(..., breaker=us.Breaker(...))``, ``us.Child(...,
breaker=...)``): the breaker is then a template, and the identity gets its own breaker with
those settings, which outlives restarts. Its calls are the actor's messages: a send to an
open breaker is refused at the call site, before it is enqueued, and is a dead letter with
reason ``circuit_open``; messages already queued when it opens are refused the same way
instead of being handled. Every transition is a :class:`BreakerStateChanged` event and is
counted in ``understudy_breaker_transitions_total``; ``rt.breaker(name)`` is a snapshot.

Time is read from ``clock`` (default ``anyio.current_time``, so trio's ``MockClock`` drives
it; an actor's breaker uses its runtime's ``clock``). Nothing here blocks: the breaker
never waits for its reset time, it compares times when a call arrives.
"""

from __future__ import annotations

import functools
import inspect
import random
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar

import anyio
import msgspec

from understudy import _checks
from understudy.errors import CircuitOpen
from understudy.events import Event

BreakerState = Literal["closed", "open", "half_open"]
STATES: tuple[BreakerState, ...] = ("closed", "open", "half_open")

P = ParamSpec("P")
T = TypeVar("T")

_CLOSED: BreakerState = "closed"
_OPEN: BreakerState = "open"
_HALF_OPEN: BreakerState = "half_open"


def _count(value: object, what: str) -> int:
    return _checks.count(value, f"Breaker({what}=)")


def _seconds(value: object, what: str) -> float:
    return _checks.finite_seconds(value, f"Breaker({what}=)")


class BreakerStateChanged(Event, frozen=True, kw_only=True):
    """A circuit breaker went from ``previous`` to ``state``.

    ``actor`` is the breaker's name (its actor's name). ``retry_after`` is the reset time
    when it opened (seconds until a trial call), else 0. ``error`` is the failure that
    opened it, when an exception did (None for a slow call).
    """

    previous: BreakerState
    state: BreakerState
    retry_after: float = 0.0
    error: BaseException | None = None


class BreakerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a breaker (``rt.breaker(name)``, ``breaker.snapshot()``).

    ``state`` is the current state (an open breaker whose reset time has passed shows
    ``half_open``); ``retry_after`` the seconds until it lets a trial through (0 unless
    open); ``reset_after`` its current reset time (grown by ``factor`` on each failed
    trial). ``consecutive_failures`` counts towards opening (closed),
    ``consecutive_successes`` towards closing (half-open), ``trials`` the trial calls in
    flight. The counters cover the breaker's whole life: ``failures`` (``slow_calls``
    included), ``successes``, ``refusals``, and ``transitions`` by the state entered.
    """

    name: str
    state: BreakerState
    retry_after: float
    reset_after: float
    consecutive_failures: int
    consecutive_successes: int
    trials: int
    failures: int
    slow_calls: int
    successes: int
    refusals: int
    transitions: dict[str, int]


Listener = Callable[["Breaker", BreakerState, BreakerState, BaseException | None], None]


class Breaker:
    """A circuit breaker; see :mod:`understudy.breaker` for the state machine.

    ``failures``: consecutive failures that open it (≥ 1). ``reset_after``: seconds it stays
    open before a trial (> 0). ``half_open_calls``: trial calls in flight at once when
    half-open (≥ 1). ``successes``: consecutive successful trials that close it (≥ 1).
    ``max_reset_after``: the most the reset time grows to (default: 10 times ``reset_after``;
    not below it). ``factor``: growth of the reset time per failed trial (≥ 1). ``jitter``:
    each reset time is multiplied by a random factor in ``[1 - jitter, 1 + jitter]``
    (0 ≤ jitter < 1), so breakers opened together do not retry together. ``slow_call``:
    seconds after which a call that returned still counts as a failure (None: never).
    ``exclude``: exception types that count as neither failure nor success (a caller's
    mistake such as ``ValueError`` says nothing about the callee's health). ``name``: how
    events and errors call it. ``clock``: a function returning monotonic seconds (default
    ``anyio.current_time``). Every argument is checked here: bad values raise ``TypeError``
    or ``ValueError`` at once.
    """

    __slots__ = (
        "_clock",
        "_failed",
        "_failures",
        "_listener",
        "_open_until",
        "_reset",
        "_rng",
        "_slow",
        "_starts",
        "_state",
        "_succeeded",
        "_successes",
        "_trials",
        "exclude",
        "factor",
        "failures",
        "half_open_calls",
        "jitter",
        "max_reset_after",
        "name",
        "refusals",
        "reset_after",
        "slow_call",
        "successes",
        "transitions",
    )

    def __init__(
        self,
        failures: int = 3,
        reset_after: float = 30.0,
        half_open_calls: int = 1,
        successes: int = 2,
        max_reset_after: float | None = None,
        factor: float = 2.0,
        jitter: float = 0.1,
        slow_call: float | None = None,
        exclude: tuple[type[BaseException], ...] = (),
        *,
        name: str = "breaker",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.failures = _count(failures, "failures")
        self.reset_after = _seconds(reset_after, "reset_after")
        self.half_open_calls = _count(half_open_calls, "half_open_calls")
        self.successes = _count(successes, "successes")
        if max_reset_after is None:
            self.max_reset_after = self.reset_after * 10
        else:
            self.max_reset_after = _seconds(max_reset_after, "max_reset_after")
            if self.max_reset_after < self.reset_after:
                raise ValueError(
                    f"Breaker(max_reset_after={max_reset_after}) must not be below "
                    f"reset_after ({reset_after})"
                )
        self.factor = _seconds(factor, "factor")
        if self.factor < 1:
            raise ValueError(f"Breaker(factor=) must be at least 1, not {factor}")
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)):
            raise TypeError(f"Breaker(jitter=) must be a number, not {jitter!r}")
        if not 0 <= jitter < 1:
            raise ValueError(f"Breaker(jitter=) must be in [0, 1), not {jitter}")
        self.jitter = float(jitter)
        self.slow_call = None if slow_call is None else _seconds(slow_call, "slow_call")
        if isinstance(exclude, type):
            exclude = (exclude,)
        if not isinstance(exclude, tuple) or not all(
            isinstance(tp, type) and issubclass(tp, BaseException) for tp in exclude
        ):
            raise TypeError(
                f"Breaker(exclude=) must be a tuple of exception types, not {exclude!r}"
            )
        self.exclude = exclude
        if not isinstance(name, str) or not name:
            raise TypeError(f"Breaker(name=) must be a non-empty str, not {name!r}")
        self.name = name
        if clock is not None and not callable(clock):
            raise TypeError(f"Breaker(clock=) must be a function returning seconds, not {clock!r}")
        self._clock: Callable[[], float] = clock if clock is not None else anyio.current_time
        self._listener: Listener | None = None
        self._rng = random.Random()
        self._state: BreakerState = _CLOSED
        self._failures = 0  # consecutive, while closed
        self._successes = 0  # consecutive, while half-open
        self._trials = 0  # trial calls in flight, while half-open
        self._open_until = 0.0
        self._reset = self.reset_after
        self._starts: dict[int, list[float]] = {}  # slow_call: start times by task
        self._failed = 0
        self._slow = 0
        self._succeeded = 0
        self.refusals = 0
        """Calls refused (open, or half-open with every trial slot taken)."""
        self.transitions: dict[str, int] = dict.fromkeys(STATES, 0)
        """Transitions so far, by the state entered."""

    def copy(
        self,
        *,
        name: str | None = None,
        clock: Callable[[], float] | None = None,
        listener: Listener | None = None,
    ) -> Breaker:
        """A new, closed breaker with the same settings (an actor identity's own)."""
        twin = Breaker(
            self.failures,
            self.reset_after,
            self.half_open_calls,
            self.successes,
            self.max_reset_after,
            self.factor,
            self.jitter,
            self.slow_call,
            self.exclude,
            name=self.name if name is None else name,
            clock=self._clock if clock is None else clock,
        )
        twin._listener = listener
        return twin

    def carry_over(self, previous: Breaker) -> None:
        """Take the state of ``previous``, the breaker of the same child under an earlier
        instance of its supervisor (supervision, wave 2: an open breaker survives its
        supervisor's restart). Counters stay this breaker's; trial slots start free."""
        self._state = previous._state
        self._failures = previous._failures
        self._successes = previous._successes
        self._trials = 0
        self._open_until = previous._open_until
        self._reset = previous._reset

    def __repr__(self) -> str:
        return (
            f"Breaker(failures={self.failures}, reset_after={self.reset_after}, "
            f"half_open_calls={self.half_open_calls}, successes={self.successes}, "
            f"max_reset_after={self.max_reset_after}, factor={self.factor}, "
            f"jitter={self.jitter}, slow_call={self.slow_call}, name={self.name!r}; "
            f"{self._state})"
        )

    # -- reading --

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose reset time has passed becomes
        half-open when read (or when the next call arrives). Never blocks."""
        if self._state == _OPEN and self._clock() >= self._open_until:
            self._to(_HALF_OPEN, None)
        return self._state

    def snapshot(self) -> BreakerInfo:
        """The state and counters as a :class:`BreakerInfo`. Never blocks."""
        state = self.state
        return BreakerInfo(
            name=self.name,
            state=state,
            retry_after=max(self._open_until - self._clock(), 0.0) if state == _OPEN else 0.0,
            reset_after=self._reset,
            consecutive_failures=self._failures,
            consecutive_successes=self._successes,
            trials=self._trials,
            failures=self._failed,
            slow_calls=self._slow,
            successes=self._succeeded,
            refusals=self.refusals,
            transitions=dict(self.transitions),
        )

    # -- the state machine (synchronous; the actor runtime calls these too) --

    def refusal(self) -> CircuitOpen | None:
        """Admit a call (None) or return the :class:`CircuitOpen` to raise, counted as a
        refusal. A call admitted while half-open holds a trial slot until its outcome is
        recorded. Never blocks."""
        state = self._state
        if state == _CLOSED:
            return None
        if state == _OPEN:
            now = self._clock()
            if now < self._open_until:
                self.refusals += 1
                return CircuitOpen(self.name, self._open_until - now)
            self._to(_HALF_OPEN, None)
        if self._trials >= self.half_open_calls:
            self.refusals += 1
            return CircuitOpen(self.name, 0.0)
        self._trials += 1
        return None

    def blocked(self) -> CircuitOpen | None:
        """The :class:`CircuitOpen` to raise (counted as a refusal) if the breaker refuses
        any call now — open before its reset time, or half-open with every trial slot
        taken — else None; admits nothing (see :meth:`refusal`). Never blocks."""
        state = self._state
        if state == _OPEN:
            left = self._open_until - self._clock()
            if left > 0:
                self.refusals += 1
                return CircuitOpen(self.name, left)
        elif state == _HALF_OPEN and self._trials >= self.half_open_calls:
            self.refusals += 1
            return CircuitOpen(self.name, 0.0)
        return None

    def refuse(self) -> CircuitOpen:
        """Count a refusal of a call admitted earlier that finds the breaker open (an
        actor's queued message); the error to give its caller. Never blocks."""
        self.refusals += 1
        return CircuitOpen(self.name, max(self._open_until - self._clock(), 0.0))

    def record_success(self, duration: float | None = None) -> None:
        """An admitted call returned after ``duration`` seconds (None: not timed). A call
        slower than ``slow_call`` is recorded as a failure instead."""
        slow_call = self.slow_call
        if duration is not None and slow_call is not None and duration > slow_call:
            self._slow += 1
            self._failure(None)
            return
        self._succeeded += 1
        state = self._state
        if state == _CLOSED:
            self._failures = 0
        elif state == _HALF_OPEN:
            if self._trials:
                self._trials -= 1
            self._successes += 1
            if self._successes >= self.successes:
                self._to(_CLOSED, None)

    def record_failure(self, error: BaseException) -> None:
        """An admitted call raised ``error`` (a type in ``exclude`` only frees its trial
        slot: it counts as neither failure nor success)."""
        if isinstance(error, self.exclude):
            self.release()
            return
        self._failure(error)

    def release(self) -> None:
        """An admitted call ended without an outcome (cancelled): free its trial slot."""
        if self._state == _HALF_OPEN and self._trials:
            self._trials -= 1

    def _failure(self, error: BaseException | None) -> None:
        self._failed += 1
        state = self._state
        if state == _CLOSED:
            self._failures += 1
            if self._failures >= self.failures:
                self._to(_OPEN, error)
        elif state == _HALF_OPEN:
            self._reset = min(self._reset * self.factor, self.max_reset_after)
            self._to(_OPEN, error)

    def _to(self, state: BreakerState, error: BaseException | None) -> None:
        previous = self._state
        self._state = state
        self._failures = self._successes = self._trials = 0
        if state == _OPEN:
            delay = self._reset
            if self.jitter:
                delay *= 1 + self._rng.uniform(-self.jitter, self.jitter)
            self._open_until = self._clock() + delay
        elif state == _CLOSED:
            self._reset = self.reset_after
        self.transitions[state] += 1
        if self._listener is not None:
            self._listener(self, previous, state, error)

    # -- standalone use --

    async def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """``await fn(*args, **kwargs)`` through the breaker: raises :class:`CircuitOpen`
        without calling it when open; records the outcome; returns or raises what it did."""
        error = self.refusal()
        if error is not None:
            raise error
        timed = self.slow_call is not None
        start = self._clock() if timed else 0.0
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            self.record_failure(exc)
            raise
        except BaseException:
            self.release()
            raise
        self.record_success(self._clock() - start if timed else None)
        return result

    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        """Decorate an ``async def`` function so every call goes through the breaker."""
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"a Breaker decorates async functions, not {fn!r}")

        @functools.wraps(fn)
        async def through_breaker(*args: P.args, **kwargs: P.kwargs) -> T:
            return await self.call(fn, *args, **kwargs)

        return through_breaker

    async def __aenter__(self) -> Breaker:
        """Admit the body as one call, or raise :class:`CircuitOpen` (the body does not
        run). The outcome is recorded on exit: an exception fails it."""
        error = self.refusal()
        if error is not None:
            raise error
        if self.slow_call is not None:
            self._starts.setdefault(_task_id(), []).append(self._clock())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        duration: float | None = None
        if self.slow_call is not None:
            task = _task_id()
            starts = self._starts.get(task)
            if starts:
                duration = self._clock() - starts.pop()
                if not starts:
                    del self._starts[task]
        if exc is None:
            self.record_success(duration)
        elif isinstance(exc, Exception):
            self.record_failure(exc)
        else:
            self.release()


def _task_id() -> int:
    return anyio.get_current_task().id


def check_breaker(breaker: object, where: str) -> Any:
    """``breaker`` if it is a :class:`Breaker` or None; a clear ``TypeError`` otherwise."""
    if breaker is not None and not isinstance(breaker, Breaker):
        raise TypeError(f"{where}: breaker must be a us.Breaker, not {breaker!r}")
    return breaker


__all__ = [
    "STATES",
    "Breaker",
    "BreakerInfo",
    "BreakerState",
    "BreakerStateChanged",
    "check_breaker",
]

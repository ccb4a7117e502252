"""Budgets: how much time, how many tokens and how many dollars a request may use.

Open one around the work done for a conversation or a request::

    async with rt.budget(name="conv-123", seconds=30, tokens=50_000, usd=0.50) as budget:
        answer = await planner.ask(Plan(question))

Every message sent in the body carries the budget, and so does every message sent by the
handlers of those messages, hop after hop (like the deadline, which ``seconds`` sets: see
:meth:`understudy.Ref.ask`). A handler reads it as ``self.ctx.budget`` and, before an
expensive call, reserves what the call may cost::

    reservation = self.ctx.budget.reserve(tokens=4_000, usd=0.02)   # BudgetExceeded: degrade
    reply = await llm.messages.create(...)
    reservation.settle(tokens=reply.usage.output_tokens, usd=cost)   # returns the unused part

:meth:`Budget.reserve` raises :class:`~understudy.BudgetExceeded` when the reservation does
not fit (nothing is spent or held then), so the caller can pick a cheaper model, fewer
agents or a template answer instead of overspending. :meth:`Budget.charge` records a use
that needed no reservation. A budget opened inside another (in its body, or in a handler of
a message that carries it) is bounded by it: it cannot be opened larger than what the outer
one has left, and every charge and reservation counts against both. Refusals are
:class:`BudgetExhausted` events and ``understudy_budget_exhausted_total{kind}``, by kind:
``time``, ``tokens``, ``usd``.

A budget lives in memory unless it is opened with ``persistent=True`` in a runtime with a
store: then it is kept in the store by name, and every opening of that name continues from
what was spent and reserved, whether in a later request or in another process after a
restart::

    async with rt.budget(name="conv-123", usd=0.50, tokens=20_000, persistent=True):
        ...  # request 1 spends 0.20

    async with rt.budget(name="conv-123", persistent=True) as budget:  # later, or restarted
        budget.usd_left()  # 0.30

* While it is open anywhere in a runtime, every opening of a name is the same
  :class:`Budget` (concurrent requests of one conversation share it).
* Its figures are written whole with the store's next group commit after each change
  (reserve, settle, release, charge): asynchronously, within milliseconds, and in the same or
  an earlier transaction as any persistent actor's write queued after the change, so what
  an acknowledged durable ask depended on is committed with it.
* Reservations that were never settled because their process died (found when the name is
  opened with no live budget in the runtime) are **settled at their reserved amount**: the
  call may have been made and billed, so counting it spent can only under-spend, never
  overspend. A SIGKILL can lose only the changes of the last group commit window.
* Reopening with a limit that differs from the stored one is refused (``ValueError`` naming
  both); leave limits out to reopen with the stored ones. ``seconds`` counts from the
  first opening.
* One runtime at a time should use a persistent budget: two processes on one name are not
  coordinated (each would reserve against its own view).

Metrics: ``understudy_budget_spent_total{kind}`` (tokens, usd charged and settled),
``understudy_budget_reserved{kind}`` (held by open reservations) and
``understudy_budget_exhausted_total{kind}``; labels are kinds only, never budget names.
"""

from __future__ import annotations

import math
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

import msgspec

from understudy.actors import Cell, Scope, _current, open_scope, sender
from understudy.errors import BudgetExceeded, RuntimeClosed
from understudy.events import Event

if TYPE_CHECKING:
    import contextlib

    from understudy.persistence import Store
    from understudy.persistence._schema import BudgetRow
    from understudy.runtime import Runtime


class BudgetExhausted(Event, frozen=True, kw_only=True):
    """Budget ``budget`` refused ``requested`` of ``kind`` (``time``, ``tokens``, ``usd``)
    with ``available`` left; ``actor`` is the actor that asked ("" outside any actor)."""

    budget: str
    kind: str
    requested: float
    available: float


class Usage(msgspec.Struct, frozen=True):
    """An amount of tokens and dollars."""

    tokens: int = 0
    usd: float = 0.0


def _tokens(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what}: tokens must be an int, not {value!r}")
    if value < 0:
        raise ValueError(f"{what}: tokens must not be negative, not {value}")
    return value


def _usd(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what}: usd must be a number, not {value!r}")
    if not 0 <= value < math.inf:  # also refuses NaN
        raise ValueError(f"{what}: usd must be a finite, non-negative number, not {value!r}")
    return float(value)


def _limit(value: object, what: str, kind: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what}: {kind} must be a number or None, not {value!r}")
    if not 0 < value < math.inf:  # also refuses NaN
        raise ValueError(f"{what}: {kind} must be a positive, finite number, not {value!r}")
    if kind == "tokens" and not isinstance(value, int):
        raise TypeError(f"{what}: tokens must be an int, not {value!r}")
    return value


def _actor_here() -> str:
    current = _current.get()
    if isinstance(current, Cell):
        return current.label
    if isinstance(current, Scope) and current.cell is not None:
        return current.cell.label
    return ""


class Budget:
    """Limits on time, tokens and dollars, and what has been spent and reserved against
    them (made by ``rt.budget``; see :mod:`understudy.budgets`).

    ``tokens`` / ``usd`` / ``seconds`` are the limits this budget was opened with (None:
    bounded only by its ``parent``); ``deadline`` is when its time runs out, in the
    runtime's clock (0.0: never). Nothing here blocks.
    """

    __slots__ = (
        "__weakref__",
        "_runtime",
        "_store",
        "_timed_out",
        "deadline",
        "name",
        "opened",
        "parent",
        "reserved_tokens",
        "reserved_usd",
        "seconds",
        "spent_tokens",
        "spent_usd",
        "tokens",
        "usd",
    )

    def __init__(
        self,
        runtime: Runtime,
        name: str,
        *,
        seconds: float | None,
        tokens: int | None,
        usd: float | None,
        deadline: float,
        parent: Budget | None,
    ) -> None:
        self._runtime = runtime
        self.name = name
        self.seconds = seconds
        self.tokens = tokens
        self.usd = usd
        self.deadline = deadline
        self.parent = parent
        self.spent_tokens = 0
        self.spent_usd = 0.0
        self.reserved_tokens = 0
        self.reserved_usd = 0.0
        self._timed_out = False
        self._store: Store | None = None
        """The store a persistent budget is kept in (None: in memory only)."""
        self.opened = 0.0
        """Unix time a persistent budget was first opened (0.0 for one in memory)."""

    @property
    def persistent(self) -> bool:
        """Whether this budget is kept in the store (``rt.budget(persistent=True)``)."""
        return self._store is not None

    def stored_row(self) -> BudgetRow:
        """This budget's figures as the store writes them (internal)."""
        return (
            self.name,
            self.tokens,
            self.usd,
            self.seconds,
            self.opened,
            self.spent_tokens,
            self.spent_usd,
            self.reserved_tokens,
            self.reserved_usd,
        )

    def __repr__(self) -> str:
        return (
            f"<Budget {self.name!r}: tokens {self.spent_tokens}/{self.tokens}, "
            f"usd {self.spent_usd:g}/{self.usd}, {self.time_left():.3g} s left>"
        )

    # -- reading --

    @property
    def spent(self) -> Usage:
        """What was charged or settled against this budget (nested budgets' included)."""
        return Usage(self.spent_tokens, self.spent_usd)

    @property
    def reserved(self) -> Usage:
        """What open reservations hold."""
        return Usage(self.reserved_tokens, self.reserved_usd)

    def tokens_left(self) -> float:
        """Tokens that can still be reserved here, enclosing budgets included (``inf``
        without a limit)."""
        left = math.inf
        budget: Budget | None = self
        while budget is not None:
            if budget.tokens is not None:
                left = min(left, budget.tokens - budget.spent_tokens - budget.reserved_tokens)
            budget = budget.parent
        return left

    def usd_left(self) -> float:
        """Dollars that can still be reserved here, enclosing budgets included."""
        left = math.inf
        budget: Budget | None = self
        while budget is not None:
            if budget.usd is not None:
                left = min(left, budget.usd - budget.spent_usd - budget.reserved_usd)
            budget = budget.parent
        return left

    def time_left(self) -> float:
        """Seconds until :attr:`deadline` (negative once passed; ``inf`` without one)."""
        return self.deadline - self._runtime.clock() if self.deadline else math.inf

    # -- spending --

    def reserve(self, *, tokens: int = 0, usd: float = 0.0) -> Reservation:
        """Hold ``tokens`` and ``usd`` for a call about to be made, in this budget and every
        enclosing one; settle the returned :class:`Reservation` with what was used.

        Raises :class:`BudgetExceeded` (and holds nothing) when it does not fit, or when
        the budget's time has run out; ``ValueError`` for a negative amount.
        """
        what = f"budget {self.name!r}: reserve"
        tokens, usd = _tokens(tokens, what), _usd(usd, what)
        if self.deadline:
            left = self.deadline - self._runtime.clock()
            if left <= 0:
                raise self._time_out(left)
        chain = self._chain()
        for budget in chain:
            if budget.tokens is not None:
                left_tokens = budget.tokens - budget.spent_tokens - budget.reserved_tokens
                if tokens > left_tokens:
                    raise budget._exhausted("tokens", tokens, left_tokens)
            if budget.usd is not None:
                left_usd = budget.usd - budget.spent_usd - budget.reserved_usd
                if usd > left_usd:
                    raise budget._exhausted("usd", usd, left_usd)
        _add(chain, reserved_tokens=tokens, reserved_usd=usd)
        self._runtime.resilience.count_reserved(tokens, usd)
        return Reservation(self, tokens, usd, chain)

    def charge(self, *, tokens: int = 0, usd: float = 0.0) -> None:
        """Record a use that had no reservation, here and in every enclosing budget.

        The use already happened, so it is recorded even when it goes over a limit; that
        budget then refuses further reservations (and the overrun is reported as an
        exhaustion). Raises ``ValueError`` for a negative amount.
        """
        what = f"budget {self.name!r}: charge"
        _spend(self._chain(), _tokens(tokens, what), _usd(usd, what))

    # -- internal --

    def _chain(self) -> tuple[Budget, ...]:
        """This budget and every enclosing one, innermost first."""
        chain = [self]
        parent = self.parent
        while parent is not None:
            chain.append(parent)
            parent = parent.parent
        return tuple(chain)

    def _exhausted(self, kind: str, requested: float, available: float) -> BudgetExceeded:
        """Count and publish a refusal of ``kind``; the error to raise."""
        runtime = self._runtime
        runtime.resilience.count_exhausted(kind)
        if runtime.events.active:
            runtime.events.publish(
                BudgetExhausted(
                    actor=_actor_here(),
                    budget=self.name,
                    kind=kind,
                    requested=requested,
                    available=available,
                )
            )
        return BudgetExceeded(self.name, kind, requested, available)

    def ran_out(self, actor: str, deadline: float | None) -> None:
        """A message carrying this budget missed ``deadline`` (None: this budget's own): if
        that is this budget's deadline, count a time exhaustion (internal; called by the
        actor runtime)."""
        if deadline is None:
            deadline = self.deadline
        if deadline == self.deadline:
            self._time_out(deadline - self._runtime.clock())

    def _time_out(self, left: float) -> BudgetExceeded:
        """This budget's time ran out: counted and published once, however many messages
        and reservations it stops afterwards; the error to raise."""
        if self._timed_out:
            return BudgetExceeded(self.name, "time", 0.0, left)
        self._timed_out = True
        return self._exhausted("time", 0.0, left)


def _add(
    chain: tuple[Budget, ...],
    *,
    spent_tokens: int = 0,
    spent_usd: float = 0.0,
    reserved_tokens: int = 0,
    reserved_usd: float = 0.0,
) -> None:
    for budget in chain:
        budget.spent_tokens += spent_tokens
        budget.spent_usd += spent_usd
        budget.reserved_tokens += reserved_tokens
        budget.reserved_usd += reserved_usd
        store = budget._store
        if store is not None:
            store.budget_changed(budget.name, budget)


def _spend(chain: tuple[Budget, ...], tokens: int, usd: float) -> None:
    _add(chain, spent_tokens=tokens, spent_usd=usd)
    chain[0]._runtime.resilience.count_spent(tokens, usd)
    for budget in chain:
        if budget.tokens is not None and budget.spent_tokens > budget.tokens and tokens:
            budget._exhausted("tokens", tokens, budget.tokens - budget.spent_tokens + tokens)
        if budget.usd is not None and budget.spent_usd > budget.usd and usd:
            budget._exhausted("usd", usd, budget.usd - budget.spent_usd + usd)


class Reservation:
    """Tokens and dollars held in a budget for one call (:meth:`Budget.reserve`).

    Settle it once with what the call used (:meth:`settle`), or :meth:`release` it if the
    call was not made. As a context manager it is released on exit unless settled.
    """

    __slots__ = ("_chain", "budget", "settled", "tokens", "usd")

    def __init__(
        self, budget: Budget, tokens: int, usd: float, chain: tuple[Budget, ...] | None = None
    ) -> None:
        self.budget = budget
        self.tokens = tokens
        self.usd = usd
        self.settled = False
        # The budgets it is held in: settled there even if a persistent budget is reopened
        # under another enclosing budget meanwhile.
        self._chain = chain if chain is not None else budget._chain()

    def __repr__(self) -> str:
        state = "settled" if self.settled else "open"
        held = f"{self.tokens} tokens, {self.usd:g} usd"
        return f"<Reservation of {held} in {self.budget.name!r}: {state}>"

    def settle(self, *, tokens: int = 0, usd: float = 0.0) -> Usage:
        """Record what the call actually used (it may exceed the reservation: it is
        recorded all the same) and free the hold; returns the unused part of the
        reservation. Raises ``RuntimeError`` if already settled or released,
        ``ValueError`` for a negative amount."""
        what = f"budget {self.budget.name!r}: settle"
        tokens, usd = _tokens(tokens, what), _usd(usd, what)
        self._close(what)
        _spend(self._chain, tokens, usd)
        return Usage(max(self.tokens - tokens, 0), max(self.usd - usd, 0.0))

    def release(self) -> None:
        """Free the hold without spending anything (the call was not made)."""
        self._close(f"budget {self.budget.name!r}: release")

    def _close(self, what: str) -> None:
        if self.settled:
            raise RuntimeError(f"{what}: this reservation was already settled or released")
        self.settled = True
        _add(self._chain, reserved_tokens=-self.tokens, reserved_usd=-self.usd)
        self.budget._runtime.resilience.count_reserved(-self.tokens, -self.usd)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.settled:
            self.release()


class BudgetScope:
    """``async with rt.budget(...) as budget``: opens the budget for the body's sends."""

    __slots__ = (
        "_budget",
        "_name",
        "_persistent",
        "_runtime",
        "_scope",
        "_seconds",
        "_tokens",
        "_usd",
    )

    def __init__(
        self,
        runtime: Runtime,
        name: str | None,
        seconds: float | None,
        tokens: int | None,
        usd: float | None,
        persistent: bool = False,
    ) -> None:
        what = f"budget({name!r})"
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"{what}: name must be a non-empty str or None, not {name!r}")
        if not isinstance(persistent, bool):
            raise TypeError(f"{what}: persistent must be a bool, not {persistent!r}")
        if persistent:
            if name is None:
                raise ValueError(
                    f"{what}: a persistent budget needs a name: it is stored and reopened by it"
                )
            if len(name) > 256 or not name.isprintable():
                raise ValueError(
                    f"{what}: a persistent budget's name must be printable and at most 256 "
                    "characters"
                )
        self._runtime = runtime
        self._name = name if name is not None else "budget"
        self._persistent = persistent
        self._seconds = _limit(seconds, what, "seconds")
        self._tokens = _limit(tokens, what, "tokens")
        self._usd = _limit(usd, what, "usd")
        self._budget: Budget | None = None
        self._scope: contextlib.AbstractContextManager[Scope] | None = None

    async def __aenter__(self) -> Budget:
        if self._persistent:
            return await self._open_persistent()
        return self.open()

    def open(self) -> Budget:
        """Open the budget under the enclosing one (if any); raises ``ValueError`` when it
        asks for more than the enclosing budget's limits, :class:`BudgetExceeded` when for
        more than that budget has left. A persistent budget must be opened with ``async
        with`` (it may have to be read from the store): ``RuntimeError`` here."""
        if self._persistent:
            raise RuntimeError(
                f"budget({self._name!r}) is persistent: open it with `async with`, which may "
                "read it from the store"
            )
        parent, outer, corr = self._enclosing()
        what = f"budget({self._name!r})"
        if parent is not None:
            for kind, mine, limit, left in (
                ("tokens", self._tokens, parent.tokens, parent.tokens_left()),
                ("usd", self._usd, parent.usd, parent.usd_left()),
                ("seconds", self._seconds, parent.seconds, parent.time_left()),
            ):
                if mine is None:
                    continue
                if limit is not None and mine > limit:
                    raise ValueError(
                        f"{what}: {kind}={mine:g} is larger than the enclosing budget "
                        f"{parent.name!r} ({kind}={limit:g})"
                    )
                if mine > left:
                    if kind == "seconds":
                        raise parent._time_out(left)
                    raise parent._exhausted(kind, mine, left)
        runtime = self._runtime
        now = runtime.clock()
        deadline = now + self._seconds if self._seconds is not None else 0.0
        if outer and (not deadline or outer < deadline):
            deadline = outer
        budget = Budget(
            runtime,
            self._name,
            seconds=self._seconds,
            tokens=None if self._tokens is None else int(self._tokens),
            usd=self._usd,
            deadline=deadline,
            parent=parent,
        )
        return self._enter(budget, corr, deadline)

    def _enclosing(self) -> tuple[Budget | None, float, int | None]:
        """The enclosing budget, the inherited deadline and the correlation id to use."""
        runtime = self._runtime
        if runtime.closed:
            raise RuntimeClosed("cannot open a budget: the runtime is not running")
        if self._scope is not None:
            raise RuntimeError("a budget scope can be entered once")
        inherited = sender()
        limits = inherited[5] if inherited is not None else None
        parent = limits[1] if limits is not None else None
        outer = limits[0] if limits is not None else 0.0
        corr = None if inherited is not None else next(runtime.correlation_ids)
        return parent, outer, corr

    def _enter(self, budget: Budget, corr: int | None, deadline: float) -> Budget:
        self._scope = open_scope(corr, deadline, budget)
        self._scope.__enter__()
        self._budget = budget
        return budget

    async def _open_persistent(self) -> Budget:
        runtime = self._runtime
        store = runtime.store
        what = f"budget({self._name!r})"
        if store is None:
            raise ValueError(
                f"{what} is persistent but the runtime has no store: "
                "open one with us.Runtime(store='app.db')"
            )
        parent, outer, corr = self._enclosing()
        name = self._name
        budget = store.live_budgets.get(name)
        if budget is None:
            row = await store.load_budget(name)
            budget = store.live_budgets.get(name)  # opened by another task meanwhile?
        if budget is not None:
            self._check_limits(budget.tokens, budget.usd, budget.seconds)
        else:
            budget = self._restored(row)
            store.live_budgets[name] = budget
            store.budget_changed(name, budget)
        if parent is not None and parent is not budget:
            # Not seconds: a conversation outlives each request it is opened in; this
            # opening's sends carry the enclosing deadline all the same.
            for kind, mine, limit in (
                ("tokens", budget.tokens, parent.tokens),
                ("usd", budget.usd, parent.usd),
            ):
                if mine is not None and limit is not None and mine > limit:
                    raise ValueError(
                        f"{what}: {kind}={mine:g} is larger than the enclosing budget "
                        f"{parent.name!r} ({kind}={limit:g})"
                    )
        budget.parent = parent  # counts against the budget it is opened in now
        if budget.seconds is not None:  # its own deadline only: it is shared by its openers
            budget.deadline = runtime.clock() + (budget.opened + budget.seconds - time.time())
        deadline = budget.deadline
        if outer and (not deadline or outer < deadline):
            deadline = outer  # this opening's sends also carry the enclosing deadline
        return self._enter(budget, corr, deadline)

    def _check_limits(self, tokens: float | None, usd: float | None, seconds: float | None) -> None:
        for kind, mine, stored in (
            ("tokens", self._tokens, tokens),
            ("usd", self._usd, usd),
            ("seconds", self._seconds, seconds),
        ):
            if mine is not None and mine != stored:
                raise ValueError(
                    f"budget({self._name!r}): reopened with {kind}={mine:g}, but it is stored "
                    f"with {kind}={'none' if stored is None else format(stored, 'g')}; a "
                    "persistent budget keeps its limits: reopen it with the same ones or "
                    "leave them out"
                )

    def _restored(self, row: Any) -> Budget:
        """A budget from its stored row (or a new one), unsettled reservations spent."""
        runtime = self._runtime
        if row is None:
            budget = Budget(
                runtime,
                self._name,
                seconds=self._seconds,
                tokens=None if self._tokens is None else int(self._tokens),
                usd=self._usd,
                deadline=0.0,
                parent=None,
            )
            budget.opened = time.time()
        else:
            _, tokens, usd, seconds, opened, spent_tokens, spent_usd, held_tokens, held_usd = row
            self._check_limits(tokens, usd, seconds)
            budget = Budget(
                runtime,
                self._name,
                seconds=seconds,
                tokens=tokens,
                usd=usd,
                deadline=0.0,
                parent=None,
            )
            budget.opened = float(opened)
            # Reservations of a process that died: the calls may have been made and billed.
            budget.spent_tokens = int(spent_tokens) + int(held_tokens)
            budget.spent_usd = float(spent_usd) + float(held_usd)
            if held_tokens or held_usd:
                runtime.resilience.count_spent(int(held_tokens), float(held_usd))
        budget._store = runtime.store
        return budget

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._scope is not None:
            self._scope.__exit__(exc_type, exc, tb)


__all__ = ["Budget", "BudgetExhausted", "BudgetScope", "Reservation", "Usage"]

"""Refs: the handle on an actor, and the send paths (tell, ask) with what a send inherits.

:class:`Ref` is how anything sends to an actor: :meth:`Ref.tell` and :meth:`Ref.ask` hold
the fast paths (one dict lookup for the handler, one tuple for the envelope, a put into the
mailbox without yielding while there is room); everything else (a full mailbox, a gate, a
stopped actor) takes the cell's :meth:`~understudy.cell.Cell.deliver`. :class:`Reply` is an
asker's reply slot; :func:`_bounded` computes a bounded ask's deadline. ``_current`` (the
cell or :class:`Scope` whose code is running) is what makes a send made inside a handler
inherit its message's correlation id, deadline and budget.

Imports only :mod:`understudy.dispatch` and :mod:`understudy.actors` of the actor layers.
"""

from __future__ import annotations

import typing
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal

from understudy._wake import Wake
from understudy.actors import Envelope, Idle, R
from understudy.dispatch import resolve_handler
from understudy.errors import DeadlineExceeded
from understudy.messages import Message, Request

if TYPE_CHECKING:
    from understudy.budgets import Budget
    from understudy.cell import Cell
    from understudy.fallback import Retry

_current: ContextVar[Cell | Scope | None] = ContextVar("understudy_current_cell", default=None)
"""The cell whose task is running; set once per instance task, so a send made inside a
handler inherits the correlation id, deadline and budget of the message being handled.
Inside ``rt.budget(...)`` it is a :class:`Scope` instead, whose ``current`` plays the same
part for sends made in its body."""


class Scope:
    """What sends made in the body of ``rt.budget(...)`` inherit (internal).

    ``current`` has the shape of ``Cell.current``: correlation id and limits.
    ``cell`` is the actor whose handler opened the scope (None outside any actor).
    """

    __slots__ = ("cell", "current")

    def __init__(self, cell: Cell | None, current: Idle) -> None:
        self.cell = cell
        self.current = current


def sender() -> Idle | Envelope | None:
    """What a send made here inherits: the current message (or budget scope), or None."""
    current = _current.get()
    return None if current is None else current.current


class Reply:
    """The asker's reply slot: set once, by the actor or by the runtime on its behalf."""

    __slots__ = ("error", "event", "value")

    def __init__(self) -> None:
        self.event = Wake()
        self.value: Any = None
        self.error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        if not self.event.is_set():
            self.error = error
            self.event.set()


def _check_timeout(timeout: object, where: str) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{where}: timeout must be a number of seconds, not {timeout!r}")
    if not timeout > 0:  # also refuses NaN
        raise ValueError(f"{where}: timeout must be positive, not {timeout!r}")


class Ref:
    """A handle on an actor: the only way to send it messages.

    A ref is bound either to an actor *identity* (what ``spawn`` returns) or to a *name*
    (what ``rt.ref(name)`` and ``ctx.ref(name)`` return). Both keep working while the
    identity is restarted by its supervisor (same name, mailbox, queued messages). A name
    ref also follows the name to the next identity that takes it: when a supervisor is
    itself restarted, its children are new identities under the same names, and an
    identity ref to the old child then answers :class:`ActorStopped` while a name ref
    reaches the new one. While no live actor has the name, a send through a name ref waits
    for one (at most until the message's deadline, else the runtime's ``name_wait``), then
    raises :class:`UnknownActor`. Identity refs compare equal to the same identity's; name
    refs to the same name in the same runtime.
    """

    __slots__ = ("_cell", "_name")

    def __init__(self, cell: Cell, name: str | None = None) -> None:
        self._cell = cell
        self._name = name
        """The name this ref is bound to (None: bound to the identity)."""

    @property
    def name(self) -> str:
        """The actor's name, or its generated id (``Class#n``) when it was spawned unnamed."""
        return self._name if self._name is not None else self._cell.label

    @property
    def bound_to(self) -> Literal["identity", "name"]:
        """What the ref follows: ``"name"`` (``rt.ref``, ``ctx.ref``) or ``"identity"``."""
        return "identity" if self._name is None else "name"

    def live(self) -> Cell | None:
        """The identity this ref reaches now, or None when none is running (internal;
        never blocks). A name ref rebinds here to the name's current holder."""
        cell = self._cell
        if not cell.terminated or self._name is None:
            return None if cell.terminated else cell
        holder = cell.system.holder(self._name)
        if holder is not None:
            self._cell = holder
        return holder

    def __repr__(self) -> str:
        if self._name is not None:
            return f"<Ref name={self._name!r}>"
        return f"<Ref {self._cell.label}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ref):
            return False
        if self._name is not None or other._name is not None:
            return self._name == other._name and self._cell.system is other._cell.system
        return other._cell is self._cell

    def __hash__(self) -> int:
        return hash(self._name) if self._name is not None else hash(self._cell)

    async def tell(self, msg: Message) -> None:
        """Send ``msg`` without waiting for it to be handled.

        Returns as soon as the message is in the mailbox; does not yield to the scheduler
        while there is room. When the mailbox is full: awaits room (``block``), raises
        :class:`MailboxFull` (``fail``), or evicts the oldest message (``drop_oldest``).
        A message to a stopped actor becomes a dead letter with reason ``stopped``.
        Raises ``TypeError`` at once if the actor has no handler for the message's type,
        and :class:`RuntimeClosed` after the runtime exited.

        Sent from a handler (or inside ``rt.budget``), the message carries the deadline and
        budget of the message being handled. Waiting for room lasts at most until that
        deadline: then :class:`DeadlineExceeded` (and a dead letter, reason ``expired``).
        An actor whose circuit breaker is open refuses at once with :class:`CircuitOpen`
        (a dead letter, reason ``circuit_open``); nothing is enqueued.
        """
        cell = self._cell
        handler = cell.handlers.get(type(msg))
        if handler is None:
            handler = resolve_handler(cell.actor_class, msg, cell.label)
        current = _current.get()
        if current is None:
            corr = next(cell.system.correlation_ids)
            limits = None
        else:
            inherited = current.current
            corr = inherited[3]
            limits = inherited[5]
        envelope = (
            msg,
            handler,
            None,
            corr,
            cell.meter.take_stamp() if cell.meter.stamp else 0.0,
            limits,
        )
        if not (cell.accepting and cell.mailbox.put_nowait(envelope)):
            await cell.deliver(envelope, self)

    async def ask(
        self, msg: Request[R], *, timeout: float | None = None, retry: Retry | None = None
    ) -> R:
        """Send the request ``msg`` and wait for the handler's return value.

        Raises what the handler raised, with a note naming the actor: one of the actor's
        *answers* (``Actor.answers``: the actor keeps its state and goes on), or a crash
        (the actor fails and is handled by its supervisor); :class:`DeadlineExceeded` (a
        ``TimeoutError``) when ``timeout`` seconds pass first (a late reply is discarded),
        :class:`ActorStopped` when the actor is stopped or stops before replying,
        :class:`MailboxFull` under the ``fail`` policy, :class:`CircuitOpen` at once when
        the actor's circuit breaker is open, ``TypeError`` for a message the actor does not
        handle, and :class:`RuntimeClosed` after the runtime exited. The timeout covers
        waiting for mailbox room too.

        Deadlines propagate: the request carries its deadline, and an ask made while
        handling it (or inside ``rt.budget(seconds=)``) waits at most until the earlier of
        its own ``timeout`` and that inherited deadline (then :class:`DeadlineExceeded`).
        A request whose deadline passes while it waits in the mailbox is not processed; one
        whose deadline passes while its handler runs has its handler cancelled. If the
        caller is cancelled while it waits, its request is dropped when it has not started
        and its handler cancelled when it has (dead letter ``cancelled``). Asking the actor
        whose handler is running (itself) raises ``RuntimeError`` at once. ``retry`` (a
        :class:`~understudy.Retry`) asks again after the failures it names, within the same
        deadline.
        """
        if retry is not None:
            return await retry.ask(self, msg, timeout)
        cell = self._cell
        handler = cell.handlers.get(type(msg))
        if handler is None:
            handler = resolve_handler(cell.actor_class, msg, cell.label)
        if cell.gate is not None:
            cell.gate.refuse(cell, msg)  # an open breaker refuses before anything is made
        stamp = cell.meter.take_stamp() if cell.meter.stamp else 0.0
        reply = Reply()
        current = _current.get()
        envelope: Envelope
        if current is None:
            envelope = (msg, handler, reply, next(cell.system.correlation_ids), stamp, None)
        else:
            if current is cell or (type(current) is Scope and current.cell is cell):
                raise RuntimeError(
                    f"actor {cell.label!r} cannot ask itself: it handles one message at a "
                    "time, so the request would wait for the handler that waits for it "
                    "(call the method directly, or tell yourself)"
                )
            inherited = current.current
            envelope = (msg, handler, reply, inherited[3], stamp, inherited[5])
        limits = envelope[5]
        if timeout is None and (limits is None or not limits[0]):
            if not (cell.accepting and cell.mailbox.put_nowait(envelope)):
                await cell.deliver(envelope, self)
            try:
                await reply.event.wait()
            except BaseException:
                if not reply.event.is_set():
                    self._cell.abandoned(reply)  # cancelled asker: cancel or skip its message
                raise
        else:
            # Bounded: the runtime's watchdog fails the reply slot at the deadline.
            envelope, deadline, timeout, timed_by = _bounded(cell, envelope, timeout)
            if not (cell.accepting and cell.mailbox.put_nowait(envelope)):
                await cell.deliver(envelope, self)
            watchdog = cell.system.watchdog
            entry = watchdog.watch(deadline, reply, cell, msg, timeout, timed_by)
            try:
                await reply.event.wait()
            except BaseException:
                if not reply.event.is_set():
                    self._cell.abandoned(reply)
                raise
            finally:
                watchdog.done(entry)
        if reply.error is not None:
            raise reply.error
        return typing.cast(R, reply.value)


def _bounded(
    cell: Cell, envelope: Envelope, timeout: float | None
) -> tuple[Envelope, float, float | None, Budget | None]:
    """An ask's deadline: the earlier of ``now + timeout`` and the one it inherited.

    Returns the envelope carrying it, the deadline, the timeout if it is what binds (else
    None), and the budget whose own deadline binds (else None). Raises
    :class:`DeadlineExceeded` (a dead letter, ``expired``) if it has passed already."""
    msg, handler, reply, corr, stamp, limits = envelope
    inherited, budget = (limits[0], limits[1]) if limits is not None else (0.0, None)
    now = cell.system.clock()
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            _check_timeout(timeout, f"ask({type(msg).__qualname__}) to {cell.label!r}")
        deadline = now + timeout
        if inherited and inherited <= deadline:
            deadline, timeout = inherited, None  # the inherited deadline binds
        else:
            envelope = (msg, handler, reply, corr, stamp, (deadline, budget, 0.0))
    else:
        deadline = inherited
    if deadline <= now:  # already past: refused before it is sent
        error = DeadlineExceeded(
            f"ask({type(msg).__qualname__}) to actor {cell.label!r}: its deadline had passed "
            "before it was sent",
            cell.label,
        )
        cell.dead_letter(envelope, "expired", error)
        raise error
    return (
        envelope,
        deadline,
        timeout,
        (budget if budget is not None and budget.deadline == deadline else None),
    )


def _cell_of(ref: object, where: str) -> Cell:
    """The identity ``ref`` reaches now (a name ref's current holder, if any)."""
    if not isinstance(ref, Ref):
        raise TypeError(f"{where}: expected a Ref, not {ref!r}")
    if ref._name is not None:
        ref.live()
    return ref._cell

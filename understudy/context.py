"""Context: what an actor instance can do beyond handling its messages (``self.ctx``).

:class:`Context` spawns and watches other actors, schedules messages to the actor itself
(:class:`Timer`, cancelled when the instance stops), looks actors up by name, and exposes
the current message's correlation id, deadline and budget; its log adapter stamps records
with the actor's name and correlation id. One context per instance: a context whose
instance has ended refuses to schedule.

Imports the actor layers below it (:mod:`understudy.refs` and down) at run time;
:meth:`Context.spawn` resolves :func:`understudy.cell.spawn_cell` when it is called, since
the cell (one layer up) makes each instance's context.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import anyio

from understudy._checks import check_name
from understudy.actors import DEFAULT_SHUTDOWN, A, Answers, Durability, Limits, logger
from understudy.dispatch import resolve_handler
from understudy.errors import (
    ActorStopped,
    CircuitOpen,
    DeadlineExceeded,
    MailboxFull,
)
from understudy.mailbox import Overflow
from understudy.messages import Message, Terminated
from understudy.refs import Ref, Scope, _cell_of, _check_timeout, _current

if TYPE_CHECKING:
    from understudy.actors import Envelope, Idle
    from understudy.breaker import Breaker
    from understudy.budgets import Budget
    from understudy.cell import Cell


class Timer:
    """A scheduled delivery to the actor itself. Cancelled when the instance stops."""

    __slots__ = ("_scope", "_timers", "cancelled")

    def __init__(self, timers: set[Timer]) -> None:
        self._scope: anyio.CancelScope | None = None
        self._timers = timers
        self.cancelled = False

    def cancel(self) -> None:
        """Stop further deliveries. Never blocks; a delivery already enqueued stays queued."""
        self.cancelled = True
        if self._scope is not None:
            self._scope.cancel()
        self._timers.discard(self)

    async def _run(
        self,
        cell: Cell,
        msg: Message,
        delay: float,
        interval: float | None,
        corr: int | None,
        system_lane: bool = False,
        limits: Limits | None = None,
    ) -> None:
        _current.set(None)
        with anyio.CancelScope() as scope:
            self._scope = scope
            if self.cancelled:
                return
            handler = cell.handlers.get(type(msg)) or resolve_handler(
                cell.actor_class, msg, cell.label
            )
            await anyio.sleep(delay)
            if system_lane:
                self._timers.discard(self)
                cell.mailbox.put_system(("message", msg))
                return
            while True:
                tick = corr if corr is not None else next(cell.system.correlation_ids)
                stamp = cell.meter.take_stamp() if cell.meter.stamp else 0.0
                envelope: Envelope = (msg, handler, None, tick, stamp, limits)
                # A full mailbox under `fail`, an open breaker, a deadline passed while
                # waiting for room: the tick is a dead letter, not a crash.
                with contextlib.suppress(MailboxFull, CircuitOpen, DeadlineExceeded):
                    if not (cell.accepting and cell.mailbox.put_nowait(envelope)):
                        await cell.deliver(envelope)
                if interval is None:
                    break
                await anyio.sleep(interval)
        self._timers.discard(self)


class _ActorLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Adds the actor's name and the current correlation id to every record."""

    def __init__(self, cell: Cell) -> None:
        super().__init__(logger, {})
        self._cell = cell

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(kwargs.get("extra") or {})
        extra.setdefault("actor", self._cell.label)
        extra.setdefault("correlation_id", format(self._cell.current[3], "x"))
        kwargs["extra"] = extra
        return msg, kwargs


class Context:
    """What an actor instance can do beyond handling its messages (``self.ctx``)."""

    __slots__ = ("_cell", "_log", "_timers")

    def __init__(self, cell: Cell) -> None:
        self._cell = cell
        self._timers: set[Timer] = set()
        self._log: _ActorLog | None = None

    @property
    def self_ref(self) -> Ref:
        """The ref of this actor's identity (valid across restarts)."""
        return self._cell.ref

    @property
    def name(self) -> str:
        """This actor's name (or generated id)."""
        return self._cell.label

    def ref(self, name: str) -> Ref:
        """A ref bound to the name ``name`` (as ``rt.ref``): it reaches whichever actor has
        that name when a message is sent, waiting for one while none has (see
        :class:`Ref`). Raises ``TypeError``/``ValueError`` for a name that is not a
        non-empty, printable str. Never blocks."""
        return self._cell.system.ref(check_name(name, "ctx.ref"))

    @property
    def correlation_id(self) -> str:
        """The correlation id of the message being handled; sends made now inherit it."""
        return format(self._cell.current[3], "x")

    def _inherited(self) -> Envelope | Idle:
        """What sends made here inherit: this message, or an ``rt.budget`` opened in it."""
        current = _current.get()
        if isinstance(current, Scope) and current.cell is self._cell:
            return current.current
        return self._cell.current

    @property
    def deadline(self) -> float | None:
        """The deadline of the message being handled, in the runtime's clock (``rt.clock``),
        or None when it has none. Asks and blocked tells made now end by then."""
        limits = self._inherited()[5]
        return limits[0] if limits is not None and limits[0] else None

    def time_left(self) -> float:
        """Seconds until :attr:`deadline` (negative once passed; ``math.inf`` without one).
        Never blocks."""
        deadline = self.deadline
        return deadline - self._cell.system.clock() if deadline is not None else math.inf

    @property
    def budget(self) -> Budget | None:
        """The budget the message being handled is charged to (``rt.budget``), or None.
        Messages sent now carry it too."""
        limits = self._inherited()[5]
        return limits[1] if limits is not None else None

    def heartbeat(self) -> None:
        """Tell the runtime this handler is making progress: an actor spawned with
        ``idle_timeout`` cancels a handler that goes that long without a heartbeat. Cheap
        and never blocks; does nothing for an actor without ``idle_timeout``."""
        guard = self._cell.guard
        if guard is not None:
            guard.heartbeat()

    @property
    def log(self) -> logging.LoggerAdapter:  # type: ignore[type-arg]
        """A logger (``understudy`` logger) that stamps records with ``actor`` and
        ``correlation_id``."""
        if self._log is None:
            self._log = _ActorLog(self._cell)
        return self._log

    async def spawn(
        self,
        actor: type[A] | Callable[[], A],
        *,
        name: str | None = None,
        capacity: int | None = None,
        overflow: Overflow = "block",
        shutdown: float = DEFAULT_SHUTDOWN,
        breaker: Breaker | None = None,
        timeout: float | None = None,
        queue_timeout: float | None = None,
        idle_timeout: float | None = None,
        persistent: bool | None = None,
        durability: Durability | None = None,
        answers: Answers | None = None,
    ) -> Ref:
        """Start a child actor; see ``Runtime.spawn`` for the options.

        The child is linked to this instance: it stops (in reverse start order, before
        ``on_stop``) when this instance stops or is restarted. When it stops this actor
        receives :class:`Terminated` if it handles that type; if it does not and the child
        failed, this actor fails with :class:`ChildFailed` (an Erlang link).
        """
        from understudy.cell import spawn_cell  # one layer up: the cell makes contexts

        cell = await spawn_cell(
            self._cell.system,
            self._cell,
            actor,
            name=name,
            capacity=capacity,
            overflow=overflow,
            shutdown=shutdown,
            breaker=breaker,
            timeout=timeout,
            queue_timeout=queue_timeout,
            idle_timeout=idle_timeout,
            persistent=persistent,
            durability=durability,
            answers=answers,
        )
        return cell.ref

    def watch(self, ref: Ref) -> None:
        """Receive ``Terminated(ref, reason, error)`` when ``ref``'s identity stops for good.

        Delivered at once if it already has. Raises ``TypeError`` if this actor has no
        handler for :class:`Terminated`. Never blocks.
        """
        cell = self._cell
        if Terminated not in cell.handlers:
            raise TypeError(
                f"actor {cell.label!r} cannot watch {ref.name!r}: it has no handler for "
                "understudy.Terminated"
            )
        target = _cell_of(ref, "watch")
        if target is cell:
            raise ValueError(f"actor {cell.label!r} cannot watch itself")
        if target.terminated:
            cell.mailbox.put_system(("terminated", target.termination()))
            return
        if target.watchers is None:
            target.watchers = set()
        target.watchers.add(cell)
        if cell.watching is None:
            cell.watching = set()
        cell.watching.add(target)

    def unwatch(self, ref: Ref) -> None:
        """Stop watching ``ref``. Never blocks."""
        target = _cell_of(ref, "unwatch")
        if target.watchers is not None:
            target.watchers.discard(self._cell)
        if self._cell.watching is not None:
            self._cell.watching.discard(target)

    def schedule(self, delay: float, msg: Message) -> Timer:
        """Send ``msg`` to this actor after ``delay`` seconds, with this message's
        correlation id, deadline and budget. Cancelled if the instance stops first."""
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not delay >= 0:
            raise ValueError(f"schedule: delay must be a non-negative number, not {delay!r}")
        current = self._cell.current
        return self._start_timer(msg, float(delay), None, current[3], current[5])

    def schedule_every(self, interval: float, msg: Message, *, delay: float | None = None) -> Timer:
        """Send ``msg`` to this actor every ``interval`` seconds (first after ``delay``,
        default ``interval``), each with a new correlation id. The next tick is counted
        from when the previous one was enqueued, so a slow actor is not flooded."""
        _check_timeout(interval, "schedule_every: interval")
        first = interval if delay is None else delay
        if isinstance(first, bool) or not isinstance(first, (int, float)) or not first >= 0:
            raise ValueError(f"schedule_every: delay must be a non-negative number, not {first!r}")
        return self._start_timer(msg, float(first), float(interval), None)

    def _start_timer(
        self,
        msg: Message,
        delay: float,
        interval: float | None,
        corr: int | None,
        limits: Limits | None = None,
    ) -> Timer:
        cell = self._cell
        if cell.ctx is not self:
            raise ActorStopped(
                f"cannot schedule on actor {cell.label!r}: this context's instance has ended"
            )
        if cell.handlers.get(type(msg)) is None:
            resolve_handler(cell.actor_class, msg, cell.label)
        timer = Timer(self._timers)
        self._timers.add(timer)
        cell.system.task_group.start_soon(
            timer._run, cell, msg, delay, interval, corr, False, limits
        )
        return timer

    def schedule_system(self, delay: float, msg: Message) -> Timer:
        """Put ``msg`` in this actor's system lane after ``delay`` (runtime-internal)."""
        timer = Timer(self._timers)
        self._timers.add(timer)
        self._cell.system.task_group.start_soon(
            timer._run, self._cell, msg, delay, None, None, True
        )
        return timer

    async def persist(self, event: Any) -> None:
        """Record ``event`` in this event-sourced actor's journal and apply it to the state.

        The event is applied at once; it is committed with the other events of the message
        being handled when that message completes (none of them if its handler raises), and
        with ``durability="commit"`` the reply waits for that commit. Never blocks. Raises
        ``TypeError`` if the actor is not an ``understudy.EventSourced`` actor or does not
        declare the event's type.
        """
        cell = self._cell
        if cell.persistence is None or cell.instance is None:
            raise TypeError(
                f"actor {cell.label!r} is not persistent: ctx.persist needs an "
                "understudy.EventSourced actor"
            )
        cell.persistence.persist(cell.instance, event)

    def entity(self, type_name: str, key: str) -> Ref:
        """The ref of entity ``key`` of type ``type_name`` (see ``Runtime.entity``)."""
        # understudy.entities (pools engineer): the runtime owns the entity types.
        runtime: Any = self._cell.system
        ref: Ref = runtime.entity(type_name, key)
        return ref

    def stop(self) -> None:
        """Stop this actor (reason ``normal``) once the current message is handled."""
        self._cell.mailbox.put_system(("stop", "normal"))

    def _cancel_timers(self) -> None:
        for timer in list(self._timers):
            timer.cancel()

"""Delivery: a cell's sending side, the slow paths of tell and ask, and dead letters.

:class:`Delivery` is the part of :class:`~understudy.cell.Cell` that senders reach when the
fast path in :class:`~understudy.refs.Ref` cannot put straight into the mailbox: the
overflow policies (``block``, bounded by the message's deadline; ``fail``;
``drop_oldest``), the gate of an open breaker or a queue timeout, a stopped identity (a
dead letter, or for a name ref the name's next holder: :func:`redeliver`), and the checks a
message's limits get before its handler starts. :meth:`Delivery.dead_letter` is where every
message that will not be handled ends: its asker is answered, the meter counts it, the
dead-letter log and the event stream record it. None of it blocks except waiting for
mailbox room or for a name's holder.

Imports the actor layers below it (:mod:`understudy.refs` and down) at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from understudy.actors import Envelope, Guarding, Limits
from understudy.dispatch import resolve_handler
from understudy.errors import (
    ActorStopped,
    DeadlineExceeded,
    MailboxFull,
    QueueTimeout,
    RuntimeClosed,
    UnknownActor,
)
from understudy.events import DeadLetter
from understudy.messages import Message
from understudy.refs import Ref, _current

if TYPE_CHECKING:
    from understudy.actors import ActorSystem
    from understudy.mailbox import Mailbox
    from understudy.meter import Meter

_OUTCOMES = frozenset({"circuit_open", "crashed", "timeout", "idle_timeout", "error", "deadline"})
"""Dead-letter reasons of messages whose breaker outcome is already recorded (or moot)."""

TIMEOUT_REASONS = frozenset({"expired", "timeout", "queue_timeout", "idle_timeout", "deadline"})
"""Dead-letter reasons that are time limits (also ``kind`` of ``understudy_timeouts_total``)."""


class Delivery:
    """The sending side of a cell (internal). :class:`~understudy.cell.Cell` is its one
    subclass: it sets up the state declared here, its own slots but for the two that
    senders switch on."""

    __slots__ = ("accepting", "gate")

    # set up by Cell.__init__ (see there)
    accepting: bool
    gate: Guarding | None
    system: ActorSystem
    label: str
    mailbox: Mailbox[Envelope]
    terminated: bool
    guard: Guarding | None
    meter: Meter

    def set_gate(self, gate: Guarding | None) -> None:
        """Make sends pass through ``gate`` (None: put directly again). Never blocks."""
        self.gate = gate
        self.accepting = gate is None and not self.terminated

    async def deliver(self, envelope: Envelope, via: Ref | None = None) -> None:
        """Enqueue under the overflow policy, or dead-letter if the actor has stopped.

        Also where a send passes the actor's gate (an open breaker, a queue timeout):
        senders come here instead of putting directly while ``accepting`` is False; and
        where a send through a name ref (``via``) to an identity that has ended finds the
        name's next holder."""
        mailbox = self.mailbox
        waited = admitted = False
        while True:
            if not self.accepting:
                if self.terminated:
                    system = self.system
                    if via is not None and via._name is not None and not system.shutting_down:
                        await redeliver(via, envelope)
                        return
                    if self.system.closed:
                        raise RuntimeClosed(
                            f"cannot send to actor {self.label!r}: its runtime has exited"
                        )
                    self.dead_letter(
                        envelope, "shutdown" if self.system.shutting_down else "stopped"
                    )
                    if envelope[2] is not None:
                        raise ActorStopped(f"actor {self.label!r} has stopped")
                    return
                if not admitted and self.gate is not None:
                    # CircuitOpen: refused. (self is a Cell, Delivery's one subclass.)
                    envelope = self.gate.admit(self, envelope)  # type: ignore[arg-type]
                    admitted = True
            if mailbox.put_nowait(envelope):
                if waited:
                    mailbox.pass_baton()
                return
            if mailbox.overflow == "block":
                limits = envelope[5]
                if limits is not None and limits[0]:
                    await self.wait_until_deadline(envelope, limits[0])
                else:
                    await mailbox.wait_for_space()
                waited = True
            elif mailbox.overflow == "fail":
                self.dead_letter(envelope, "mailbox_full")
                raise MailboxFull(
                    f"mailbox of actor {self.label!r} is full ({mailbox.capacity} messages)"
                )
            else:
                self.dead_letter(mailbox.evict_oldest(), "dropped")

    async def wait_until_deadline(self, envelope: Envelope, deadline: float) -> None:
        """Wait for mailbox room, at most until the message's ``deadline`` (the watchdog
        wakes the sender then: cheaper than a cancel scope); then dead-letter it
        (``expired``) and raise :class:`DeadlineExceeded`."""
        wake = anyio.Event()
        watchdog = self.system.watchdog
        entry = watchdog.watch(deadline, wake)
        try:
            room = await self.mailbox.wait_for_space(wake)
        finally:
            watchdog.done(entry)
        if room:
            return
        error = DeadlineExceeded(
            f"{type(envelope[0]).__qualname__} to actor {self.label!r}: the mailbox stayed "
            "full until the deadline",
            self.label,
        )
        self.expired(envelope, error)
        raise error

    def expired(self, envelope: Envelope, error: DeadlineExceeded | None = None) -> None:
        """The message's deadline passed before it could be handled: a dead letter
        (``expired``), and its asker gets :class:`DeadlineExceeded`. Never blocks."""
        if error is None:
            error = DeadlineExceeded(
                f"{type(envelope[0]).__qualname__} to actor {self.label!r}: its deadline "
                "passed while it waited in the mailbox; it was not processed",
                self.label,
            )
        limits = envelope[5]
        if limits is not None and limits[1] is not None:
            limits[1].ran_out(self.label, limits[0])
        self.dead_letter(envelope, "expired", error)

    def admit(self, limits: Limits, envelope: Envelope) -> bool:
        """Whether a message with ``limits`` may start now: False (and a dead letter) when
        its deadline passed (``expired``) or it waited past its start-by time
        (``queue_timeout``). Never blocks."""
        deadline, _, start_by = limits
        if deadline and deadline <= self.system.clock():
            self.expired(envelope)
            return False
        if start_by and start_by <= self.system.clock():
            error = QueueTimeout(
                f"{type(envelope[0]).__qualname__} waited in the mailbox of actor "
                f"{self.label!r} longer than its queue_timeout; it was not processed",
                self.label,
            )
            self.dead_letter(envelope, "queue_timeout", error)
            return False
        return True

    def refused(self, msg: Message) -> None:
        """``msg`` was refused by the breaker before anything was made for it: a dead
        letter (``circuit_open``), with the correlation id of the message being handled
        if any (a refused send from outside any actor never got one). Never blocks."""
        current = _current.get()
        letter = DeadLetter(
            actor=self.label,
            message=msg,
            reason="circuit_open",
            correlation_id=None if current is None else format(current.current[3], "x"),
        )
        system = self.system
        system.dead_letters.record(letter)
        if system.events.active:
            system.events.publish(letter)

    def dead_letter(
        self, envelope: Envelope, reason: str, error: BaseException | None = None
    ) -> None:
        """Record ``envelope`` as a dead letter; its asker gets ``error`` (or the error
        that ``reason`` implies). Never blocks."""
        msg, _, reply, corr = envelope[:4]
        meter = self.meter
        if reason == "mailbox_full" or reason == "dropped":
            meter.rejected += 1
        elif reason in TIMEOUT_REASONS:
            meter.count_timeout(reason)
        if self.guard is not None and reason not in _OUTCOMES:
            self.guard.interrupted()  # it will have no outcome: free its half-open trial slot
        if reply is not None:
            if error is not None:
                reply.fail(error)
            elif reason == "dropped":
                reply.fail(
                    MailboxFull(
                        f"request evicted from the full mailbox of actor {self.label!r} "
                        "(drop_oldest)"
                    )
                )
            elif reason not in ("crashed", "timeout", "idle_timeout", "error"):
                reply.fail(ActorStopped(f"actor {self.label!r} stopped before handling it"))
        system = self.system
        letter = DeadLetter(
            actor=self.label, message=msg, reason=reason, correlation_id=format(corr, "x")
        )
        system.dead_letters.record(letter)
        if system.events.active:
            system.events.publish(letter)


async def redeliver(ref: Ref, envelope: Envelope) -> None:
    """A send through the name ref ``ref`` found its identity ended: wait for the name's
    next holder (at most until the message's deadline, else the runtime's ``name_wait``)
    and send it there. Raises :class:`UnknownActor` (or :class:`DeadlineExceeded` when the
    deadline bounds the wait) after a dead letter (``unknown_actor``/``expired``) if none
    comes, :class:`RuntimeClosed` if the runtime exits meanwhile."""
    assert ref._name is not None
    old = ref._cell
    system = old.system
    msg, _, reply, corr, stamp, limits = envelope
    deadline = limits[0] if limits is not None else 0.0
    try:
        cell = await system.await_name(ref._name, deadline)
    except (UnknownActor, DeadlineExceeded) as error:
        letter = DeadLetter(
            actor=ref._name,
            message=msg,
            reason="expired" if isinstance(error, DeadlineExceeded) else "unknown_actor",
            correlation_id=format(corr, "x"),
        )
        system.dead_letters.record(letter)
        if system.events.active:
            system.events.publish(letter)
        raise
    ref._cell = cell
    handler = cell.handlers.get(type(msg))
    if handler is None:
        handler = resolve_handler(cell.actor_class, msg, cell.label)
    if reply is not None and cell.gate is not None:
        cell.gate.refuse(cell, msg)
    envelope = (msg, handler, reply, corr, stamp, limits)
    if not (cell.accepting and cell.mailbox.put_nowait(envelope)):
        await cell.deliver(envelope, ref)

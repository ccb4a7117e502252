"""The cell: an actor identity, the loop that serves its mailbox, and its lifecycle.

A *cell* is an actor identity: its name, mailbox, children, watchers, counters and (with the
resilience options of spawn) its guard: circuit breaker and time limits. A cell outlives the
actor instances that serve it, so a ref stays valid across a supervisor's restarts. Each
instance runs as one task in the runtime's task group, inside a cancel scope of its own
(which is how a kill or a shutdown timeout reaches it).

Here: :func:`spawn_cell` and :func:`start_instance` (validating a spawn, starting an
instance and waiting for its ``on_start``), :meth:`Cell.run` and the serve loop
(:meth:`Cell.serve`: batches of :data:`~understudy.actors.BATCH` messages, answers and
crashes, deadline cuts), system messages (stop, Terminated, failure notices), the end of an
instance and of the identity (:meth:`Cell.terminate`: children first, watchers told, dead
letters for what was queued), and stopping from outside (:meth:`Cell.kill`,
:meth:`Cell.stop`). Sending into a cell is :class:`~understudy.delivery.Delivery`, its base.

Top layer of the actor modules: imports every one below it at run time.
"""

from __future__ import annotations

import contextlib
import math
import sys
import typing
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.lowlevel

from understudy._checks import check_name
from understudy._wake import Wake
from understudy.actors import (
    ALARM,
    ALWAYS_ANSWERS,
    BATCH,
    BRUTAL_KILL,
    DEFAULT_SHUTDOWN,
    PERSISTENCE_FAILED,
    SKIPPED,
    Actor,
    ActorSystem,
    Answers,
    Durability,
    Envelope,
    Guarding,
    Idle,
    Ignore,
    Persistence,
    check_answers,
    logger,
)
from understudy.context import Context
from understudy.delivery import Delivery
from understudy.dispatch import Handler
from understudy.errors import (
    ActorStopped,
    ChildFailed,
    DeadlineExceeded,
    HandlerCancelled,
    Killed,
    RuntimeClosed,
    StartIgnored,
)
from understudy.events import (
    ActorFailed,
    ActorStarted,
    ActorTerminated,
    ErrorAnswered,
)
from understudy.mailbox import Mailbox, Overflow, check_capacity, check_overflow
from understudy.messages import ExitReason, Message, Terminated
from understudy.meter import Meter
from understudy.refs import Ref, Scope, _current

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from understudy.breaker import Breaker
    from understudy.budgets import Budget
    from understudy.refs import Reply


@contextlib.contextmanager
def open_scope(corr: int | None, deadline: float, budget: Budget | None) -> Iterator[Scope]:
    """Make sends in the ``with`` body carry ``deadline`` and ``budget`` (and ``corr``, or
    the correlation id they would inherit anyway, or a new one). Never blocks."""
    current = _current.get()
    cell = current if isinstance(current, Cell) else current.cell if current is not None else None
    if corr is None:
        assert current is not None, "a scope outside any actor needs a correlation id"
        corr = current.current[3]
    limits = (deadline, budget, 0.0) if deadline or budget is not None else None
    scope = Scope(cell, (None, None, None, corr, 0.0, limits))
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)


# ------------------------------------------------------------------------------------ cell


class Supervising(Protocol):
    """Who restarts a cell: told when an instance ends; True means it takes over."""

    def child_exited(self, cell: Cell, reason: ExitReason, error: BaseException | None) -> bool: ...


class Cell(Delivery):
    """An actor identity and the loop that serves its mailbox (internal)."""

    __slots__ = (  # and Delivery's: accepting, gate
        "actor_class",
        "alarm",
        "answers",
        "children",
        "ctx",
        "current",
        "cut",
        "done",
        "doomed",
        "due",
        "exit_error",
        "exit_reason",
        "factory",
        "generation",
        "group",
        "guard",
        "handlers",
        "id",
        "in_system",
        "instance",
        "instance_done",
        "label",
        "linked",
        "mailbox",
        "meter",
        "name",
        "parent",
        "persistence",
        "ref",
        "restarts",
        "scope",
        "shutdown",
        "stopping",
        "supervisor",
        "system",
        "terminated",
        "watchers",
        "watching",
        "work",
    )

    def __init__(
        self,
        system: ActorSystem,
        actor_class: type[Actor],
        factory: Callable[[], Actor],
        *,
        id: int,
        name: str | None,
        parent: Cell | None,
        capacity: int,
        overflow: Overflow,
        shutdown: float,
    ) -> None:
        self.system = system
        self.actor_class = actor_class
        self.factory = factory
        self.handlers = actor_class._handlers
        self.id = id
        self.name = name
        self.label = name if name is not None else f"{actor_class.__name__}#{id}"
        self.parent = parent
        self.linked = parent is not None
        self.mailbox: Mailbox[Envelope] = Mailbox(capacity, overflow)
        self.shutdown = shutdown
        self.ref = Ref(self)
        self.accepting = True
        """Senders may put straight into the mailbox: neither stopped nor gated. When
        False they take :meth:`deliver`, which sorts out which."""
        self.terminated = False
        self.current: Envelope | Idle = (None, None, None, 0, 0.0, None)
        self.instance: Actor | None = None
        self.ctx: Context | None = None
        self.scope: anyio.CancelScope | None = None
        self.children: dict[int, Cell] | None = None
        self.watchers: set[Cell] | None = None
        self.watching: set[Cell] | None = None
        self.supervisor: Supervising | None = None
        self.generation = 0
        """Instances started so far; a supervisor's note about an older one is stale."""
        self.restarts = 0
        """Restarts of this identity: supervision calls understudy.meter.count_restart."""
        self.stopping = False
        self.doomed = False
        self.instance_done: Wake | None = None
        self.done: Wake | None = None
        self.exit_reason: ExitReason | None = None
        self.exit_error: BaseException | None = None
        # metrics: plain counters, read at scrape time by understudy.metrics
        self.meter = Meter(system.metered, BATCH)
        # resilience: breaker and time limits (None: a plain actor, which pays nothing)
        self.guard: Guarding | None = None
        self.gate: Guarding | None = None
        """The guard while sends must pass through it (see :class:`Guarding`), else None.
        Set it with :meth:`set_gate`: ``accepting`` is False while there is a gate."""
        self.persistence: Persistence | None = None
        self.answers: Answers = actor_class.answers + ALWAYS_ANSWERS
        """Exceptions a handler answers with instead of crashing (see ``Actor.answers``)."""
        # deadline cancellation: see serve_instance
        self.work: anyio.CancelScope | None = None
        """The scope the serve loop runs in; cancelled to cut the handler in progress."""
        self.alarm = math.inf
        """The earliest handler deadline the watchdog will wake this cell at (inf: none)."""
        self.cut: list[Any] | None = None
        """``[envelope, error, reached]``: the message whose handler is being cut, what its
        asker gets, and whether the cancellation reached the handler."""
        self.in_system = False
        """True while a system-lane item is handled (a cut never interrupts one)."""
        self.due: Envelope | Idle | None = None
        """The message whose deadline the alarm found passed (cut at the next ring)."""
        # pools/entities (understudy.pools, understudy.entities): the pool's name or the
        # entity type, used as this cell's metrics label so labels stay bounded.
        self.group: str | None = None

    # -- sending: see understudy.delivery (the fast path is inlined in Ref.tell/ask) --

    # -- running an instance --

    def new_instance(self) -> Actor:
        instance = self.factory()
        if type(instance) is not self.actor_class:
            raise TypeError(
                f"the factory of actor {self.label!r} returned {instance!r}, "
                f"not a {self.actor_class.__qualname__}"
            )
        return instance

    async def run(
        self,
        instance: Actor,
        restarted_after: BaseException | None,
        *,
        task_status: TaskStatus[BaseException | None],
    ) -> None:
        """One instance's whole life: start, serve, stop.

        Reports through ``task_status`` once ``on_start`` returned (None) or raised (the
        error: the starter decides what a failed start means). Never raises into the task
        group, except the task group's own cancellation.
        """
        _current.set(self)
        reason: ExitReason = "killed"
        error: BaseException | None = None
        started = False
        try:
            with anyio.CancelScope() as scope:
                self.scope = scope
                if self.doomed:
                    self.doomed = False
                    scope.cancel()
                self.generation += 1
                self.stopping = False
                self.current = (None, None, None, next(self.system.correlation_ids), 0.0, None)
                self.ctx = instance.ctx = Context(self)
                state_type = self.actor_class.State
                instance.state = state_type() if state_type is not None else None
                try:
                    if self.persistence is not None:  # the last committed snapshot
                        await self.persistence.restore(instance)
                    if restarted_after is not None:
                        await instance.on_restart(restarted_after)
                    declined = await instance.on_start() is Ignore
                except Exception as exc:
                    exc.add_note(f"raised while starting actor {self.label!r}")
                    self.release_instance()
                    started = True
                    task_status.started(exc)
                    return
                if declined:  # supervision (wave 2): the starter sees StartIgnored
                    self.release_instance()
                    started = True
                    task_status.started(StartIgnored(f"actor {self.label!r} returned us.Ignore"))
                    return
                started = True
                task_status.started(None)
                # Once started, shielded: cancelling the host (or the runtime's task group)
                # must not kill actors where they stand; the runtime stops them gracefully,
                # and a kill cancels this scope itself. Until then a cancelled starter
                # cancels the start, as anyio's `start` does.
                scope.shield = True
                if self.system.events.active:
                    self.system.events.publish(
                        ActorStarted(actor=self.label, actor_class=self.actor_class.__qualname__)
                    )
                if self.persistence is None:
                    reason, error = await self.serve_instance(instance)
                else:
                    reason, error = await self.persistence.serve(self, instance)
                self.stopping = True
                # supervision (wave 2): a supervisor stops its children by its own rules
                # (a SimpleOneForOne supervisor stops them concurrently).
                own_stop = getattr(instance, "_stop_children", None)
                await (own_stop() if own_stop is not None else self.stop_children())
                try:
                    await instance.on_stop()
                except Exception as exc:
                    exc.add_note(f"raised in on_stop of actor {self.label!r}")
                    if error is None:
                        reason, error = "failed", exc
                    else:
                        logger.error(
                            "on_stop of actor %r raised after it failed",
                            self.label,
                            exc_info=exc,
                            extra={"actor": self.label, "correlation_id": None},
                        )
            if scope.cancelled_caught:
                # supervision (wave 2): killed where it stood, on_stop included (its
                # shutdown time ran out): the reason is `killed`, whatever was asked.
                reason = "killed"
            if reason == "killed":
                error = Killed(f"actor {self.label!r} was killed")
        finally:
            if not started:
                self.release_instance()
                task_status.started(error or Killed(f"actor {self.label!r} was killed"))
            elif self.instance is instance:
                self.instance_ended(reason, error)

    async def serve_instance(self, instance: Actor) -> tuple[ExitReason, BaseException | None]:
        """Serve the mailbox until the instance ends; its exit reason and error.

        The loop runs in a cancel scope of its own (``work``): cancelling it cuts the
        handler in progress (its deadline passed, or its asker was cancelled) without
        ending the instance. The cut message fails (a dead letter, reason ``deadline`` or
        ``cancelled``; its asker gets :class:`DeadlineExceeded`), a persistent actor's
        changes from it are rolled back, and the loop starts again with the next message.
        Entering a scope costs a few microseconds: once per instance and once per cut,
        never per message."""
        while True:
            with anyio.CancelScope() as work:
                self.work = work
                outcome = await self.serve(instance)
            self.work = None
            cut, self.cut = self.cut, None
            if not work.cancelled_caught:
                return outcome
            if cut is not None and cut[2]:  # the handler was cut: its message failed
                envelope, error, _ = cut
                reason = "deadline" if isinstance(error, DeadlineExceeded) else "cancelled"
                self.dead_letter(envelope, reason, error)  # counts a "deadline" timeout
                if self.persistence is not None:
                    await self.persistence.rollback(instance)
            cut = None  # keeps no message (and its reply) alive while serving on
            # else: the cut came after the handler had returned (the actor was idle): nothing
            # was interrupted but a wait, and the loop simply resumes.

    async def serve(self, instance: Actor) -> tuple[ExitReason, BaseException | None]:
        """The hot loop, one for plain, guarded and persistent actors: system lane first,
        then user messages in batches.

        ``countdown`` counts down to the meter's next turn (:mod:`understudy.meter`): the
        end of a timed group of messages, or of a batch of :data:`BATCH` (then ``tally``
        returns 0 and the actor yields to the scheduler). The meter's open group is closed
        before any other await that is not a handler. ``watch`` is the guard while it has
        something to watch per message (a time limit, a breaker that is not closed or has
        recent failures), else None; ``persist`` the persistence hooks (None: a plain
        actor, which pays one ``is None`` per message for them)."""
        guard = self.guard
        watch = guard if guard is not None and guard.watching() else None
        persist = self.persistence
        mailbox = self.mailbox
        queue = mailbox.queue
        system = mailbox.system
        meter = self.meter
        clock = self.system.clock
        countdown = meter.open()
        while True:
            if system:
                meter.close(countdown)
                self.in_system = True
                try:
                    outcome = await self.system_message(instance, system.pop(0))
                finally:
                    self.in_system = False
                if outcome is not None:
                    return outcome
                if persist is not None:
                    try:  # a Terminated (or internal) handler may have changed the state
                        persist.completed(instance.state, None, None)
                    except Exception as exc:
                        exc.add_note(f"raised persisting the state of actor {self.label!r}")
                        return "failed", exc
                countdown = meter.resume()
            elif queue:
                envelope = queue.popleft()
                if mailbox.senders:
                    mailbox.wake_sender()
                self.current = envelope
                msg, handler, reply, _, stamp, limits = envelope
                if stamp:
                    countdown = meter.waited(stamp, countdown)
                if limits is not None:
                    deadline = limits[0]
                    if deadline:
                        if deadline <= clock():
                            self.expired(envelope)
                            continue  # expired: not processed, not counted as handled
                        if deadline < self.alarm:
                            self.arm(deadline)  # the handler is cut if it runs past it
                    if limits[2] and not self.admit(limits, envelope):
                        continue
                try:
                    if watch is None:
                        result = await handler(instance, msg)
                    else:
                        result = await watch.run(self, handler, instance, envelope)
                        if result is SKIPPED:
                            continue  # refused by the open breaker: not handled
                        if not watch.watching():
                            watch = None
                except Exception as exc:
                    meter.close(countdown - 1)
                    meter.errors += 1
                    if isinstance(exc, self.answers) and (
                        guard is None or not guard.own_limit(exc)
                    ):
                        await self.answered(instance, envelope, exc)
                        if guard is not None:
                            watch = guard if guard.watching() else None
                        countdown = meter.resume()
                        continue
                    meter.crashes += 1
                    self.crashed(envelope, exc)
                    return "failed", exc
                except BaseException as exc:
                    cut = self.cut
                    if cut is not None:
                        if cut[0] is envelope:
                            # The cut reached the handler: serve_instance fails its message.
                            meter.close(countdown - 1)
                            meter.errors += 1
                            cut[2] = True
                            if guard is not None:
                                guard.failed(self, cut[1])
                            if reply is not None:
                                reply.fail(cut[1])
                            raise
                        if self.scope is not None and not self.scope.cancel_called:
                            # A cut meant for an earlier handler, which shielded itself,
                            # reached this one at its first await: it is handled again.
                            meter.close(countdown)
                            queue.appendleft(envelope)
                            raise
                    if _stray_cancellation(exc):
                        # asyncio: the handler awaited a task it had cancelled itself. Its
                        # message fails; neither the actor nor the runtime is cancelled.
                        meter.close(countdown - 1)
                        meter.errors += 1
                        error = HandlerCancelled(
                            f"the handler of {type(msg).__qualname__} in actor "
                            f"{self.label!r} let a CancelledError escape that no cancel "
                            "scope of the runtime sent (did it cancel and await a task?)"
                        )
                        error.__cause__ = exc
                        await self.answered(instance, envelope, error)
                        countdown = meter.resume()
                        continue
                    meter.close(countdown)
                    if guard is not None:
                        guard.interrupted()
                    if reply is not None:
                        reply.fail(Killed(f"actor {self.label!r} was stopped while handling it"))
                    raise
                if persist is None:
                    if reply is not None:
                        reply.value = result
                        reply.event.set()
                else:
                    try:
                        persist.completed(instance.state, reply, result, envelope)
                    except Exception as exc:
                        exc.add_note(f"raised persisting the state of actor {self.label!r}")
                        meter.close(countdown - 1)
                        meter.errors += 1
                        meter.crashes += 1
                        self.crashed(envelope, exc)
                        return "failed", exc
                    if not persist.pipeline:
                        meter.close(countdown - 1)
                        await persist.committed()
                        countdown = meter.resume() + 1
                countdown -= 1
                if not countdown:
                    countdown = meter.tally()
                    if not countdown:
                        await anyio.lowlevel.checkpoint()
                        countdown = meter.open()
            else:
                meter.close(countdown)
                await mailbox.wait()
                countdown = meter.open()

    def arm(self, deadline: float) -> None:
        """Have the watchdog wake this cell at ``deadline`` (:meth:`alarm_rang`). Never
        blocks; one entry serves every message whose deadline is not earlier."""
        self.alarm = deadline
        self.system.watchdog.watch(deadline, ALARM, self)

    def alarm_rang(self) -> None:
        """The watchdog's alarm: cut the handler in progress if its message's deadline
        passed, else set the alarm for that deadline. Never blocks."""
        self.alarm = math.inf
        due, self.due = self.due, None  # (keeps no message alive)
        current = self.current
        limits = current[5]
        if current[0] is None or limits is None or not limits[0] or self.instance is None:
            return
        deadline = limits[0]
        now = self.system.clock()
        if deadline > now:
            self.arm(deadline)
        elif due is not current:
            # First ring past this deadline: the runtime's own waits in the handler (an ask,
            # a tell waiting for room) raise DeadlineExceeded in it now; cut it only if it
            # still runs CUT_GRACE later.
            self.due = current
            self.arm(now + CUT_GRACE)
        else:
            if self.in_system or self.work is None or self.cut is not None:
                return
            error = DeadlineExceeded(
                f"{type(current[0]).__qualname__} to actor {self.label!r}: its deadline "
                "passed while its handler ran; the handler was cancelled",
                self.label,
            )
            self.cut = [current, error, False]
            self.work.cancel()

    def abandoned(self, reply: Reply) -> None:
        """The asker waiting on ``reply`` was cancelled: cut the handler of its message if
        it is running, or drop the message if it is still queued (a dead letter, reason
        ``cancelled``). Never blocks."""
        error = ActorStopped(f"the asker of a request to actor {self.label!r} was cancelled")
        current = self.current
        if current[2] is reply:
            if not self.in_system and self.work is not None and self.cut is None:
                self.cut = [current, error, False]
                self.work.cancel()
            return
        queue = self.mailbox.queue
        for envelope in queue:
            if envelope[2] is reply:
                queue.remove(envelope)
                if self.mailbox.senders:
                    self.mailbox.wake_sender()
                self.dead_letter(envelope, "cancelled", error)
                return

    async def answered(self, instance: Actor, envelope: Envelope, exc: Exception) -> None:
        """A handler raised one of the actor's answers: the asker gets it, a tell is a dead
        letter (``error``); a persistent actor's changes are rolled back. No restart."""
        exc.add_note(f"raised in a handler of actor {self.label!r} (an answer: no restart)")
        msg, _, reply = envelope[:3]
        guard = self.guard
        if guard is not None:
            guard.failed(self, exc)
        if reply is not None:
            reply.fail(exc)
        else:
            self.dead_letter(envelope, "error")
        logger.info(
            "actor %r answered %s with %s: %s",
            self.label,
            type(msg).__qualname__,
            type(exc).__qualname__,
            exc,
            extra={"actor": self.label, "correlation_id": format(envelope[3], "x")},
        )
        system = self.system
        if system.events.active:
            system.events.publish(
                ErrorAnswered(
                    actor=self.label,
                    actor_class=self.actor_class.__qualname__,
                    message=type(msg).__qualname__,
                    error=exc,
                )
            )
        if self.persistence is not None:
            await self.persistence.rollback(instance)

    def crashed(self, envelope: Envelope, exc: Exception) -> None:
        exc.add_note(f"raised in a handler of actor {self.label!r}")
        # Logged here, before the asker re-raises it: the traceback shows the actor's
        # frames, not the asker's (re-raising prepends the asker's frames to it).
        logger.error(
            "actor %r crashed handling %s",
            self.label,
            type(envelope[0]).__qualname__,
            exc_info=exc,
            extra={"actor": self.label, "correlation_id": format(envelope[3], "x")},
        )
        exc._understudy_logged = True  # type: ignore[attr-defined]  # later logs: no traceback
        reply = envelope[2]
        if reply is not None:
            reply.fail(exc)
        guard = self.guard
        self.dead_letter(envelope, "crashed" if guard is None else guard.failed(self, exc))

    async def system_message(
        self, instance: Actor, item: tuple[Any, ...]
    ) -> tuple[ExitReason, BaseException | None] | None:
        kind = item[0]
        if kind == "stop":  # ("stop", reason[, error]): supervision passes an error
            return item[1], item[2] if len(item) > 2 else None
        if kind == PERSISTENCE_FAILED:  # (kind, error, generation): a write of an instance failed
            persistence = self.persistence
            if persistence is not None and item[2] == persistence.generation:
                return "failed", item[1]
            return None  # about an earlier instance: stale
        if kind == "message":  # a runtime-internal message that must overtake user messages
            try:
                await self.handlers[type(item[1])](instance, item[1])
            except Exception as exc:
                return "failed", exc
            return None
        if kind == "terminated":
            note: Terminated = item[1]
            handler = self.handlers.get(Terminated)
            if handler is not None:
                self.current = (None, None, None, next(self.system.correlation_ids), 0.0, None)
                try:
                    await handler(instance, note)
                except Exception as exc:
                    exc.add_note(f"raised in the Terminated handler of actor {self.label!r}")
                    return "failed", exc
            elif note.reason in ("failed", "killed") and note.ref._cell.parent is self:
                failure = ChildFailed(note.ref.name, note.error)
                failure.__cause__ = note.error
                return "failed", failure
        return None

    async def stop_children(self) -> None:
        children = self.children
        while children:
            child = children[next(reversed(children))]
            await child.stop("shutdown", child.shutdown)
            children.pop(child.id, None)

    def release_instance(self) -> None:
        """Let go of the ended instance's scope, timers and children (no awaits)."""
        self.scope = None
        self.instance = None
        self.stopping = True
        if self.instance_done is not None:
            self.instance_done.set()
            self.instance_done = None
        if self.ctx is not None:
            self.ctx._cancel_timers()
            self.ctx = None
        if self.children:
            for child in list(self.children.values()):
                child.linked = False  # its end belongs to a life that is over
                child.kill()
        system = self.mailbox.system
        system[:] = [
            item
            for item in system
            if not (item[0] == "terminated" and item[1].ref._cell.parent is self)
        ]

    def instance_ended(self, reason: ExitReason, error: BaseException | None) -> None:
        """After an instance served and ended: let its supervisor restart it, or terminate."""
        self.release_instance()
        if error is not None and self.system.events.active:
            self.system.events.publish(
                ActorFailed(
                    actor=self.label, actor_class=self.actor_class.__qualname__, error=error
                )
            )
        supervisor = self.supervisor
        if (
            supervisor is not None
            and not self.system.shutting_down
            and supervisor.child_exited(self, reason, error)
        ):
            return
        self.terminate(reason, error)

    def discard(self) -> None:
        """Remove an identity whose first start failed: it never served, so no one is told."""
        self.accepting = False
        self.terminated = True
        for envelope in self.mailbox.drain():
            self.dead_letter(envelope, "stopped")
        self.system.unregister(self)
        if self.done is not None:
            self.done.set()

    def terminate(self, reason: ExitReason, error: BaseException | None) -> None:
        """End the identity for good: dead-letter what is queued, tell watchers and parent."""
        if self.terminated:
            return
        self.accepting = False
        self.terminated = True
        self.exit_reason = reason
        self.exit_error = error
        system = self.system
        leftover = "shutdown" if system.shutting_down else "stopped"
        for envelope in self.mailbox.drain():
            self.dead_letter(envelope, leftover)
        self.mailbox.system.clear()
        system.unregister(self)
        note = self.termination()
        told: set[Cell] = set()
        if self.watchers:
            for watcher in self.watchers:
                if watcher.watching is not None:
                    watcher.watching.discard(self)
                if not watcher.terminated:
                    watcher.mailbox.put_system(("terminated", note))
                    told.add(watcher)
            self.watchers = None
        parent = self.parent
        if self.linked and parent is not None and parent not in told and not parent.terminated:
            parent.mailbox.put_system(("terminated", note))
        if self.watching:
            for target in self.watching:
                if target.watchers is not None:
                    target.watchers.discard(self)
            self.watching = None
        if reason == "failed" and error is not None:
            logger.error(
                "actor %r stopped: it failed with %r",
                self.label,
                error,
                exc_info=None if getattr(error, "_understudy_logged", False) else error,
                extra={"actor": self.label, "correlation_id": format(self.current[3], "x")},
            )
        if system.events.active:
            system.events.publish(
                ActorTerminated(
                    actor=self.label,
                    actor_class=self.actor_class.__qualname__,
                    reason=reason,
                    error=error,
                )
            )
        if self.done is not None:
            self.done.set()

    def termination(self) -> Terminated:
        return Terminated(self.ref, self.exit_reason or "normal", self.exit_error)

    # -- stopping from outside --

    def kill(self) -> None:
        """Cancel the running instance where it stands. Never blocks."""
        if self.scope is not None:
            self.scope.cancel()
        elif self.instance is not None:
            self.doomed = True  # its task has not made its scope yet: cancel it at birth

    async def wait_terminated(self) -> None:
        if not self.terminated:
            if self.done is None:
                self.done = Wake()
            await self.done.wait()

    async def end_instance(self, timeout: float) -> None:
        """Stop the running instance (not the identity) like a stop request, killing it after
        ``timeout``; its supervisor is expected to start the next one."""
        if self.instance is None:
            return
        if timeout < 0:  # supervision (wave 2): brutal_kill, no stop request
            done = self.instance_done
            if done is None:
                done = self.instance_done = Wake()
            self.kill()
            await done.wait()
            return
        request = ("stop", "shutdown")
        self.mailbox.put_system(request)
        done = self.instance_done
        if done is None:
            done = self.instance_done = Wake()
        with anyio.move_on_after(timeout):
            await done.wait()
        if self.instance is not None:
            self.kill()
            await done.wait()
        # The instance may have ended on its own first; the request must not stop the next.
        self.mailbox.system[:] = [item for item in self.mailbox.system if item is not request]

    async def stop(self, reason: ExitReason = "shutdown", timeout: float | None = None) -> None:
        """Ask the identity to stop after its current message; kill it after ``timeout``."""
        if self.terminated:
            return
        if timeout is not None and timeout < 0 and self.instance is not None:
            self.kill()  # supervision (wave 2): brutal_kill, no stop request
            await self.wait_terminated()
            return
        self.mailbox.put_system(("stop", reason))
        if self.instance is None and self.scope is None:
            # Not running (e.g. waiting to be restarted): nothing will read the lane.
            self.terminate(reason, None)
            return
        if timeout is not None:
            with anyio.move_on_after(timeout):
                await self.wait_terminated()
            if not self.terminated:
                self.kill()
        await self.wait_terminated()


def _check_name(name: object, where: str) -> str | None:
    return None if name is None else check_name(name, where)


def _stray_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is an asyncio ``CancelledError`` that no cancellation of the current
    task sent (a handler awaited a task it had cancelled): on trio, never."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None or not isinstance(exc, asyncio.CancelledError):
        return False
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running asyncio loop: trio
        return False
    return task is not None and task.cancelling() == 0


class _Vacant(Actor):
    """The class of the placeholder a name ref points at while no actor has its name."""


def _unresolved(instance: Actor, msg: Message) -> Awaitable[Any]:  # pragma: no cover
    raise AssertionError("a vacancy never handles a message")


class _AnyHandler(dict[type, Handler]):
    """Handlers of a vacancy: every type has one until the send finds the real actor."""

    def get(self, key: type, default: Any = None) -> Handler:
        return _unresolved


def vacancy(system: ActorSystem, name: str) -> Cell:
    """A stopped placeholder cell for ``name``: a name ref made while no live actor has the
    name points here; its sends take :meth:`Cell.deliver`, which waits for the name."""
    cell = Cell(
        system,
        _Vacant,
        _Vacant,
        id=0,
        name=name,
        parent=None,
        capacity=1,
        overflow="block",
        shutdown=DEFAULT_SHUTDOWN,
    )
    cell.handlers = _AnyHandler()
    cell.accepting = False
    cell.terminated = True
    return cell


def check_shutdown(shutdown: object, where: str = "spawn") -> float:
    """Seconds of grace from a ``shutdown`` option: a number >= 0 (0: killed unless it stops
    at once), ``"infinity"``, or ``"brutal_kill"`` (:data:`BRUTAL_KILL`: cancelled at once,
    ``on_stop`` does not run)."""
    if shutdown == "brutal_kill":
        return BRUTAL_KILL
    if shutdown == "infinity":
        return math.inf
    if isinstance(shutdown, bool) or not isinstance(shutdown, (int, float)):
        raise TypeError(
            f"{where}: shutdown must be seconds, 'infinity' or 'brutal_kill', not {shutdown!r}"
        )
    if not shutdown >= 0:  # supervision (wave 2): 0 is a valid timeout (OTP)
        raise ValueError(f"{where}: shutdown must be >= 0 seconds, not {shutdown!r}")
    return float(shutdown)


def actor_class_of(actor: object, where: str) -> tuple[type[Actor], Callable[[], Actor]]:
    """Split ``actor`` (an Actor subclass or a zero-argument factory) into class and factory."""
    if isinstance(actor, type):
        if not issubclass(actor, Actor):
            raise TypeError(f"{where}: {actor.__qualname__} is not an understudy.Actor subclass")
        return actor, actor
    if callable(actor):
        factory = typing.cast(Callable[[], Actor], actor)
        probe = factory()
        if not isinstance(probe, Actor):
            raise TypeError(f"{where}: the factory {actor!r} returned {probe!r}, not an Actor")
        # The probe serves as the first instance, so the factory runs once per instance.
        first = [probe]

        def once_then_factory() -> Actor:
            return first.pop() if first else factory()

        return type(probe), once_then_factory
    raise TypeError(f"{where}: expected an Actor subclass or a factory, not {actor!r}")


async def spawn_cell(
    system: ActorSystem,
    parent: Cell | None,
    actor: object,
    *,
    name: str | None,
    capacity: int | None = None,
    overflow: Overflow = "block",
    shutdown: float | str = DEFAULT_SHUTDOWN,
    supervisor: Supervising | None = None,
    breaker: Breaker | None = None,
    timeout: float | None = None,
    queue_timeout: float | None = None,
    idle_timeout: float | None = None,
    persistent: bool | None = None,
    durability: Durability | None = None,
    answers: Answers | None = None,
) -> Cell:
    """Validate the options, create the identity and start its first instance.

    Returns once the instance's ``on_start`` returned; raises what it raised (and then
    the identity does not exist). Raises :class:`NameTaken` for a live name. ``breaker``
    and the time limits make the identity's guard (see ``Runtime.spawn``). ``persistent``
    (default: the class's ``persistent``) makes it persistent in the runtime's store, with
    ``durability`` (default: the class's ``durability``).
    """
    if system.closed:
        raise RuntimeClosed(
            "cannot spawn: the runtime is not running (it has exited, or `async with` "
            "was not entered)"
        )
    where = f"spawn({getattr(actor, '__qualname__', actor)!r})"
    name = _check_name(name, where)
    cap = system.default_capacity if capacity is None else check_capacity(capacity, where)
    policy = check_overflow(overflow, where)
    grace = check_shutdown(shutdown, where)
    actor_class, factory = actor_class_of(actor, where)
    cell = Cell(
        system,
        actor_class,
        factory,
        id=next(system.correlation_ids),
        name=name,
        parent=parent,
        capacity=cap,
        overflow=policy,
        shutdown=grace,
    )
    if answers is not None:
        cell.answers = check_answers(answers, f"{where}: answers") + ALWAYS_ANSWERS
    if supervisor is not None:
        cell.supervisor = supervisor
        cell.linked = False  # a supervisor hears of its children's exits through the hook
    if not (breaker is None and timeout is None and queue_timeout is None and idle_timeout is None):
        cell.guard = system.guard(cell, breaker, timeout, queue_timeout, idle_timeout)
    if persistent if persistent is not None else actor_class.persistent:
        cell.persistence = system.persistence(cell, durability)
    elif durability is not None:
        raise ValueError(f"{where}: durability= applies to persistent actors only")
    instance = cell.new_instance()
    system.register(cell)  # raises NameTaken; reserves the name during on_start
    if parent is not None:
        if parent.children is None:
            parent.children = {}
        parent.children[cell.id] = cell
    try:
        error = await start_instance(cell, instance, None)
    except BaseException:
        cell.discard()
        raise
    if error is not None:
        # Children its on_start spawned were killed with it: wait until they are gone, so
        # nothing of the failed spawn is left when the caller sees the error.
        for child in list((cell.children or {}).values()):
            await child.wait_terminated()
        cell.discard()
        raise error
    return cell


async def start_instance(
    cell: Cell, instance: Actor, restarted_after: BaseException | None
) -> BaseException | None:
    """Start ``instance`` on ``cell``'s task and wait for its ``on_start``; its error or None."""
    cell.instance = instance  # from now on a stop request waits for this instance
    result: BaseException | None = await cell.system.task_group.start(
        cell.run, instance, restarted_after
    )
    return result


CUT_GRACE = 0.001
"""Seconds past a message's deadline before its handler is cut: time for the runtime's
own waits inside it (an ask, a tell waiting for room) to raise DeadlineExceeded first."""

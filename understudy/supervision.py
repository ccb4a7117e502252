"""Supervisor trees with Erlang/OTP semantics, plus restart backoff.

A :class:`Supervisor` is a spec: a strategy, an ordered list of child specs (:class:`Child` or
nested :class:`Supervisor`) and an auto-shutdown policy. ``await rt.start(spec)`` runs it as
an actor and returns a :class:`SupervisorRef`. The rules, as in OTP's ``supervisor``:

* Children start in list order, each after the previous one's ``on_start`` returned; if one
  fails to start, those already started are stopped in reverse order and the supervisor's
  start fails with that error.
* Strategies: :class:`OneForOne` restarts only the child that exited; :class:`OneForAll`
  stops all the others (reverse start order) and restarts all (start order);
  :class:`RestForOne` does that for the exited child and those started after it;
  :class:`SimpleOneForOne` has one template spec and children added at run time.
* Restart types: ``permanent`` children are always restarted; ``transient`` ones only after
  an abnormal exit (``failed`` or ``killed``: a handler raised, a timeout, a kill), not after
  ``normal`` (``ctx.stop()``) or ``shutdown``; ``temporary`` ones never — not even when a
  sibling's exit makes a OneForAll/RestForOne supervisor stop them.
* Restart intensity: more than ``max_restarts`` restarts within ``within`` seconds makes the
  supervisor give up: it stops all its children in reverse start order and fails with
  :class:`RestartIntensityExceeded`, which its own supervisor handles as a child failure.
  At the root, ``rt.wait()`` returns it, and leaving ``async with Runtime()`` raises it.
  One restart action counts once (a OneForAll restart of five children is one restart).
* Backoff (Akka's ``BackoffSupervisor``, absent from OTP): with ``backoff=Backoff(...)`` the
  n-th consecutive restart of a child waits ``min * factor**n`` seconds (capped at ``max``,
  spread by ``jitter``); the count resets after ``reset_after`` seconds without an exit.
  Messages sent meanwhile wait in the child's mailbox and go to the new instance.
* A restarted child keeps its identity (name, ref, mailbox). The message whose handler
  crashed is not redelivered: it is a dead letter with reason ``crashed``.
* Shutdown: children stop in reverse start order; each gets its ``shutdown`` seconds to
  finish its message and run ``on_stop`` (``"brutal_kill"``: cancelled at once;
  ``"infinity"``, the default for supervisors: waited for). Supervisors stop their subtree
  first.
* Significant children (OTP 24): with ``auto_shutdown="any_significant"`` the supervisor
  shuts down (reason ``shutdown``) when a significant child terminates without being
  restarted; with ``"all_significant"``, when the last one does.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Literal

import msgspec

from understudy.actors import (
    DEFAULT_SHUTDOWN,
    Actor,
    Cell,
    Ref,
    check_positive,
    check_shutdown,
    spawn_cell,
    start_instance,
)
from understudy.errors import RestartIntensityExceeded, UnknownActor
from understudy.events import Event
from understudy.messages import ExitReason, Message, Request
from understudy.meter import count_backoff, count_give_up, count_restart, mark_supervisor
from understudy.resilience import check_options

logger = logging.getLogger("understudy")

RestartType = Literal["permanent", "transient", "temporary"]
RESTART_TYPES: tuple[RestartType, ...] = ("permanent", "transient", "temporary")
AutoShutdown = Literal["never", "any_significant", "all_significant"]
AUTO_SHUTDOWN: tuple[AutoShutdown, ...] = ("never", "any_significant", "all_significant")
ChildState = Literal["running", "restarting", "backing_off"]

_ABNORMAL = ("failed", "killed")


# ------------------------------------------------------------------------------- the specs


class Backoff:
    """Delay before restarting a child that keeps exiting: ``min * factor**n`` seconds for
    the n-th consecutive restart (n from 0), capped at ``max``, multiplied by a random
    factor in ``[1 - jitter, 1 + jitter]``; n resets after ``reset_after`` quiet seconds."""

    __slots__ = ("factor", "jitter", "max", "min", "reset_after")

    def __init__(
        self,
        min: float = 0.1,
        max: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.1,
        reset_after: float = 60.0,
    ) -> None:
        self.min = check_positive(min, "Backoff(min=)")
        self.max = check_positive(max, "Backoff(max=)")
        if self.max < self.min:
            raise ValueError(f"Backoff: max ({max}) must not be below min ({min})")
        self.factor = check_positive(factor, "Backoff(factor=)")
        if self.factor < 1:
            raise ValueError(f"Backoff(factor=) must be at least 1, not {factor}")
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)):
            raise TypeError(f"Backoff(jitter=) must be a number, not {jitter!r}")
        if not 0 <= jitter < 1:
            raise ValueError(f"Backoff(jitter=) must be in [0, 1), not {jitter}")
        self.jitter = float(jitter)
        self.reset_after = check_positive(reset_after, "Backoff(reset_after=)")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before the ``attempt``-th consecutive restart (from 0)."""
        base = min(self.max, self.min * self.factor**attempt)
        if self.jitter:
            base *= 1 + rng.uniform(-self.jitter, self.jitter)
        return base

    def __repr__(self) -> str:
        return (
            f"Backoff(min={self.min}, max={self.max}, factor={self.factor}, "
            f"jitter={self.jitter}, reset_after={self.reset_after})"
        )


class Strategy:
    """Restart strategy and intensity: give up after more than ``max_restarts`` restarts
    within ``within`` seconds (defaults: 3 in 5 s, Elixir's; OTP's are 1 in 5 s)."""

    __slots__ = ("max_restarts", "within")

    def __init__(self, *, max_restarts: int = 3, within: float = 5.0) -> None:
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int):
            raise TypeError(f"{type(self).__name__}: max_restarts must be an int")
        if max_restarts < 0:
            raise ValueError(
                f"{type(self).__name__}: max_restarts must be >= 0, not {max_restarts}"
            )
        self.max_restarts = max_restarts
        self.within = check_positive(within, f"{type(self).__name__}(within=)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_restarts={self.max_restarts}, within={self.within})"


class OneForOne(Strategy):
    """Restart only the child that exited."""

    __slots__ = ()


class OneForAll(Strategy):
    """Stop every other child (reverse order), then restart them all (start order)."""

    __slots__ = ()


class RestForOne(Strategy):
    """Stop the children started after the exited one, then restart it and them."""

    __slots__ = ()


class SimpleOneForOne(Strategy):
    """One template child spec; children are added with ``start_child(*args, name=...)``
    and restarted one for one."""

    __slots__ = ()


_SPAWN_OPTIONS = frozenset(inspect.signature(spawn_cell).parameters) - {
    "system",
    "parent",
    "actor",
    "name",
    "shutdown",
    "supervisor",
}


class Child:
    """How to start, restart and stop one child of a supervisor.

    ``actor`` is an Actor subclass or a zero-argument factory; ``restart`` is
    ``"permanent"``, ``"transient"`` or ``"temporary"``; ``shutdown`` is seconds,
    ``"brutal_kill"`` or ``"infinity"``; ``backoff`` delays restarts; ``significant`` marks a
    child whose end can shut the supervisor down. Other keywords are spawn options
    (``capacity``, ``overflow``, and ``breaker``, ``timeout``, ``queue_timeout``,
    ``idle_timeout``: see ``Runtime.spawn``). Everything is validated here, at
    construction. A ``breaker`` is a template: each identity started from this spec gets
    its own, kept across its restarts.
    """

    __slots__ = ("actor", "backoff", "name", "options", "restart", "shutdown", "significant")

    def __init__(
        self,
        actor: type[Actor] | Callable[[], Actor],
        *,
        name: str | None = None,
        restart: RestartType = "permanent",
        shutdown: float | str = DEFAULT_SHUTDOWN,
        backoff: Backoff | None = None,
        significant: bool = False,
        **options: Any,
    ) -> None:
        where = f"Child({getattr(actor, '__qualname__', actor)!r})"
        if isinstance(actor, type) and not issubclass(actor, Actor):
            raise TypeError(f"{where}: {actor.__qualname__} is not an understudy.Actor subclass")
        if not callable(actor):
            raise TypeError(f"{where}: expected an Actor subclass or a factory, not {actor!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"{where}: name must be a non-empty str or None, not {name!r}")
        if restart not in RESTART_TYPES:
            raise ValueError(f"{where}: restart must be one of {RESTART_TYPES}, not {restart!r}")
        check_shutdown(shutdown, where)
        if backoff is not None and not isinstance(backoff, Backoff):
            raise TypeError(f"{where}: backoff must be a us.Backoff, not {backoff!r}")
        if not isinstance(significant, bool):
            raise TypeError(f"{where}: significant must be a bool, not {significant!r}")
        if significant and restart == "permanent":
            raise ValueError(
                f"{where}: a permanent child cannot be significant (OTP: only transient and "
                "temporary children can end their supervisor's work)"
            )
        unknown = set(options) - _SPAWN_OPTIONS
        if unknown:
            raise TypeError(
                f"{where}: unknown option(s) {sorted(unknown)}; "
                f"spawn options are {sorted(_SPAWN_OPTIONS)}"
            )
        check_options(options, where)
        self.actor = actor
        self.name = name
        self.restart: RestartType = restart
        self.shutdown = shutdown
        self.backoff = backoff
        self.significant = significant
        self.options = options

    def __repr__(self) -> str:
        return f"Child({getattr(self.actor, '__qualname__', self.actor)}, name={self.name!r})"


class Supervisor:
    """A supervisor spec: ``strategy``, ordered ``children`` (Child or Supervisor specs),
    ``auto_shutdown`` policy; as a child of another supervisor it also has ``name``,
    ``restart``, ``shutdown`` (default ``"infinity"``), ``backoff`` and ``significant``."""

    __slots__ = (
        "auto_shutdown",
        "backoff",
        "children",
        "name",
        "restart",
        "shutdown",
        "significant",
        "strategy",
    )
    name: str | None
    significant: bool

    def __init__(
        self,
        *,
        strategy: Strategy | None = None,
        children: Sequence[Child | Supervisor] = (),
        name: str | None = None,
        auto_shutdown: AutoShutdown = "never",
        restart: RestartType = "permanent",
        shutdown: float | str = "infinity",
        backoff: Backoff | None = None,
        significant: bool = False,
    ) -> None:
        where = f"Supervisor(name={name!r})"
        strategy = OneForOne() if strategy is None else strategy
        if not isinstance(strategy, Strategy):
            raise TypeError(f"{where}: strategy must be a us.Strategy, not {strategy!r}")
        if isinstance(children, (str, bytes)) or not isinstance(children, Sequence):
            raise TypeError(f"{where}: children must be a list of Child/Supervisor specs")
        for spec in children:
            if not isinstance(spec, (Child, Supervisor)):
                raise TypeError(f"{where}: {spec!r} is not a us.Child or us.Supervisor spec")
        if auto_shutdown not in AUTO_SHUTDOWN:
            raise ValueError(
                f"{where}: auto_shutdown must be one of {AUTO_SHUTDOWN}, not {auto_shutdown!r}"
            )
        if isinstance(strategy, SimpleOneForOne):
            if len(children) != 1 or not isinstance(children[0], Child):
                raise ValueError(
                    f"{where}: SimpleOneForOne takes exactly one Child spec as its template, "
                    f"got {len(children)}"
                )
        elif not children:
            raise ValueError(
                f"{where}: a {type(strategy).__name__} supervisor needs at least one child"
            )
        names = [spec.name for spec in children if spec.name is not None]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"{where}: duplicate child names {duplicates}")
        significant_children = [spec for spec in children if spec.significant]
        if significant_children and auto_shutdown == "never":
            raise ValueError(
                f"{where}: significant children need auto_shutdown='any_significant' or "
                "'all_significant' (OTP rejects them under 'never')"
            )
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"{where}: name must be a non-empty str or None")
        if restart not in RESTART_TYPES:
            raise ValueError(f"{where}: restart must be one of {RESTART_TYPES}, not {restart!r}")
        if significant and restart == "permanent":
            raise ValueError(f"{where}: a permanent supervisor cannot be significant")
        check_shutdown(shutdown, where)
        self.strategy = strategy
        self.children = tuple(children)
        self.name = name
        self.auto_shutdown: AutoShutdown = auto_shutdown
        self.restart: RestartType = restart
        self.shutdown = shutdown
        self.backoff = backoff
        self.significant = significant

    def __repr__(self) -> str:
        return f"Supervisor(name={self.name!r}, strategy={self.strategy!r})"


# ---------------------------------------------------------------------------------- events


class ChildRestarted(Event, frozen=True, kw_only=True):
    """A supervisor restarted ``actor`` (``restarts``: its restarts so far, this one
    included) after it exited with ``reason``."""

    supervisor: str
    reason: ExitReason
    error: BaseException | None = None
    restarts: int


class ChildBackoff(Event, frozen=True, kw_only=True):
    """A supervisor waits ``delay`` seconds before restarting ``actor`` (``attempt``: the
    consecutive restart this wait precedes, from 0)."""

    supervisor: str
    delay: float
    attempt: int


class SupervisorGaveUp(Event, frozen=True, kw_only=True):
    """Supervisor ``actor`` exceeded its restart intensity and stopped its children."""

    max_restarts: int
    within: float
    error: BaseException | None = None


class Escalated(Event, frozen=True, kw_only=True):
    """Supervisor ``actor`` failed and its failure went to ``to`` (a supervisor's name, or
    ``"runtime"`` for a root)."""

    to: str
    error: BaseException


# ----------------------------------------------------------------------- supervisor actor


class ChildInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One child as ``which_children()`` reports it."""

    name: str
    actor_class: str
    state: ChildState
    restarts: int
    supervisor: bool
    restart: RestartType


class ChildCounts(msgspec.Struct, frozen=True, kw_only=True):
    """``count_children()``: specs, running children, supervisors and workers."""

    specs: int
    active: int
    supervisors: int
    workers: int


class _ChildExited(Message, frozen=True):
    cell: Cell
    generation: int
    reason: ExitReason
    error: BaseException | None


class _RestartDue(Message, frozen=True):
    cell: Cell
    generation: int


class _StartChild(Request[Ref], frozen=True):
    spec: Child | Supervisor | None
    args: tuple[Any, ...]
    name: str | None


class _TerminateChild(Request[None], frozen=True):
    name: str


class _WhichChildren(Request[list[ChildInfo]], frozen=True):
    pass


class _CountChildren(Request[ChildCounts], frozen=True):
    pass


class _Record:
    """What a supervisor knows of one child identity."""

    __slots__ = ("backing_off", "cell", "consecutive", "last_exit", "spec", "stopping")

    def __init__(self, spec: Child | Supervisor, cell: Cell) -> None:
        self.spec = spec
        self.cell = cell
        self.consecutive = 0
        self.last_exit = -math.inf
        self.backing_off = False
        self.stopping = False  # the supervisor itself is ending this instance


def _actor_of(spec: Child | Supervisor, args: tuple[Any, ...]) -> Callable[[], Actor] | type:
    if isinstance(spec, Supervisor):
        return functools.partial(supervisor_actor(spec), spec)
    if args:
        return functools.partial(spec.actor, *args)
    return spec.actor


def supervisor_actor(spec: Supervisor) -> type[SupervisorActor]:
    """The actor class that runs ``spec``: the one dispatch point for specs that are
    supervisors of their own kind (``us.Pool``, ``us.Entities`` set ``runner``)."""
    runner: type[SupervisorActor] = getattr(spec, "runner", SupervisorActor)
    return runner


class SupervisorActor(Actor):
    """The actor that runs a :class:`Supervisor` spec (made by ``rt.start``)."""

    def __init__(self, spec: Supervisor) -> None:
        self.spec = spec
        self.records: dict[int, _Record] = {}  # by cell id, in start order
        self.restart_times: deque[float] = deque()
        self.rng = random.Random()
        self.significant_left = sum(1 for child in spec.children if child.significant)
        # Restarts waiting out a backoff, by the id of the child whose exit caused them.
        self._pending: dict[int, tuple[list[_Record], ExitReason, BaseException | None]] = {}

    # -- starting --

    async def on_start(self) -> None:
        mark_supervisor(self.ctx._cell)  # metrics: export its give-ups, from zero
        if isinstance(self.spec.strategy, SimpleOneForOne):
            return
        try:
            for spec in self.spec.children:
                await self._start(spec, ())
        except BaseException:
            await self._stop_all()
            raise

    async def _start(
        self, spec: Child | Supervisor, args: tuple[Any, ...], name: str | None = None
    ) -> Cell:
        cell = self.ctx._cell
        options = spec.options if isinstance(spec, Child) else {}
        child = await spawn_cell(
            cell.system,
            cell,
            _actor_of(spec, args),
            name=name if name is not None else spec.name,
            shutdown=spec.shutdown,
            supervisor=self,
            **options,
        )
        self.records[child.id] = _Record(spec, child)
        return child

    # -- the Supervising hook (runs in the child's task, synchronously) --

    def child_exited(self, cell: Cell, reason: ExitReason, error: BaseException | None) -> bool:
        me = self.ctx._cell if getattr(self, "ctx", None) is not None else None
        record = self.records.get(cell.id)
        if me is None or me.instance is not self or me.stopping or record is None:
            return False  # this supervisor is ending: the child ends with it
        if record.stopping:
            return True  # ended by this supervisor, which restarts it itself
        me.mailbox.put_system(("message", _ChildExited(cell, cell.generation, reason, error)))
        return True

    # -- decisions (in the supervisor's own task, one at a time) --

    async def handle_child_exited(self, msg: _ChildExited) -> None:
        record = self.records.get(msg.cell.id)
        if record is None or msg.cell.generation != msg.generation or msg.cell.instance:
            return  # stale: that instance was already dealt with
        await self._decide(record, msg.reason, msg.error)

    async def _decide(
        self, record: _Record, reason: ExitReason, error: BaseException | None
    ) -> None:
        spec = record.spec
        cell = record.cell
        restart = spec.restart == "permanent" or (
            spec.restart == "transient" and reason in _ABNORMAL
        )
        me = self.ctx._cell
        if not restart:
            if error is not None:
                logger.error(
                    "child %r of supervisor %r exited (%s) and is %s: not restarted",
                    cell.label,
                    me.label,
                    reason,
                    spec.restart,
                    exc_info=error,
                    extra={"actor": cell.label, "correlation_id": None},
                )
            self._forget(record, reason, error)
            return
        now = me.system.clock()
        self._count_restart(now, error)
        if now - record.last_exit > (spec.backoff.reset_after if spec.backoff else math.inf):
            record.consecutive = 0
        record.last_exit = now
        logger.error(
            "child %r of supervisor %r exited (%s); restarting it",
            cell.label,
            me.label,
            reason,
            exc_info=error,
            extra={"actor": cell.label, "correlation_id": None},
        )
        group = self._group(record)
        for other in reversed(group):
            if other is not record:
                await self._end_instance(other)
        for other in group:
            if other is not record and other.spec.restart == "temporary":
                self._forget(other, "shutdown", None)
        group = [r for r in group if r is record or r.spec.restart != "temporary"]
        if spec.backoff is not None:
            delay = spec.backoff.delay(record.consecutive, self.rng)
            record.consecutive += 1
            for member in group:
                member.backing_off = True
                count_backoff(member.cell, delay)
            self._publish(
                ChildBackoff(
                    actor=cell.label,
                    supervisor=me.label,
                    delay=delay,
                    attempt=record.consecutive - 1,
                )
            )
            self.ctx.schedule_system(delay, _RestartDue(cell, cell.generation))
            self._pending[cell.id] = (group, reason, error)
            return
        await self._restart_group(group, reason, error)

    async def handle_restart_due(self, msg: _RestartDue) -> None:
        pending = self._pending.pop(msg.cell.id, None)
        if pending is None:
            return
        group, reason, error = pending
        await self._restart_group([r for r in group if r.cell.id in self.records], reason, error)

    def _group(self, record: _Record) -> list[_Record]:
        strategy = self.spec.strategy
        records = list(self.records.values())
        if isinstance(strategy, OneForAll):
            return records
        if isinstance(strategy, RestForOne):
            return records[records.index(record) :]
        return [record]

    async def _restart_group(
        self, group: list[_Record], reason: ExitReason, error: BaseException | None
    ) -> None:
        me = self.ctx._cell
        for record in group:
            record.backing_off = False
            cell = record.cell
            if cell.terminated or cell.instance is not None:
                continue
            failure = await start_instance(cell, cell.new_instance(), error or _Restarted(reason))
            if failure is not None:
                # A failed restart is one more exit of that child: decide again (and count).
                await self._decide(record, "failed", failure)
                return
            count_restart(cell, reason)  # cell.restarts += 1, and the metric by reason
            self._publish(
                ChildRestarted(
                    actor=cell.label,
                    supervisor=me.label,
                    reason=reason,
                    error=error,
                    restarts=cell.restarts,
                )
            )

    def _count_restart(self, now: float, error: BaseException | None) -> None:
        strategy = self.spec.strategy
        times = self.restart_times
        times.append(now)
        while times and times[0] <= now - strategy.within:
            times.popleft()
        if len(times) > strategy.max_restarts:
            me = self.ctx._cell
            self._publish(
                SupervisorGaveUp(
                    actor=me.label,
                    max_restarts=strategy.max_restarts,
                    within=strategy.within,
                    error=error,
                )
            )
            parent = me.supervisor
            self._publish(
                Escalated(
                    actor=me.label,
                    to=parent.ctx.name if isinstance(parent, SupervisorActor) else "runtime",
                    error=error or RuntimeError("restart intensity exceeded"),
                )
            )
            count_give_up(me)
            raise RestartIntensityExceeded(me.label, strategy.max_restarts, strategy.within, error)

    async def _end_instance(self, record: _Record) -> None:
        record.stopping = True
        try:
            await record.cell.end_instance(check_shutdown(record.spec.shutdown))
        finally:
            record.stopping = False

    def _forget(self, record: _Record, reason: ExitReason, error: BaseException | None) -> None:
        """The child ends for good: terminate its identity; maybe shut down (significant)."""
        self.records.pop(record.cell.id, None)
        self._pending.pop(record.cell.id, None)
        record.cell.terminate(reason, error)
        if record.spec.significant:
            self.significant_left -= 1
            policy = self.spec.auto_shutdown
            if policy == "any_significant" or (
                policy == "all_significant" and self.significant_left == 0
            ):
                self.ctx._cell.mailbox.put_system(("stop", "shutdown"))

    async def _stop_all(self) -> None:
        # Forget them first: a child this supervisor no longer knows ends for good when it
        # exits, instead of being handed back for a restart.
        records = list(self.records.values())
        self.records.clear()
        for record in reversed(records):
            await record.cell.stop("shutdown", check_shutdown(record.spec.shutdown))

    def _publish(self, event: Event) -> None:
        events = self.ctx._cell.system.events
        if events.active:
            events.publish(event)

    # -- requests from SupervisorRef --

    async def start_child(self, msg: _StartChild) -> Ref:
        if isinstance(self.spec.strategy, SimpleOneForOne):
            if msg.spec is not None:
                raise TypeError(
                    f"supervisor {self.ctx.name!r} is SimpleOneForOne: pass the template's "
                    "arguments to start_child, not a spec"
                )
            cell = await self._start(self.spec.children[0], msg.args, msg.name)
        else:
            if msg.spec is None or msg.args:
                raise TypeError(
                    f"supervisor {self.ctx.name!r} is {type(self.spec.strategy).__name__}: "
                    "start_child takes one Child or Supervisor spec"
                )
            cell = await self._start(msg.spec, ())
        return cell.ref

    async def terminate_child(self, msg: _TerminateChild) -> None:
        for record in self.records.values():
            if record.cell.label == msg.name:
                break
        else:
            raise UnknownActor(f"supervisor {self.ctx.name!r} has no child named {msg.name!r}")
        self.records.pop(record.cell.id, None)
        self._pending.pop(record.cell.id, None)
        await record.cell.stop("shutdown", check_shutdown(record.spec.shutdown))

    async def which_children(self, msg: _WhichChildren) -> list[ChildInfo]:
        return [
            ChildInfo(
                name=r.cell.label,
                actor_class=r.cell.actor_class.__qualname__,
                state="running"
                if r.cell.instance is not None
                else "backing_off"
                if r.backing_off
                else "restarting",
                restarts=r.cell.restarts,
                supervisor=isinstance(r.spec, Supervisor),
                restart=r.spec.restart,
            )
            for r in self.records.values()
        ]

    async def count_children(self, msg: _CountChildren) -> ChildCounts:
        records = list(self.records.values())
        supervisors = sum(1 for r in records if isinstance(r.spec, Supervisor))
        return ChildCounts(
            specs=1 if isinstance(self.spec.strategy, SimpleOneForOne) else len(records),
            active=sum(1 for r in records if r.cell.instance is not None),
            supervisors=supervisors,
            workers=len(records) - supervisors,
        )


class _Restarted(Exception):
    """Passed to ``on_restart`` when the previous instance ended without an exception."""

    def __init__(self, reason: ExitReason) -> None:
        super().__init__(f"previous instance exited ({reason})")
        self.reason = reason


class SupervisorRef(Ref):
    """A ref to a supervisor, with OTP's child-administration calls."""

    __slots__ = ()

    async def start_child(
        self, *args: Any, name: str | None = None, spec: Child | Supervisor | None = None
    ) -> Ref:
        """Add a child: under SimpleOneForOne from the template, called with ``args``;
        otherwise from ``spec``. Returns its ref once its ``on_start`` returned."""
        if spec is not None and not isinstance(spec, (Child, Supervisor)):
            raise TypeError(f"start_child: spec must be a us.Child or us.Supervisor, not {spec!r}")
        return await self.ask(_StartChild(spec, args, name))

    async def terminate_child(self, name: str) -> None:
        """Stop the child called ``name`` for good (it is not restarted) and forget it."""
        await self.ask(_TerminateChild(name))

    async def which_children(self) -> list[ChildInfo]:
        """Each child's name, class, state, restart count and kind, in start order."""
        return await self.ask(_WhichChildren())

    async def count_children(self) -> ChildCounts:
        """How many specs, running children, supervisors and workers."""
        return await self.ask(_CountChildren())


__all__ = [
    "AutoShutdown",
    "Backoff",
    "Child",
    "ChildBackoff",
    "ChildCounts",
    "ChildInfo",
    "ChildRestarted",
    "Escalated",
    "OneForAll",
    "OneForOne",
    "RestForOne",
    "RestartType",
    "SimpleOneForOne",
    "Strategy",
    "Supervisor",
    "SupervisorActor",
    "SupervisorGaveUp",
    "SupervisorRef",
]

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
  supervisor give up: it stops all its children in reverse start order and exits with reason
  ``shutdown`` and the error :class:`RestartIntensityExceeded`; its own supervisor decides by
  its restart type (a transient supervisor that gave up is not restarted). At the root,
  ``rt.wait()`` returns the error, and leaving ``async with Runtime()`` raises it. One restart
  action counts once (a OneForAll restart of five children is one restart); each failed
  restart attempt counts too, and is retried through the supervisor's mailbox (OTP's
  ``try_again_restart``), so the supervisor answers between attempts.
* Backoff (Akka's ``BackoffSupervisor``, absent from OTP): with ``backoff=Backoff(...)`` the
  n-th consecutive restart of a child waits ``min * factor**n`` seconds (capped at ``max``,
  spread by ``jitter``); the count resets after ``reset_after`` seconds without an exit.
  Messages sent meanwhile wait in the child's mailbox and go to the new instance.
* A restarted child keeps its identity (name, ref, mailbox). The message whose handler
  crashed is not redelivered: it is a dead letter with reason ``crashed``.
* Shutdown: children stop in reverse start order (a SimpleOneForOne supervisor's all at
  once); each gets its ``shutdown`` seconds to finish its message and run ``on_stop``, then
  is killed (reason ``killed``; ``0``: at once unless it stops at once; ``"brutal_kill"``:
  cancelled at once with no stop request, ``on_stop`` not run; ``"infinity"``, the default
  for supervisors: waited for). Supervisors stop their subtree first.
* A child that ends without a restart keeps its spec, stopped (OTP's ``undefined`` pid), for
  ``restart_child``, unless it is temporary or under SimpleOneForOne. An ``on_start`` that
  returns :data:`~understudy.Ignore` declines: the spec is kept the same way, no actor runs.
* Administration (:class:`SupervisorRef`; ``rt.supervisor(name)`` for a nested one):
  ``start_child``, ``terminate_child``, ``restart_child``, ``delete_child``,
  ``which_children``, ``which_child``, ``get_childspec``, ``count_children``. A refused call
  raises in the caller only; the supervisor, its children and its intensity are untouched.
* Significant children (OTP 24): with ``auto_shutdown="any_significant"`` the supervisor
  shuts down (reason ``shutdown``) when a significant child terminates by itself without
  being restarted; with ``"all_significant"``, when no significant child is left running.
  A ``terminate_child`` or a sibling's group restart never triggers it.
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

import anyio
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
from understudy.breaker import Breaker
from understudy.errors import (
    ChildExists,
    ChildNotFound,
    ChildRunning,
    ChildStartFailed,
    NameTaken,
    RestartIntensityExceeded,
    StartIgnored,
    SupervisorError,
)
from understudy.events import Event
from understudy.mailbox import check_capacity, check_overflow
from understudy.messages import ExitReason, Message, Request
from understudy.meter import count_backoff, count_give_up, count_restart, mark_supervisor
from understudy.persistence import DURABILITIES
from understudy.resilience import check_options

logger = logging.getLogger("understudy")

RestartType = Literal["permanent", "transient", "temporary"]
RESTART_TYPES: tuple[RestartType, ...] = ("permanent", "transient", "temporary")
AutoShutdown = Literal["never", "any_significant", "all_significant"]
AUTO_SHUTDOWN: tuple[AutoShutdown, ...] = ("never", "any_significant", "all_significant")

_ABNORMAL = ("failed", "killed")


# ------------------------------------------------------------------------------- the specs


class Backoff:
    """Delay before restarting a child that keeps exiting: ``min * factor**n`` seconds for
    the n-th consecutive restart (n from 0), capped at ``max``, multiplied by a random
    factor in ``[1 - jitter, 1 + jitter]``; n resets after ``reset_after`` quiet seconds."""

    __slots__ = ("_ceiling", "factor", "jitter", "max", "min", "reset_after")

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
        # The first attempt whose delay reaches max: beyond it the exponent is capped.
        self._ceiling = (
            0 if self.factor == 1 else math.ceil(math.log(self.max / self.min, self.factor)) + 1
        )

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before the ``attempt``-th consecutive restart (from 0)."""
        # The exponent stops growing once the delay reached ``max``: ``factor**attempt``
        # would overflow a float after about a thousand consecutive restarts.
        base = min(self.max, self.min * self.factor ** min(attempt, self._ceiling))
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
        if math.isinf(self.within):
            raise ValueError(
                f"{type(self).__name__}(within=) must be a finite number of seconds (OTP: a "
                "positive integer period), not inf"
            )

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


def _check_spawn_options(actor: object, options: dict[str, Any], where: str) -> None:
    """Validate the mailbox and persistence spawn options of a ``Child`` when it is built."""
    if "capacity" in options and options["capacity"] is not None:
        check_capacity(options["capacity"], where)
    if "overflow" in options:
        check_overflow(options["overflow"], where)
    persistent = options.get("persistent")
    if persistent is not None and not isinstance(persistent, bool):
        raise TypeError(f"{where}: persistent must be a bool or None, not {persistent!r}")
    durability = options.get("durability")
    if durability is not None:
        if durability not in DURABILITIES:
            raise ValueError(
                f"{where}: durability must be one of {DURABILITIES}, not {durability!r}"
            )
        if isinstance(actor, type) and not (
            persistent if persistent is not None else getattr(actor, "persistent", False)
        ):
            raise ValueError(f"{where}: durability= applies to persistent actors only")


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
        _check_spawn_options(actor, options, where)
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
            if len(children) != 1:
                raise ValueError(
                    f"{where}: SimpleOneForOne takes exactly one Child or Supervisor spec as "
                    f"its template, got {len(children)}"
                )
            if auto_shutdown != "never":
                raise ValueError(
                    f"{where}: a SimpleOneForOne supervisor cannot auto_shutdown (OTP refuses "
                    "significant children under simple_one_for_one)"
                )
        # No children is fine (OTP): they can come later with start_child.
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


ChildState = Literal["running", "restarting", "backing_off", "stopped"]


class ChildInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One child as ``which_children()`` reports it; ``state`` is ``"stopped"`` for a kept
    spec with no running actor (OTP's ``undefined`` pid: it ended without being restarted,
    was terminated, or its ``on_start`` returned ``us.Ignore``)."""

    name: str
    actor_class: str
    state: ChildState
    restarts: int
    supervisor: bool
    restart: RestartType


class ChildCounts(msgspec.Struct, frozen=True, kw_only=True):
    """``count_children()``: specs (kept ones included), running children, supervisors and
    workers (running or not)."""

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
    """A backoff wait is over: restart the group decided for child ``key``."""

    key: str


class _TryAgain(Message, frozen=True):
    """A restart attempt of child ``key`` failed with ``error``: decide again (OTP's
    ``try_again_restart``), through the mailbox so the supervisor answers in between."""

    key: str
    error: BaseException


class _StartChild(Request[Any], frozen=True):
    spec: Child | Supervisor | None
    args: tuple[Any, ...]
    name: str | None


class _TerminateChild(Request[Any], frozen=True):
    name: str
    cell: Cell | None = None  # rt.stop: only this identity (a no-op if it already ended)


class _RestartChild(Request[Any], frozen=True):
    name: str


class _DeleteChild(Request[Any], frozen=True):
    name: str


class _WhichChild(Request[Any], frozen=True):
    name: str


class _GetChildSpec(Request[Any], frozen=True):
    name: str


class _WhichChildren(Request[Any], frozen=True):
    pass


class _CountChildren(Request[Any], frozen=True):
    pass


class _Refused:
    """An administration call's error, carried back as its reply and raised in the caller
    (OTP's ``{error, Reason}``): the supervisor itself does not fail."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Record:
    """What a supervisor knows of one child: its spec, kept while the child is stopped."""

    __slots__ = (
        "args",
        "backing_off",
        "cell",
        "consecutive",
        "key",
        "last_exit",
        "name",
        "retry",
        "spec",
        "stopping",
    )

    def __init__(
        self, key: str, spec: Child | Supervisor, args: tuple[Any, ...], name: str | None
    ) -> None:
        self.key = key  # the child's id in this supervisor (its name, or its first label)
        self.spec = spec
        self.args = args
        self.name = name
        self.cell: Cell | None = None  # the current (or last) identity; None: never ran
        self.consecutive = 0
        self.last_exit = -math.inf
        self.backing_off = False
        self.stopping = False  # the supervisor itself is ending this instance
        self.retry: _TryAgain | None = None  # the restart attempt waiting in the mailbox

    @property
    def state(self) -> ChildState:
        cell = self.cell
        if cell is None or cell.terminated:
            return "stopped"
        if cell.instance is not None:
            return "running"
        return "backing_off" if self.backing_off else "restarting"


def _actor_of(spec: Child | Supervisor, args: tuple[Any, ...]) -> Callable[[], Actor] | type:
    """How a spec starts a child: the one dispatch point from a spec to what ``spawn_cell``
    runs (a nested supervisor gets the dict that keeps its children's breakers across its
    own restarts)."""
    if isinstance(spec, Supervisor):
        return functools.partial(supervisor_actor(spec), spec, {})
    if args:
        return functools.partial(spec.actor, *args)
    return spec.actor


def _ref_of(cell: Cell) -> Ref:
    return SupervisorRef(cell) if issubclass(cell.actor_class, SupervisorActor) else cell.ref


def supervisor_actor(spec: Supervisor) -> type[SupervisorActor]:
    """The actor class that runs ``spec``: the one dispatch point for specs that are
    supervisors of their own kind (``us.Pool``, ``us.Entities`` set ``runner``)."""
    runner: type[SupervisorActor] = getattr(spec, "runner", SupervisorActor)
    return runner


def _class_name(spec: Child | Supervisor) -> str:
    if isinstance(spec, Supervisor):
        return SupervisorActor.__qualname__
    return str(getattr(spec.actor, "__qualname__", type(spec.actor).__qualname__))


class SupervisorActor(Actor):
    """The actor that runs a :class:`Supervisor` spec (made by ``rt.start``).

    ``breakers`` is shared by every instance of one supervisor identity (the factory holds
    it), so a child's open breaker survives this supervisor's restart.
    """

    def __init__(self, spec: Supervisor, breakers: dict[str, Breaker] | None = None) -> None:
        self.spec = spec
        self.simple = isinstance(spec.strategy, SimpleOneForOne)
        self.records: dict[str, _Record] = {}  # by key, in start order
        self.by_cell: dict[int, _Record] = {}  # the live identities this supervisor restarts
        self.aliases: dict[str, str] = {}  # label -> key, for unnamed children started again
        self.restart_times: deque[float] = deque()
        self.rng = random.Random()
        self.breakers: dict[str, Breaker] = {} if breakers is None else breakers
        # Restarts waiting out a backoff, by the key of the child whose exit caused them.
        self.pending: dict[str, tuple[list[_Record], ExitReason, BaseException | None]] = {}
        self.gave_up = False

    # -- starting --

    async def on_start(self) -> None:
        mark_supervisor(self.ctx._cell)  # metrics: export its give-ups, from zero
        if self.simple:
            return
        try:
            for spec in self.spec.children:
                await self._add(spec, (), spec.name)
        except BaseException:
            await self._stop_all()
            raise

    async def _add(
        self, spec: Child | Supervisor, args: tuple[Any, ...], name: str | None
    ) -> Cell | None:
        """Start a new child (raises what its start raised; nothing is kept then). None: its
        ``on_start`` returned Ignore (the spec is kept stopped, unless temporary/simple)."""
        record = _Record("", spec, args, name)
        try:
            cell = await self._spawn(record)
        except StartIgnored:
            if not (self.simple or spec.restart == "temporary"):
                me = self.ctx._cell
                serial = next(me.system.correlation_ids)
                record.key = name if name is not None else f"{_class_name(spec)}#{serial}"
                self.records[record.key] = record
            return None
        return cell

    async def _spawn(self, record: _Record) -> Cell:
        """A new identity for ``record`` (its first start, or after it stopped)."""
        me = self.ctx._cell
        spec = record.spec
        options = spec.options if isinstance(spec, Child) else {}
        cell = await spawn_cell(
            me.system,
            me,
            _actor_of(spec, record.args),
            name=record.name,
            shutdown=spec.shutdown,
            supervisor=self,
            **options,
        )
        if not record.key:
            record.key = cell.label
            self.records[record.key] = record
        old = record.cell
        if old is not None:
            self.by_cell.pop(old.id, None)
            self.aliases.pop(old.label, None)
        record.cell = cell
        self.by_cell[cell.id] = record
        if cell.label != record.key:
            self.aliases[cell.label] = record.key
        guard = cell.guard
        breaker = guard.breaker if guard is not None else None
        if guard is not None and breaker is not None:
            previous = self.breakers.get(record.key)
            if previous is not None and previous is not breaker:
                breaker.carry_over(previous)  # an open breaker survives our restart
                if breaker.state != "closed":
                    cell.set_gate(guard)
            self.breakers[record.key] = breaker
        return cell

    # -- the Supervising hook (runs in the child's task, synchronously) --

    def child_exited(self, cell: Cell, reason: ExitReason, error: BaseException | None) -> bool:
        me = self.ctx._cell if getattr(self, "ctx", None) is not None else None
        record = self.by_cell.get(cell.id)
        if me is None or me.instance is not self or me.stopping or record is None:
            return False  # this supervisor is ending (or let the child go): it ends for good
        if record.stopping:
            return True  # ended by this supervisor, which restarts it itself
        me.mailbox.put_system(("message", _ChildExited(cell, cell.generation, reason, error)))
        return True

    # -- decisions (in the supervisor's own task, one at a time) --

    async def handle_child_exited(self, msg: _ChildExited) -> None:
        record = self.by_cell.get(msg.cell.id)
        if (
            record is None
            or record.cell is not msg.cell
            or msg.cell.generation != msg.generation
            or msg.cell.instance is not None
            or self.gave_up
        ):
            return  # stale: that instance was already dealt with
        await self._decide(record, msg.reason, msg.error)

    async def handle_try_again(self, msg: _TryAgain) -> None:
        record = self.records.get(msg.key)
        if record is None or record.retry is not msg or self.gave_up:
            return  # terminated or deleted meanwhile
        record.retry = None
        await self._decide(record, "failed", msg.error)

    async def _decide(
        self, record: _Record, reason: ExitReason, error: BaseException | None
    ) -> None:
        spec = record.spec
        restart = spec.restart == "permanent" or (
            spec.restart == "transient" and reason in _ABNORMAL
        )
        me = self.ctx._cell
        label = record.cell.label if record.cell is not None else record.key
        if not restart:
            if error is not None:
                logger.error(
                    "child %r of supervisor %r exited (%s) and is %s: not restarted",
                    label,
                    me.label,
                    reason,
                    spec.restart,
                    exc_info=error,
                    extra={"actor": label, "correlation_id": None},
                )
            self._ended(record, reason, error, own=True)
            return
        now = me.system.clock()
        if self._count_restart(now):
            await self._give_up(error)
            return
        if now - record.last_exit > (spec.backoff.reset_after if spec.backoff else math.inf):
            record.consecutive = 0
        record.last_exit = now
        logger.error(
            "child %r of supervisor %r exited (%s); restarting it",
            label,
            me.label,
            reason,
            exc_info=error,
            extra={"actor": label, "correlation_id": None},
        )
        group = self._group(record)
        for other in reversed(group):
            if other is not record:
                await self._end_instance(other)
        for other in group:
            if other is not record and other.spec.restart == "temporary":
                self._ended(other, "shutdown", None, own=False)
        group = [r for r in group if r is record or r.spec.restart != "temporary"]
        if spec.backoff is not None:
            delay = spec.backoff.delay(record.consecutive, self.rng)
            record.consecutive += 1
            for member in group:
                member.backing_off = True
                if member.cell is not None:
                    count_backoff(member.cell, delay)
            self._publish(
                ChildBackoff(
                    actor=label,
                    supervisor=me.label,
                    delay=delay,
                    attempt=record.consecutive - 1,
                )
            )
            self.ctx.schedule_system(delay, _RestartDue(record.key))
            self.pending[record.key] = (group, reason, error)
            return
        await self._restart_group(group, reason, error)

    async def handle_restart_due(self, msg: _RestartDue) -> None:
        pending = self.pending.pop(msg.key, None)
        if pending is None or self.gave_up:
            return
        group, reason, error = pending
        await self._restart_group([r for r in group if self.records.get(r.key) is r], reason, error)

    def _group(self, record: _Record) -> list[_Record]:
        # OneForAll/RestForOne restart the stopped children of the group too (OTP starts
        # every child of the group whose spec is kept).
        strategy = self.spec.strategy
        if isinstance(strategy, OneForAll):
            return list(self.records.values())
        if isinstance(strategy, RestForOne):
            records = list(self.records.values())
            return records[records.index(record) :]
        return [record]

    async def _restart_group(
        self, group: list[_Record], reason: ExitReason, error: BaseException | None
    ) -> None:
        me = self.ctx._cell
        for record in group:
            record.backing_off = False
            cell = record.cell
            failure: BaseException | None
            try:
                if cell is not None and not cell.terminated:
                    if cell.instance is not None:
                        continue  # already running (e.g. restarted by a later decision)
                    failure = await start_instance(
                        cell, cell.new_instance(), error or _Restarted(reason)
                    )
                else:  # a stopped child of the group: a new identity
                    cell = await self._spawn(record)
                    failure = None
            except Exception as exc:
                failure = exc
            if isinstance(failure, StartIgnored):
                self._ended(record, "normal", None, own=False)  # kept stopped (OTP: ignore)
                continue
            if failure is not None:
                # OTP's try_again_restart: the failed attempt is decided again through the
                # mailbox, counting toward the intensity, so the intensity ends a loop (no
                # recursion). Through the ordinary lane, in turn with administration calls,
                # so the supervisor keeps answering between attempts.
                retry = record.retry = _TryAgain(record.key, failure)
                self.ctx.schedule(0, retry)
                return
            assert cell is not None
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

    def _count_restart(self, now: float) -> bool:
        """Count one restart; True if that exceeds the intensity."""
        strategy = self.spec.strategy
        times = self.restart_times
        times.append(now)
        while times and times[0] <= now - strategy.within:
            times.popleft()
        return len(times) > strategy.max_restarts

    async def _give_up(self, error: BaseException | None) -> None:
        """Intensity exceeded: stop every child and exit with reason ``shutdown`` (OTP); the
        parent decides by this supervisor's restart type, the root ends the runtime."""
        self.gave_up = True
        me = self.ctx._cell
        strategy = self.spec.strategy
        exc = RestartIntensityExceeded(me.label, strategy.max_restarts, strategy.within, error)
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
                error=exc,
            )
        )
        count_give_up(me)
        logger.error(
            "%s",
            exc,
            exc_info=error,
            extra={"actor": me.label, "correlation_id": None},
        )
        await self._stop_all()
        me.mailbox.system.insert(0, ("stop", "shutdown", exc))

    async def _end_instance(self, record: _Record) -> None:
        cell = record.cell
        if cell is None or cell.terminated or cell.instance is None:
            return
        record.stopping = True
        try:
            await cell.end_instance(cell.shutdown)
        finally:
            record.stopping = False

    def _ended(
        self, record: _Record, reason: ExitReason, error: BaseException | None, *, own: bool
    ) -> None:
        """The child's identity ends without a restart; its spec is kept unless temporary
        (or under SimpleOneForOne). ``own``: it ended by itself (not stopped by this
        supervisor for a sibling), which alone can trigger an auto shutdown."""
        cell = record.cell
        if cell is not None:
            self.by_cell.pop(cell.id, None)
            cell.terminate(reason, error)
        self.pending.pop(record.key, None)
        record.backing_off = False
        record.retry = None
        if self.simple or record.spec.restart == "temporary":
            self._drop(record)
        if own and record.spec.significant:
            self._auto_shutdown()

    def _drop(self, record: _Record) -> None:
        self.records.pop(record.key, None)
        self.breakers.pop(record.key, None)
        if record.cell is not None:
            self.aliases.pop(record.cell.label, None)
            self.by_cell.pop(record.cell.id, None)

    def _auto_shutdown(self) -> None:
        policy = self.spec.auto_shutdown
        if policy == "never":
            return
        if policy == "all_significant" and any(
            r.spec.significant and r.state != "stopped" for r in self.records.values()
        ):
            return
        self.ctx._cell.mailbox.put_system(("stop", "shutdown"))

    async def _stop_all(self) -> None:
        # Let go of them first: a child this supervisor no longer restarts ends for good
        # when it exits, instead of being handed back for a restart.
        self.by_cell.clear()
        self.pending.clear()
        cells = [
            r.cell for r in self.records.values() if r.cell is not None and not r.cell.terminated
        ]
        if self.simple:
            # OTP stops a simple_one_for_one supervisor's children concurrently: they are
            # alike and have no order.
            async with anyio.create_task_group() as tg:
                for cell in cells:
                    tg.start_soon(cell.stop, "shutdown", cell.shutdown)
        else:
            for cell in reversed(cells):
                await cell.stop("shutdown", cell.shutdown)

    async def _stop_children(self) -> None:
        """Cell.run's hook when this instance stops: our rules, then anything else linked."""
        await self._stop_all()
        await self.ctx._cell.stop_children()

    def _publish(self, event: Event) -> None:
        events = self.ctx._cell.system.events
        if events.active:
            events.publish(event)

    # -- requests from SupervisorRef: errors are replies, never this supervisor's failure --

    def _find(self, name: str) -> _Record:
        record = self.records.get(name)
        if record is None:
            key = self.aliases.get(name)
            record = self.records.get(key) if key is not None else None
        if record is None:
            raise ChildNotFound(
                f"supervisor {self.ctx.name!r} has no child named {name!r}",
                self.ctx.name,
                name,
            )
        return record

    def _not_simple(self, call: str) -> None:
        if self.simple:
            raise SupervisorError(
                f"supervisor {self.ctx.name!r} is SimpleOneForOne: {call} does not apply "
                "(its children are not kept once stopped; use start_child)",
                self.ctx.name,
                None,
            )

    async def start_child(self, msg: _StartChild) -> Any:
        try:
            return await self._start_child(msg)
        except Exception as exc:
            return _Refused(exc)

    async def _start_child(self, msg: _StartChild) -> Ref | None:
        me = self.ctx._cell
        if self.simple:
            if msg.spec is not None:
                raise TypeError(
                    f"supervisor {me.label!r} is SimpleOneForOne: pass the template's "
                    "arguments to start_child, not a spec"
                )
            spec = self.spec.children[0]
            if isinstance(spec, Supervisor) and msg.args:
                raise TypeError(
                    f"supervisor {me.label!r}: its template is a Supervisor spec, which takes "
                    "no arguments"
                )
            args, name = msg.args, msg.name
        else:
            if msg.spec is None or msg.args or msg.name is not None:
                raise TypeError(
                    f"supervisor {me.label!r} is {type(self.spec.strategy).__name__}: "
                    "start_child takes one Child or Supervisor spec (spec=...)"
                )
            spec, args, name = msg.spec, (), msg.spec.name
            if spec.significant and self.spec.auto_shutdown == "never":
                raise ValueError(
                    f"supervisor {me.label!r}: a significant child needs "
                    "auto_shutdown='any_significant' or 'all_significant' (OTP refuses it "
                    "under 'never')"
                )
        if name is not None and (name in self.records or name in self.aliases):
            running = self._find(name).state == "running"  # else OTP's already_present
            raise ChildExists(
                f"supervisor {me.label!r} already has a child named {name!r} "
                + ("(running)" if running else "(stopped: restart_child or delete_child it)"),
                me.label,
                name,
                running,
            )
        try:
            cell = await self._add(spec, args, name)
        except NameTaken:
            raise  # held by an actor outside this supervisor
        except Exception as exc:
            raise ChildStartFailed(
                f"supervisor {me.label!r}: child {name or _class_name(spec)!r} failed to "
                f"start ({type(exc).__name__}; see __cause__)",
                me.label,
                name,
            ) from exc
        return None if cell is None else _ref_of(cell)

    async def terminate_child(self, msg: _TerminateChild) -> Any:
        try:
            record = self._find(msg.name)
        except ChildNotFound as exc:
            return None if msg.cell is not None else _Refused(exc)
        if msg.cell is not None and record.cell is not msg.cell:
            return None  # rt.stop of an identity that already ended: nothing to do
        record.retry = None
        record.backing_off = False
        self.pending.pop(record.key, None)
        cell = record.cell
        if cell is not None:
            self.by_cell.pop(cell.id, None)  # its exit is for good now
            await cell.stop("shutdown", cell.shutdown)
        if self.simple or record.spec.restart == "temporary":
            self._drop(record)
        return None

    async def restart_child(self, msg: _RestartChild) -> Any:
        try:
            self._not_simple("restart_child")
            record = self._find(msg.name)
            state = record.state
            if state != "stopped":
                raise ChildRunning(
                    f"supervisor {self.ctx.name!r}: child {msg.name!r} is {state}; "
                    "restart_child starts a stopped child",
                    self.ctx.name,
                    msg.name,
                    state,
                )
            try:
                cell = await self._spawn(record)
            except StartIgnored:
                return None
            except NameTaken:
                raise
            except Exception as exc:
                raise ChildStartFailed(
                    f"supervisor {self.ctx.name!r}: child {msg.name!r} failed to start "
                    f"({type(exc).__name__}; see __cause__)",
                    self.ctx.name,
                    msg.name,
                ) from exc
            return _ref_of(cell)
        except Exception as exc:
            return _Refused(exc)

    async def delete_child(self, msg: _DeleteChild) -> Any:
        try:
            self._not_simple("delete_child")
            record = self._find(msg.name)
            state = record.state
            if state != "stopped":
                raise ChildRunning(
                    f"supervisor {self.ctx.name!r}: child {msg.name!r} is {state}; "
                    "terminate_child it before delete_child",
                    self.ctx.name,
                    msg.name,
                    state,
                )
            self._drop(record)
            return None
        except Exception as exc:
            return _Refused(exc)

    def _info(self, r: _Record) -> ChildInfo:
        cell = r.cell
        return ChildInfo(
            name=cell.label if cell is not None else r.key,
            actor_class=cell.actor_class.__qualname__ if cell is not None else _class_name(r.spec),
            state=r.state,
            restarts=cell.restarts if cell is not None else 0,
            supervisor=isinstance(r.spec, Supervisor),
            restart=r.spec.restart,
        )

    async def which_children(self, msg: _WhichChildren) -> list[ChildInfo]:
        return [self._info(r) for r in self.records.values()]

    async def which_child(self, msg: _WhichChild) -> Any:
        try:
            return self._info(self._find(msg.name))
        except ChildNotFound as exc:
            return _Refused(exc)

    async def get_childspec(self, msg: _GetChildSpec) -> Any:
        try:
            return self._find(msg.name).spec
        except ChildNotFound as exc:
            return _Refused(exc)

    async def count_children(self, msg: _CountChildren) -> ChildCounts:
        records = list(self.records.values())
        supervisors = sum(1 for r in records if isinstance(r.spec, Supervisor))
        return ChildCounts(
            specs=1 if self.simple else len(records),
            active=sum(1 for r in records if r.state == "running"),
            supervisors=supervisors,
            workers=len(records) - supervisors,
        )


class _Restarted(Exception):
    """Passed to ``on_restart`` when the previous instance ended without an exception."""

    def __init__(self, reason: ExitReason) -> None:
        super().__init__(f"previous instance exited ({reason})")
        self.reason = reason


def _answer(result: Any) -> Any:
    if isinstance(result, _Refused):
        raise result.error
    return result


class SupervisorRef(Ref):
    """A ref to a supervisor, with OTP's child-administration calls. A refused call raises
    in the caller only (a :class:`~understudy.SupervisorError` subclass, or the ``TypeError``
    / ``ValueError`` of a bad argument); the supervisor, its children and its restart
    intensity are untouched. ``timeout`` bounds the wait for the supervisor's reply."""

    __slots__ = ()

    async def start_child(
        self,
        *args: Any,
        name: str | None = None,
        spec: Child | Supervisor | None = None,
        timeout: float | None = None,
    ) -> Ref | None:
        """Add a child: under SimpleOneForOne from the template, called with ``args``;
        otherwise from ``spec``. Returns its ref (a :class:`SupervisorRef` for a supervisor)
        once its ``on_start`` returned, or None if that returned ``us.Ignore``. Raises
        :class:`ChildStartFailed` (its start raised: ``__cause__``), :class:`ChildExists`,
        :class:`NameTaken` (the name is held by an actor outside this supervisor)."""
        if spec is not None and not isinstance(spec, (Child, Supervisor)):
            raise TypeError(f"start_child: spec must be a us.Child or us.Supervisor, not {spec!r}")
        result: Ref | None = _answer(await self.ask(_StartChild(spec, args, name), timeout=timeout))
        return result

    async def terminate_child(self, name: str, *, timeout: float | None = None) -> None:
        """Stop the child called ``name`` (not restarted). Its spec is kept, stopped, for
        :meth:`restart_child` (a temporary or SimpleOneForOne child's is dropped). Raises
        :class:`ChildNotFound`. Returns at once for a child already stopped."""
        _answer(await self.ask(_TerminateChild(_name(name, "terminate_child")), timeout=timeout))

    async def restart_child(self, name: str, *, timeout: float | None = None) -> Ref | None:
        """Start the stopped child ``name`` again from its kept spec; its ref, or None if its
        ``on_start`` returned ``us.Ignore``. Raises :class:`ChildNotFound`,
        :class:`ChildRunning`, :class:`ChildStartFailed`; :class:`SupervisorError` under
        SimpleOneForOne."""
        result: Ref | None = _answer(
            await self.ask(_RestartChild(_name(name, "restart_child")), timeout=timeout)
        )
        return result

    async def delete_child(self, name: str, *, timeout: float | None = None) -> None:
        """Forget the stopped child ``name`` and its spec. Raises :class:`ChildNotFound`,
        :class:`ChildRunning`; :class:`SupervisorError` under SimpleOneForOne."""
        _answer(await self.ask(_DeleteChild(_name(name, "delete_child")), timeout=timeout))

    async def which_children(self, *, timeout: float | None = None) -> list[ChildInfo]:
        """Each child's name, class, state, restart count and kind, in start order (stopped
        children whose spec is kept included)."""
        return await self.ask(_WhichChildren(), timeout=timeout)

    async def which_child(self, name: str, *, timeout: float | None = None) -> ChildInfo:
        """The child ``name`` as :meth:`which_children` reports it. Raises
        :class:`ChildNotFound`."""
        result: ChildInfo = _answer(
            await self.ask(_WhichChild(_name(name, "which_child")), timeout=timeout)
        )
        return result

    async def get_childspec(self, name: str, *, timeout: float | None = None) -> Child | Supervisor:
        """The spec the child ``name`` was started from. Raises :class:`ChildNotFound`."""
        result: Child | Supervisor = _answer(
            await self.ask(_GetChildSpec(_name(name, "get_childspec")), timeout=timeout)
        )
        return result

    async def count_children(self, *, timeout: float | None = None) -> ChildCounts:
        """How many specs, running children, supervisors and workers."""
        return await self.ask(_CountChildren(), timeout=timeout)


def _name(name: object, call: str) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"{call}: name must be a non-empty str, not {name!r}")
    return name


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

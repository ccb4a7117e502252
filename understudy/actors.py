"""Actors: the :class:`Actor` base class, the public constants, and what the layers share.

An actor is a subclass of :class:`Actor` whose ``async def`` methods take one message each;
its handler table is built when the class is created (:mod:`understudy.dispatch`). This
module also holds the constants of the runtime's actor semantics (:data:`BATCH`,
:data:`DEFAULT_SHUTDOWN`, :data:`ANSWERS`, :data:`ALWAYS_ANSWERS`, :data:`Ignore`,
:data:`BRUTAL_KILL`), the shape of a mailbox's items (:data:`Envelope`, :data:`Limits`),
and the protocols by which a cell reaches the runtime, its guard and its store
(:class:`ActorSystem`, :class:`Guarding`, :class:`Persistence`).

The rest lives one layer up each, and every layer imports only those below it at run time:
:mod:`understudy.refs` (refs, tell and ask, what a send inherits), :mod:`understudy.context`
(``self.ctx``, timers), :mod:`understudy.delivery` (a cell's sending side: overflow,
gates, dead letters) and :mod:`understudy.cell` (the cell: serve loop, system messages,
lifecycle, kill and stop, spawning). Their names are importable from here too, as before
the split (resolved on first use, so that this module imports none of them).
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, Protocol, TypeVar

import msgspec

from understudy._checks import positive
from understudy.dispatch import Handler as Handler
from understudy.dispatch import _build_handlers, _check_state
from understudy.dispatch import resolve_handler as resolve_handler
from understudy.errors import (
    BudgetExceeded,
    CircuitOpen,
    DeadlineExceeded,
    HandlerCancelled,
    UnderstudyError,
)
from understudy.events import DeadLetters, EventStream
from understudy.messages import ExitReason, Message

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from understudy.breaker import Breaker
    from understudy.budgets import Budget
    from understudy.deadlines import Watchdog

    # The upper layers' names, as mypy sees them here (at run time: __getattr__ below).
    # isort: off
    from understudy.refs import (
        Ref as Ref,
        Reply as Reply,
        Scope as Scope,
        _bounded as _bounded,
        _cell_of as _cell_of,
        _check_timeout as _check_timeout,
        _current as _current,
        sender as sender,
    )
    from understudy.context import (
        Context as Context,
        Timer as Timer,
    )
    from understudy.delivery import (
        TIMEOUT_REASONS as TIMEOUT_REASONS,
        redeliver as redeliver,
    )
    from understudy.cell import (
        CUT_GRACE as CUT_GRACE,
        Cell as Cell,
        Supervising as Supervising,
        actor_class_of as actor_class_of,
        check_shutdown as check_shutdown,
        open_scope as open_scope,
        spawn_cell as spawn_cell,
        start_instance as start_instance,
        vacancy as vacancy,
    )
    # isort: on

logger = logging.getLogger("understudy")

R = TypeVar("R")
A = TypeVar("A", bound="Actor")

Limits = tuple[float, "Budget | None", float]
"""A message's limits: (deadline or 0.0, budget or None, start-by time or 0.0).

The deadline is the runtime clock's time by which the request the message belongs to must
be answered (:meth:`Ref.ask`); the budget is the :class:`~understudy.Budget` it is charged
to; both are inherited by every message sent while it is handled. The start-by time is set
for actors with a ``queue_timeout`` (the latest its handler may start)."""

Envelope = tuple[Message, Handler, "Reply | None", int, float, Limits | None]
"""What a mailbox holds: (message, its handler, the asker's reply slot or None, correlation id,
enqueue time or 0.0 when the message was not stamped — see :mod:`understudy.meter` —,
limits or None). A plain tuple: the cheapest thing to build and unpack on the hot path.
The limits are one field (None for a message without deadline, budget or queue timeout),
so that a plain message pays one ``is None`` for all of them: three more fields cost the
tell benchmark about 3 %, this one about 1 %."""
Idle = tuple[None, None, None, int, float, Limits | None]
"""``Cell.current`` outside a user message: correlation id and limits are meaningful
(those of a Terminated notification or a lifecycle hook: none)."""

BATCH = 100
"""Messages an actor handles back to back before it yields to the scheduler, so one busy
actor cannot starve the others (Akka's ``throughput``)."""

DEFAULT_SHUTDOWN = 5.0
"""Seconds a stopping actor gets to finish its message and run ``on_stop`` before it is
cancelled."""


Answers = tuple[type[BaseException], ...]

ANSWERS: Answers = (ValueError, TimeoutError, ConnectionError, UnderstudyError)
"""The exceptions a handler of the base :class:`Actor` *answers* with instead of crashing
(``Actor.answers``; ``answers=`` on spawn and ``us.Child``). ``ValueError`` is how Python
code refuses a request it cannot serve (bad input, insufficient funds); ``TimeoutError`` and
``ConnectionError`` are what a tool or a remote service fails with; :class:`UnderstudyError`
is the runtime's own answer to a call the handler made (a nested ask that timed out, hit an
open circuit or a spent budget, a stopped actor). None of them says the actor's own state
is broken. Everything else (``KeyError``, ``AttributeError``, ``AssertionError``, a
``RuntimeError``…) is a crash, as in OTP."""

ALWAYS_ANSWERS: Answers = (BudgetExceeded, DeadlineExceeded, CircuitOpen, HandlerCancelled)
"""Answers whatever ``answers`` says: limits of the *caller* (its budget, its deadline, an
open circuit further down) and a cancellation the handler caused itself."""


def check_answers(answers: object, where: str) -> Answers:
    """``answers`` as a tuple of exception classes; ``TypeError`` naming ``where`` else."""
    if isinstance(answers, type) and issubclass(answers, BaseException):
        answers = (answers,)
    if not isinstance(answers, tuple) or not all(
        isinstance(tp, type) and issubclass(tp, Exception) for tp in answers
    ):
        raise TypeError(
            f"{where}: answers must be a tuple of exception classes (Exception subclasses), "
            f"not {answers!r}"
        )
    return answers


# supervision (wave 2): OTP's `ignore` start result and `brutal_kill` shutdown.
class IgnoreType:
    """The type of :data:`Ignore` (a single value)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "us.Ignore"


Ignore: Final = IgnoreType()
"""Returned by ``on_start`` to decline to start (OTP's ``ignore``): no actor runs. Under a
supervisor the child's spec is kept, not running (a temporary child's is dropped); from
``rt.spawn`` it raises :class:`StartIgnored`."""

BRUTAL_KILL = -1.0
"""The grace of ``shutdown="brutal_kill"``: killed at once, no stop request, no ``on_stop``
(a negative number, so that ``shutdown=0``, "stop at once or be killed", stays distinct)."""


class Guarding(Protocol):
    """A cell's guard: its circuit breaker and time limits (``understudy.resilience``).

    A cell without one (``Cell.guard is None``) pays nothing for them. ``cell.gate`` is the
    guard while sends must pass through :meth:`admit` (an open breaker, a queue timeout),
    else None: a closed breaker costs senders nothing.
    """

    breaker: Breaker | None

    def admit(self, cell: Cell, envelope: Envelope) -> Envelope:
        """At the send: refuse (dead letter, raise :class:`CircuitOpen`) or pass it on."""
        ...

    def refuse(self, cell: Cell, msg: Message) -> None:
        """Before an ask is made: raise :class:`CircuitOpen` (a dead letter) if the breaker
        refuses whatever comes; else nothing (:meth:`admit` follows)."""
        ...

    def watching(self) -> bool:
        """Whether handling a message needs :meth:`run` now (else the plain handler call)."""
        ...

    async def run(self, cell: Cell, handler: Handler, instance: Actor, envelope: Envelope) -> Any:
        """Handle the message under the breaker and time limits; :data:`SKIPPED` when it
        must not run (an open breaker: it was dead-lettered)."""
        ...

    def failed(self, cell: Cell, error: BaseException) -> str:
        """The handler raised ``error``: count it; the dead-letter reason of its message."""
        ...

    def own_limit(self, error: BaseException) -> bool:
        """Whether ``error`` is this guard's own time limit cutting the handler (a crash,
        whatever the actor's answers say)."""
        ...

    def interrupted(self) -> None:
        """The handler was cancelled from outside (kill, shutdown)."""
        ...

    def heartbeat(self) -> None:
        """The handler shows progress (``ctx.heartbeat()``)."""
        ...


class ActorSystem(Protocol):
    """What a cell needs from the runtime that owns it (the runtime implements this)."""

    correlation_ids: Iterator[int]
    watchdog: Watchdog
    events: EventStream
    dead_letters: DeadLetters
    default_capacity: int
    clock: Callable[[], float]
    closed: bool
    shutting_down: bool
    metered: bool

    @property
    def task_group(self) -> TaskGroup: ...

    def register(self, cell: Cell) -> None: ...

    def unregister(self, cell: Cell) -> None: ...

    def ref(self, name: str) -> Ref:
        """A ref bound to ``name`` (see :class:`Ref`)."""
        ...

    def holder(self, name: str) -> Cell | None:
        """The live identity called ``name``, or None. Never blocks."""
        ...

    async def await_name(self, name: str, deadline: float) -> Cell:
        """The live identity called ``name``, waiting for one to start (until ``deadline``
        if nonzero, else the runtime's ``name_wait``)."""
        ...

    def guard(
        self,
        cell: Cell,
        breaker: Breaker | None,
        timeout: float | None,
        queue_timeout: float | None,
        idle_timeout: float | None,
    ) -> Guarding:
        """Validate the resilience options of a spawn and make the cell's guard."""
        ...

    def persistence(self, cell: Cell, durability: Durability | None) -> Persistence:
        """Make ``cell`` persistent (the runtime's store); raises a clear error if it cannot."""
        ...


# ------------------------------------------------------------------------------ persistence

Durability = Literal["commit", "async"]
"""When a persistent actor's ask is answered: ``"commit"`` (default) after the snapshot with
the message's effects is committed; ``"async"`` at once, the commit following soon after."""


PERSISTENCE_FAILED = "persistence_failed"
"""System-lane item kind ``(PERSISTENCE_FAILED, error, generation)``: a write of that
instance of a persistent actor failed, and the instance must fail."""


class Persistence(Protocol):
    """A persistent cell's link to its store (implemented by ``understudy.persistence``).

    A cell without one (``Cell.persistence is None``) pays one ``is None`` per message for
    persistence in the serve loop (:meth:`Cell.serve`), which calls these hooks."""

    @property
    def pipeline(self) -> bool:
        """False: the loop waits for each message's commit before the next
        (:meth:`committed`)."""
        ...

    generation: int
    """Instances restored so far (a failure notice about an older one is stale)."""

    def completed(
        self, state: Any, reply: Reply | None, result: Any, envelope: Envelope | None = None
    ) -> None:
        """A message (or system item) completed: queue what it changed; answer ``reply``
        now or after the commit (``envelope``: the message's, a dead letter
        ``commit_failed`` if that commit fails). Raises if the state cannot be encoded."""
        ...

    async def committed(self) -> None:
        """Wait until what this actor queued is committed."""
        ...

    async def rollback(self, instance: Actor) -> None:
        """A message failed without crashing the actor (an answer, a cut handler): undo
        its changes to ``instance.state`` (back to the last completed message)."""
        ...

    async def restore(self, instance: Actor) -> None:
        """Set the state a new instance starts from (latest committed or ``State()``)."""
        ...

    def persist(self, instance: Actor, event: Any) -> None:
        """Apply ``event`` to ``instance`` and journal it (event-sourced actors)."""
        ...

    async def serve(self, cell: Cell, instance: Actor) -> tuple[ExitReason, BaseException | None]:
        """The serve loop of a persistent cell (snapshots each completed message)."""
        ...


# --------------------------------------------------------------------------------- handlers


class Actor:
    """Base class of actors.

    Write one ``async def`` method per message type, annotated with the type it handles::

        class Account(us.Actor):
            class State(msgspec.Struct):
                balance: int = 0

            async def deposit(self, msg: Deposit) -> None:
                self.state.balance += msg.amount

            async def balance(self, msg: GetBalance) -> int:
                return self.state.balance

    An actor handles one message at a time, in order. ``self.state`` is a fresh ``State()``
    for every new instance (a restart included) when the class declares ``State`` — for a
    persistent actor (``persistent = True``), its last committed snapshot instead;
    ``self.ctx`` is the actor's :class:`Context`. Override :meth:`on_start`,
    :meth:`on_stop` and :meth:`on_restart` for lifecycle work.
    """

    State: ClassVar[type[msgspec.Struct] | None] = None
    persistent: ClassVar[bool] = False
    """Spawn this class persistent by default (``persistent=`` on spawn overrides it)."""
    durability: ClassVar[Durability] = "commit"
    """Default durability of this class when persistent (``durability=`` on spawn overrides)."""
    answers: ClassVar[Answers] = ANSWERS
    """Exceptions a handler *answers* with instead of crashing (``answers=`` on spawn
    overrides): raised in the asker as any error, but the actor keeps its state (a
    persistent actor's changes from that message are rolled back), is not restarted, and
    its supervisor's restart intensity is untouched. They still count as failures for the
    actor's breaker, for ``understudy_messages_total{outcome="error"}`` and as
    :class:`~understudy.ErrorAnswered` events; a ``tell`` answered so is a dead letter with
    reason ``error``. :data:`ALWAYS_ANSWERS` are answers whatever this says. Any other
    exception is a crash. Default: :data:`ANSWERS`."""
    _handlers: ClassVar[dict[type, Handler]] = {}
    _declared: ClassVar[frozenset[type]] = frozenset()

    state: Any
    ctx: Context

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        state = cls.__dict__.get("State")
        if state is not None and not (
            isinstance(state, type) and issubclass(state, msgspec.Struct)
        ):
            raise TypeError(f"{cls.__qualname__}.State must be a msgspec.Struct subclass")
        if state is not None:
            _check_state(cls, state)
        if "answers" in cls.__dict__:
            check_answers(cls.answers, f"{cls.__qualname__}.answers")
        # String annotations (``from __future__ import annotations``) may name message types
        # local to the function that defines the actor: resolve them in that namespace too.
        caller = sys._getframe(1)
        while caller.f_code.co_name == "__init_subclass__" and caller.f_back is not None:
            caller = caller.f_back  # a subclass's own __init_subclass__ called super()
        cls._handlers = _build_handlers(cls, {**caller.f_globals, **caller.f_locals})
        cls._declared = frozenset(cls._handlers)

    async def on_start(self) -> IgnoreType | None:
        """Called before the instance handles its first message (after every restart too).

        Raising here fails the start: ``spawn`` raises the exception to its caller.
        Returning :data:`Ignore` declines to start (see there).
        """
        return None

    async def on_stop(self) -> None:
        """Called when the instance stops gracefully or fails (not when it is killed), after
        its children have stopped. Bounded by the actor's shutdown time."""

    async def on_restart(self, error: BaseException | None) -> None:
        """Called on a new instance made by a supervisor's restart, before :meth:`on_start`;
        ``error`` is why the previous instance ended."""


class _Alarm:
    """The watchdog entry kind by which a cell is woken at a handler deadline."""

    __slots__ = ()


ALARM: Any = _Alarm()


check_positive = positive
"""``value`` as a float if it is a positive number; otherwise a clear error."""


SKIPPED: Any = object()
"""What :meth:`Guarding.run` returns for a message it refused instead of handling."""


# Names that moved to the upper layers, importable from here as before the split. Resolved
# on first use (PEP 562) and then cached in this module, so that importing this module
# imports none of those (they import it) and a from-import binds the object itself: no
# indirection is left on any hot path.
_MOVED: Final = {
    "Ref": "understudy.refs",
    "Reply": "understudy.refs",
    "Scope": "understudy.refs",
    "_bounded": "understudy.refs",
    "_cell_of": "understudy.refs",
    "_check_timeout": "understudy.refs",
    "_current": "understudy.refs",
    "sender": "understudy.refs",
    "Context": "understudy.context",
    "Timer": "understudy.context",
    "TIMEOUT_REASONS": "understudy.delivery",
    "redeliver": "understudy.delivery",
    "CUT_GRACE": "understudy.cell",
    "Cell": "understudy.cell",
    "Supervising": "understudy.cell",
    "actor_class_of": "understudy.cell",
    "check_shutdown": "understudy.cell",
    "open_scope": "understudy.cell",
    "spawn_cell": "understudy.cell",
    "start_instance": "understudy.cell",
    "vacancy": "understudy.cell",
}

if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        module = _MOVED.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value


__all__ = [
    "BATCH",
    "TIMEOUT_REASONS",
    "DEFAULT_SHUTDOWN",
    "BRUTAL_KILL",
    "Ignore",
    "IgnoreType",
    "Actor",
    "ActorSystem",
    "Cell",
    "Context",
    "Guarding",
    "Limits",
    "SKIPPED",
    "Durability",
    "Persistence",
    "Ref",
    "Scope",
    "Reply",
    "Timer",
    "resolve_handler",
    "spawn_cell",
]

"""Actors, refs, contexts, and the cell that runs an actor identity.

An actor is a subclass of :class:`Actor` whose ``async def`` methods take one message each;
the message parameter's annotation (a message type, or a union of them) decides which
messages the method handles. The table from message type to handler is built once, when the
class is created, and dispatch is one dict lookup on ``type(msg)``.

A *cell* is an actor identity: its name, mailbox, children, watchers, counters and (with the
resilience options of spawn) its guard: circuit breaker and time limits. A cell outlives the
actor instances that serve it, so a ref stays valid across a supervisor's restarts. Each
instance runs as one task in the runtime's task group, inside a cancel scope of its own
(which is how a kill or a shutdown timeout reaches it).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import sys
import types
import typing
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, Protocol, TypeVar, Union

import anyio
import anyio.lowlevel
import msgspec

from understudy._checks import check_name, positive
from understudy.errors import (
    ActorStopped,
    BudgetExceeded,
    ChildFailed,
    CircuitOpen,
    DeadlineExceeded,
    HandlerCancelled,
    Killed,
    MailboxFull,
    QueueTimeout,
    RuntimeClosed,
    StartIgnored,
    UnderstudyError,
    UnknownActor,
)
from understudy.events import (
    ActorFailed,
    ActorStarted,
    ActorTerminated,
    DeadLetter,
    DeadLetters,
    ErrorAnswered,
    EventStream,
)
from understudy.mailbox import Mailbox, Overflow, check_capacity, check_overflow
from understudy.messages import ExitReason, Message, Request, Terminated, check_message_type
from understudy.meter import Meter

if TYPE_CHECKING:
    from anyio.abc import TaskGroup, TaskStatus

    from understudy.breaker import Breaker
    from understudy.budgets import Budget
    from understudy.deadlines import Watchdog
    from understudy.fallback import Retry

logger = logging.getLogger("understudy")

R = TypeVar("R")
A = TypeVar("A", bound="Actor")

Handler = Callable[[Any, Any], Awaitable[Any]]
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

_LIFECYCLE = frozenset({"on_start", "on_stop", "on_restart"})

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


def _message_types(
    owner: type, attr: str, fn: Callable[..., Any], localns: dict[str, Any]
) -> tuple[type[Message], ...]:
    """The message types ``fn`` handles, or () if it is not a handler."""
    params = list(inspect.signature(fn).parameters.values())
    if len(params) < 2:
        return ()
    annotation = params[1].annotation
    if annotation is inspect.Parameter.empty:
        return ()
    if isinstance(annotation, str):
        try:
            annotation = typing.get_type_hints(fn, localns=localns)[params[1].name]
        except Exception as exc:
            raise TypeError(
                f"{owner.__qualname__}.{attr}: cannot resolve the annotation {annotation!r} "
                f"({exc}); define the message type before the actor class"
            ) from exc
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        candidates = typing.get_args(annotation)
    else:
        candidates = (annotation,)
    found = []
    for candidate in candidates:
        candidate = typing.get_origin(candidate) or candidate  # Request[int] -> Request
        if isinstance(candidate, type) and issubclass(candidate, Message):
            found.append(candidate)
    if not found:
        return ()
    if len(found) != len(candidates):
        raise TypeError(
            f"{owner.__qualname__}.{attr}: every member of the union {annotation!r} must be a "
            "message type"
        )
    required = [
        p
        for p in params[2:]
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if required:
        raise TypeError(
            f"{owner.__qualname__}.{attr}: a handler takes exactly one message; "
            f"it also requires {[p.name for p in required]}"
        )
    for tp in found:
        check_message_type(tp)
    return tuple(found)


def _check_state(cls: type, state: type[msgspec.Struct]) -> None:
    """Every field of a ``State`` needs a default: a new instance starts from ``State()``."""
    required = [field.name for field in msgspec.structs.fields(state) if field.required]
    if required:
        raise TypeError(
            f"{cls.__qualname__}.State: field(s) {required} have no default; every new "
            "instance (a restart included) starts from State(), so give each field a default "
            "(or a default_factory) and set real values in on_start"
        )


def _reply_type(tp: type[Message]) -> Any:
    """The ``R`` of a ``Request[R]`` subclass, or None when it is not one (or is generic)."""
    for klass in tp.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            if typing.get_origin(base) is Request:
                (arg,) = typing.get_args(base)
                return None if isinstance(arg, TypeVar) else arg
    return None


def _check_return(owner: type, attr: str, fn: Callable[..., Any], tp: type, localns: Any) -> None:
    """Refuse a handler whose return annotation is not its request's reply type."""
    expected = _reply_type(tp)
    if expected is None or expected is Any:
        return
    try:
        hints = typing.get_type_hints(fn, localns=localns)
    except Exception:  # an unresolvable annotation: mypy's business, not the runtime's
        return
    if "return" not in hints:
        return
    got = hints["return"]
    if got is Any or got == expected:
        return
    if expected is type(None) and got is None:
        return
    if isinstance(got, type) and isinstance(expected, type) and issubclass(got, expected):
        return
    expected_args = typing.get_args(expected)
    if typing.get_origin(expected) in (Union, types.UnionType) and got in expected_args:
        return
    name = getattr(expected, "__qualname__", None) or repr(expected)
    got_name = getattr(got, "__qualname__", None) or repr(got)
    raise TypeError(
        f"{owner.__qualname__}.{attr}() returns {got_name}, but {tp.__qualname__} is a "
        f"Request[{name}]: its handler must return {name}"
    )


def _build_handlers(cls: type[Actor], localns: dict[str, Any]) -> dict[type, Handler]:
    handlers: dict[type, Handler] = {}
    names: dict[type, str] = {}
    seen: set[str] = set()
    for klass in cls.__mro__:
        for attr in vars(klass):
            if attr in seen or attr.startswith("_") or attr in _LIFECYCLE:
                continue
            seen.add(attr)
            fn = getattr(cls, attr)
            if not inspect.iscoroutinefunction(fn):
                continue
            found = _message_types(cls, attr, fn, localns)
            for tp in found:
                if len(found) == 1:
                    _check_return(cls, attr, fn, tp, localns)
                if tp in handlers:
                    raise TypeError(
                        f"{cls.__qualname__}: {tp.__qualname__} is handled by both "
                        f"{names[tp]}() and {attr}(); one message type, one handler"
                    )
                handlers[tp] = fn
                names[tp] = attr
    return handlers


def _accepted(cls: type[Actor]) -> str:
    names = sorted({tp.__qualname__ for tp in cls._declared})
    return ", ".join(names) if names else "no messages"


def resolve_handler(cls: type[Actor], msg: object, label: str) -> Handler:
    """The handler of ``cls`` for ``msg`` (slow path of dispatch: first sight of a type).

    Raises ``TypeError`` naming the actor and the types it accepts when there is none.
    """
    tp = type(msg)
    if not isinstance(msg, Message):
        raise TypeError(
            f"{tp.__module__}.{tp.__qualname__} is not a message (sent to actor {label!r}); "
            "messages are frozen subclasses of understudy.Message or understudy.Request"
        )
    check_message_type(tp)
    for base in tp.__mro__[1:]:
        handler = cls._handlers.get(base)
        if handler is not None:
            cls._handlers[tp] = handler  # cache: the next message of this type is one lookup
            return handler
    raise TypeError(
        f"actor {label!r} ({cls.__qualname__}) has no handler for {tp.__qualname__}; "
        f"it accepts: {_accepted(cls)}"
    )


# ------------------------------------------------------------------------------------ actor


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


# ------------------------------------------------------------------------------- ask/tell


class Reply:
    """The asker's reply slot: set once, by the actor or by the runtime on its behalf."""

    __slots__ = ("error", "event", "value")

    def __init__(self) -> None:
        self.event = anyio.Event()
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


# ---------------------------------------------------------------------------------- timers


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


# --------------------------------------------------------------------------------- context


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


def _cell_of(ref: object, where: str) -> Cell:
    """The identity ``ref`` reaches now (a name ref's current holder, if any)."""
    if not isinstance(ref, Ref):
        raise TypeError(f"{where}: expected a Ref, not {ref!r}")
    if ref._name is not None:
        ref.live()
    return ref._cell


# ------------------------------------------------------------------------------------ cell


class Supervising(Protocol):
    """Who restarts a cell: told when an instance ends; True means it takes over."""

    def child_exited(self, cell: Cell, reason: ExitReason, error: BaseException | None) -> bool: ...


class Cell:
    """An actor identity and the loop that serves its mailbox (internal)."""

    __slots__ = (
        "accepting",
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
        "gate",
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
        self.instance_done: anyio.Event | None = None
        self.done: anyio.Event | None = None
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

    # -- sending (slow paths; the fast path is inlined in Ref.tell/ask) --

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
                    envelope = self.gate.admit(self, envelope)  # CircuitOpen: refused
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
                self.done = anyio.Event()
            await self.done.wait()

    async def end_instance(self, timeout: float) -> None:
        """Stop the running instance (not the identity) like a stop request, killing it after
        ``timeout``; its supervisor is expected to start the next one."""
        if self.instance is None:
            return
        if timeout < 0:  # supervision (wave 2): brutal_kill, no stop request
            done = self.instance_done
            if done is None:
                done = self.instance_done = anyio.Event()
            self.kill()
            await done.wait()
            return
        request = ("stop", "shutdown")
        self.mailbox.put_system(request)
        done = self.instance_done
        if done is None:
            done = self.instance_done = anyio.Event()
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


class _Alarm:
    """The watchdog entry kind by which a cell is woken at a handler deadline."""

    __slots__ = ()


ALARM: Any = _Alarm()


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


check_positive = positive
"""``value`` as a float if it is a positive number; otherwise a clear error."""


CUT_GRACE = 0.001
"""Seconds past a message's deadline before its handler is cut: time for the runtime's
own waits inside it (an ask, a tell waiting for room) to raise DeadlineExceeded first."""

SKIPPED: Any = object()
"""What :meth:`Guarding.run` returns for a message it refused instead of handling."""

_OUTCOMES = frozenset({"circuit_open", "crashed", "timeout", "idle_timeout", "error", "deadline"})
"""Dead-letter reasons of messages whose breaker outcome is already recorded (or moot)."""

TIMEOUT_REASONS = frozenset({"expired", "timeout", "queue_timeout", "idle_timeout", "deadline"})
"""Dead-letter reasons that are time limits (also ``kind`` of ``understudy_timeouts_total``)."""

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

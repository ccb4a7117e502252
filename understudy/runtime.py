"""The runtime: owns every actor task, the name registry, dead letters and the event stream.

::

    async with us.Runtime() as rt:
        alice = await rt.spawn(Account, name="alice")
        await alice.tell(Deposit(10))
        assert await alice.ask(GetBalance(), timeout=1.0) == 10

Leaving the ``async with`` block shuts down gracefully: top-level actors stop in reverse
spawn order (each stops its own children first), each finishes the message it is handling
and runs ``on_stop`` within its shutdown time (then it is cancelled), and messages still
queued become dead letters with reason ``shutdown``. No task is left running afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, Literal, TypeVar

import anyio
from anyio.abc import TaskGroup
from prometheus_client import CollectorRegistry

from understudy._checks import check_name, finite_seconds
from understudy.actors import (
    DEFAULT_SHUTDOWN,
    A,
    Answers,
    Cell,
    Durability,
    Persistence,
    Ref,
    _cell_of,
    _current,
    check_positive,
    spawn_cell,
    vacancy,
)
from understudy.breaker import Breaker, BreakerInfo
from understudy.budgets import BudgetScope
from understudy.deadlines import Watchdog
from understudy.entities import entity_ref
from understudy.errors import (
    ActorStopped,
    DeadlineExceeded,
    NameTaken,
    RestartIntensityExceeded,
    RuntimeClosed,
    UnknownActor,
)
from understudy.events import DeadLetters, EventStream
from understudy.mailbox import DEFAULT_CAPACITY, Overflow, check_capacity
from understudy.messages import ExitReason
from understudy.metrics import ActorInfo, Metrics, check_endpoint
from understudy.persistence import Store, StoreCollector, attach
from understudy.pools import GroupCollector, Pool, PoolRef, live, pool_ref
from understudy.resilience import Guard, ResilienceMetrics, make_guard
from understudy.supervision import (
    Supervisor,
    SupervisorActor,
    SupervisorRef,
    _TerminateChild,
    supervisor_actor,
)

T = TypeVar("T")


class Runtime:
    """An actor system in one process. Use it as an async context manager.

    ``mailbox_capacity`` is the default bound of every mailbox (``capacity=`` on spawn
    overrides it); ``dead_letter_capacity`` is how many recent dead letters are kept for
    inspection (all are counted); ``clock`` is a zero-argument function returning monotonic
    seconds, read by restart intensity windows, backoff resets, circuit breakers and
    deadlines (default: the event loop's clock, as ``anyio.current_time``, so trio's
    ``MockClock`` drives it in tests; read through a cheaper function once the runtime runs,
    which with trio's default clock differs from ``trio.current_time()`` by a constant —
    use ``rt.clock()`` to compare with deadlines such as ``ctx.deadline``).

    ``metrics``: True (default) keeps per-message counters for :attr:`metrics`; a
    ``(host, port)`` tuple also serves the runtime's ASGI app (``/metrics``, ``/tree``,
    ``/healthz``, ``/readyz``; see :mod:`understudy.web`) over HTTP there with hypercorn
    while the runtime runs (port 0 picks a free port, see ``rt.metrics.address``; binding
    fails ``async with`` with ``OSError``); False turns per-message accounting off (messages,
    handler durations and mailbox waits are then not exported). ``metrics_registry`` is
    the ``prometheus_client`` registry to report into (default: a new one per runtime);
    a registry holds one running runtime at a time (entering another raises ``ValueError``).

    ``store`` is where persistent actors keep their state: a SQLite file path (created if
    missing) or a :class:`~understudy.Store` for non-default settings; ``None`` (default)
    means no persistence. The runtime opens the store when it starts and closes it after
    every actor stopped.

    ``name_wait`` is how many seconds a send through a name ref (:meth:`ref`) waits for an
    actor to take the name while none has it (a supervisor restarting it), when the
    message has no deadline of its own to bound the wait (default 5 s).
    A runtime that exited can be entered again (a host's lifespan started twice): counters
    and the registry carry on, the store is reopened from its path (a runtime given a
    ``Store`` object can be entered once). Entering a running runtime raises ``RuntimeError``.
    """

    def __init__(
        self,
        *,
        mailbox_capacity: int = DEFAULT_CAPACITY,
        dead_letter_capacity: int = 1000,
        clock: Callable[[], float] | None = None,
        metrics: bool | tuple[str, int] = True,
        metrics_registry: CollectorRegistry | None = None,
        store: str | os.PathLike[str] | Store | None = None,
        name_wait: float = 5.0,
    ) -> None:
        if clock is not None and not callable(clock):
            raise TypeError(f"Runtime(clock=) must be a function returning seconds, not {clock!r}")
        self.clock: Callable[[], float] = clock if clock is not None else anyio.current_time
        self._loop_clock = clock is None  # made fast when the loop runs (see __aenter__)
        self.watchdog = Watchdog(self)
        """Fails asks whose deadline passes (internal)."""
        self.default_capacity = check_capacity(mailbox_capacity, "Runtime(mailbox_capacity=)")
        check_capacity(dead_letter_capacity, "Runtime(dead_letter_capacity=)")
        self.events = EventStream()
        """Typed lifecycle events; see :meth:`EventStream.subscribe`."""
        self.dead_letters = DeadLetters(dead_letter_capacity)
        """Messages that could not be delivered or processed: counts and recent letters."""
        # Random base: correlation ids of two runtimes in one process do not collide.
        self.correlation_ids: Iterator[int] = itertools.count(secrets.randbits(40) << 16)
        self.closed = True
        self.shutting_down = False
        self._names: dict[str, Cell] = {}
        self.name_wait = finite_seconds(name_wait, "Runtime(name_wait=)")
        self._name_waits: dict[str, anyio.Event] = {}
        """Names some sender waits for (a name ref while no actor had the name)."""
        # Pools and entity types by name (understudy.pools, understudy.entities): rt.ref
        # consults it first, so a pool's name gives the ref that routes at the sender.
        self.routers: dict[str, Any] = {}
        self._top: dict[int, Cell] = {}
        self._task_group: TaskGroup | None = None
        self._host_scope: anyio.CancelScope | None = None
        self._entered = False
        self._roots: set[int] = set()
        self._roots_done: anyio.Event | None = None
        self._fatal: BaseException | None = None
        self._fatal_reported = False
        self._waiters = 0
        # metrics: per-cell counters on unless metrics=False; the registry and collector
        self.metered = metrics is not False
        self.metrics: Metrics = Metrics(
            dead_letters=self.dead_letters,
            events=self.events,
            on=self.metered,
            endpoint=check_endpoint(metrics),
            registry=metrics_registry,
            runtime=self,
        )
        """This runtime's Prometheus metrics, endpoint and ASGI app."""
        self.resilience = ResilienceMetrics()
        """Counters of breakers, budgets, fallbacks and retries (internal; exported)."""
        self.store: Store | None = (
            store if store is None or isinstance(store, Store) else Store(store)
        )
        """The persistent actors' store (None: no persistence)."""
        self._store_path = None if store is None or isinstance(store, Store) else store
        self._running = False  # web: between __aenter__ and the end of __aexit__
        # llm area: understudy.llm attaches its call log and metrics here on first use
        self.llm: Any = None

    # -- lifecycle --

    async def __aenter__(self) -> Runtime:
        if self._running:
            raise RuntimeError("this Runtime is already running; leave it before entering again")
        if self._entered:
            self._enter_again()
        self._entered = self._running = True
        try:
            await self.metrics.bind()  # ValueError: registry taken; OSError: cannot listen
        except BaseException:
            self._running = False
            raise
        self.metrics.add_source(self.resilience)
        self.metrics.add_source(GroupCollector(self))  # pools and entity types
        if self._loop_clock:
            self.clock, self.watchdog.offset = _event_loop_clock()
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        if self.store is not None:
            try:
                await self.store.open(self._task_group)
            except BaseException:
                self._task_group.cancel_scope.cancel()
                try:
                    await self._task_group.__aexit__(None, None, None)
                finally:
                    self._running = False
                    await self.metrics.aclose()
                raise
            self.metrics.add_source(StoreCollector(self.store))
        # The body of `async with` runs in this scope: a root supervisor giving up cancels it.
        self._host_scope = anyio.CancelScope()
        self._host_scope.__enter__()
        self._roots_done = anyio.Event()
        self.closed = False
        self.metrics.serve(self._task_group)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group = self.task_group
        assert self._host_scope is not None
        if self._host_scope.__exit__(exc_type, exc, tb):
            exc_type, exc, tb = None, None, None  # the cancellation we caused: not an error
        self.shutting_down = True
        try:
            # Shielded: a host being cancelled still gets a bounded, graceful shutdown
            # (every stop is bounded by that actor's shutdown time, then a kill).
            with anyio.CancelScope(shield=True):
                try:
                    await self._stop_all()
                finally:
                    if self.store is not None:  # after every actor: commit what they queued
                        await self.store.aclose()
        finally:
            self.closed = True
            self.events.close()
            task_group.cancel_scope.cancel()  # timers and anything else still running
            if self._roots_done is not None:
                self._roots_done.set()
            # Actor tasks never raise into the group, so the body's own exception (if any)
            # propagates as it is instead of wrapped in an ExceptionGroup.
            try:
                await task_group.__aexit__(None, None, None)
            finally:
                self._running = False
                await self.metrics.aclose()
        if self._fatal is not None and not self._fatal_reported and exc_type is None:
            raise self._fatal
        return None

    def _enter_again(self) -> None:
        """Fresh per-run state for a runtime entered again after it exited (a host's test
        client starting its app twice). Counters, dead-letter counts and the registry carry
        on; the store is reopened from its path."""
        if self.store is not None:
            if self._store_path is None:
                raise RuntimeError(
                    "a Runtime given a Store object can be entered once (a Store opens once): "
                    "pass the store's path instead, or make a new Runtime"
                )
            self.store = Store(self._store_path)
        events = EventStream()
        events.dropped = self.events.dropped
        self.events = self.metrics.events = events
        self.watchdog = Watchdog(self)
        self.shutting_down = False
        self._fatal = None
        self._fatal_reported = False
        self._roots.clear()

    @property
    def failure(self) -> BaseException | None:
        """The error a root supervisor gave up with while the runtime runs, else None (the
        readiness probe's reason). Never blocks."""
        return self._fatal

    async def _stop_all(self) -> None:
        while self._top:
            cell = self._top[next(reversed(self._top))]
            await cell.stop("shutdown", cell.shutdown)
            self._top.pop(cell.id, None)

    @property
    def task_group(self) -> TaskGroup:
        """The task group every actor task runs in (internal; for the layers above)."""
        if self._task_group is None or self.closed:
            raise RuntimeClosed("the runtime is not running: use it inside `async with`")
        return self._task_group

    # -- registry (ActorSystem) --

    def register(self, cell: Cell) -> None:
        """Reserve the cell's name and track it (internal)."""
        if cell.name is not None:
            holder = self._names.get(cell.name)
            if holder is not None:
                raise NameTaken(
                    f"an actor named {cell.name!r} is already running "
                    f"({holder.actor_class.__qualname__})"
                )
            self._names[cell.name] = cell
            waiting = self._name_waits.pop(cell.name, None)
            if waiting is not None:
                waiting.set()
        if cell.parent is None:
            self._top[cell.id] = cell
        self.metrics.track(cell)

    def unregister(self, cell: Cell) -> None:
        """Free the cell's name (internal)."""
        self.metrics.retire(cell)
        if cell.name is not None and self._names.get(cell.name) is cell:
            del self._names[cell.name]
        if cell.parent is None:
            self._top.pop(cell.id, None)
        elif cell.parent.children is not None:
            cell.parent.children.pop(cell.id, None)

    def guard(
        self,
        cell: Cell,
        breaker: Breaker | None,
        timeout: float | None,
        queue_timeout: float | None,
        idle_timeout: float | None,
    ) -> Guard:
        """Make a cell's breaker and time limits (internal; see ``understudy.resilience``)."""
        return make_guard(
            self, self.resilience, cell, breaker, timeout, queue_timeout, idle_timeout
        )

    def persistence(self, cell: Cell, durability: Durability | None) -> Persistence:
        """Make ``cell`` persistent in this runtime's store (internal)."""
        return attach(self.store, cell, durability)

    # -- public API --

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
        """Start a top-level actor and return its ref once its ``on_start`` returned.

        ``actor`` is an :class:`Actor` subclass or a zero-argument factory returning an
        instance (``functools.partial(MyActor, config)``), called again for every restart.
        ``name`` makes the actor findable with :meth:`ref` (unnamed actors get an id);
        ``capacity`` bounds its mailbox (default: the runtime's ``mailbox_capacity``);
        ``overflow`` is ``"block"``, ``"fail"`` or ``"drop_oldest"``; ``shutdown`` is how
        many seconds it gets to stop gracefully before it is cancelled.

        Resilience (see :mod:`understudy.resilience`): ``breaker`` (a :class:`~understudy.Breaker`,
        used as a template: the identity gets its own, kept across restarts) refuses
        messages while the actor keeps failing; ``timeout`` cancels a handler that runs
        longer (the actor is treated as crashed); ``idle_timeout`` cancels a handler that
        goes that long without ``ctx.heartbeat()``; ``queue_timeout`` drops a message that
        waited longer in the mailbox. Times are positive seconds.

        ``persistent=True`` (default: the class's ``persistent`` attribute) keeps the actor's
        ``State`` in the runtime's store: it starts from its last committed snapshot and is
        snapshotted after each message. It needs a ``name`` (the key of its snapshots), a
        ``State`` and a store. ``durability`` is ``"commit"`` (default: an ask's reply waits
        for the commit of its effects) or ``"async"`` (reply at once, commit soon after).

        ``answers`` (a tuple of exception classes; default: the class's ``answers``) are the
        exceptions its handlers answer with instead of crashing (see ``Actor.answers``).
        ``name`` must be printable, UTF-8 encodable text of at most 255 characters.

        The ref returned is bound to this identity; ``rt.ref(name)`` gives one bound to
        the name (see :class:`Ref`).

        Raises :class:`NameTaken` for a live name, ``TypeError``/``ValueError`` for bad
        options, whatever ``on_start`` raised (the actor then does not exist),
        :class:`CorruptState` when a persistent actor's snapshot does not decode, and
        :class:`RuntimeClosed` outside the runtime's ``async with``.
        """
        cell = await spawn_cell(
            self,
            None,
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

    async def start(self, tree: Supervisor) -> SupervisorRef:
        """Start a supervision tree as a root and return its ref once every child started.

        Raises what a child's ``on_start`` raised (the children already started are stopped
        first). If the root gives up (:class:`RestartIntensityExceeded`), :meth:`wait`
        returns that error; if nobody waits, the body of ``async with`` is cancelled and
        leaving it raises the error.
        """
        if not isinstance(tree, Supervisor):
            raise TypeError(f"start: expected a us.Supervisor spec, not {tree!r}")
        cell = await spawn_cell(
            self,
            None,
            functools.partial(supervisor_actor(tree), tree),
            name=tree.name,
            capacity=None,
            overflow="block",
            shutdown=tree.shutdown,
            supervisor=_RootGuard(self),
        )
        self._roots.add(cell.id)
        return SupervisorRef(cell)

    async def spawn_pool(self, actor: type[A] | Callable[[], A], **options: Any) -> PoolRef:
        """Start a top-level :class:`~understudy.Pool` (same arguments, ``name=`` required)
        and return its ref once every worker started. Raises as :meth:`start`."""
        spec = Pool(actor, **options)
        cell = await spawn_cell(
            self,
            None,
            functools.partial(supervisor_actor(spec), spec),
            name=spec.name,
            capacity=None,
            overflow="block",
            shutdown=spec.shutdown,
        )
        return pool_ref(self, cell.ref)

    def entity(self, type_name: str, key: str) -> Ref:
        """The ref of entity ``key`` of the running entity type ``type_name``
        (:class:`~understudy.Entities`); its first message activates it. Never blocks.
        Raises :class:`UnknownActor` for no such type, ``TypeError``/``ValueError`` for a
        malformed key."""
        return entity_ref(self, type_name, key)

    async def wait(self) -> BaseException | None:
        """Wait until every tree started with :meth:`start` has ended; return the error a
        root gave up with (then leaving the runtime does not raise it again), or None when
        they all shut down normally (e.g. by ``auto_shutdown``). Returns at once if no tree
        is running."""
        if self._roots and self._fatal is None and self._roots_done is not None:
            self._waiters += 1
            try:
                await self._roots_done.wait()
            finally:
                self._waiters -= 1
        self._fatal_reported = self._fatal is not None
        return self._fatal

    def _root_ended(self, cell: Cell, reason: ExitReason, error: BaseException | None) -> None:
        self._roots.discard(cell.id)
        # A root that gave up exits with reason `shutdown` (OTP) carrying its
        # RestartIntensityExceeded: for the runtime that is fatal all the same.
        fatal = reason in ("failed", "killed") or isinstance(error, RestartIntensityExceeded)
        if fatal and self._fatal is None:
            self._fatal = error
            if not self._waiters and self._host_scope is not None:
                self._host_scope.cancel()
        if (self._fatal is not None or not self._roots) and self._roots_done is not None:
            self._roots_done.set()

    def ref(self, name: str) -> Ref:
        """A ref bound to the name ``name``: it reaches whichever actor has that name when
        a message is sent, across restarts of the actor and of its supervisor (OTP's
        registered names). While no live actor has the name, a send waits for one, at
        most until the message's deadline (else ``name_wait`` seconds), then raises
        :class:`UnknownActor` naming it. A pool's name gives its :class:`PoolRef`, which
        routes at the sender. Never blocks. Raises ``TypeError``/``ValueError`` for a bad
        name, :class:`RuntimeClosed` after the runtime exited."""
        if self.closed:
            raise RuntimeClosed(f"rt.ref({name!r}): the runtime is not running")
        check_name(name, "rt.ref")
        if self.routers:
            router = live(self, name)  # a pool's name: the ref that routes (understudy.pools)
            if router is not None and isinstance(router, Ref):
                return router
        cell = self._names.get(name)
        return Ref(cell if cell is not None else vacancy(self, name), name)

    def holder(self, name: str) -> Cell | None:
        """The live identity called ``name``, or None (internal). Never blocks."""
        cell = self._names.get(name)
        return None if cell is None or cell.terminated else cell

    async def await_name(self, name: str, deadline: float) -> Cell:
        """The live identity called ``name``, waiting for one to start (internal; see
        :meth:`ref`). ``deadline``: the message's (0.0: none, wait ``name_wait``)."""
        start = self.clock()
        limit = start + self.name_wait
        bound = deadline if deadline and deadline < limit else limit
        while True:
            cell = self.holder(name)
            if cell is not None:
                return cell
            if self.closed or self.shutting_down:
                raise RuntimeClosed(f"cannot send to actor {name!r}: the runtime is shutting down")
            left = bound - self.clock()
            if left <= 0:
                break
            event = self._name_waits.get(name)
            if event is None:
                event = self._name_waits[name] = anyio.Event()
            with anyio.move_on_after(left):
                await event.wait()
        event = self._name_waits.get(name)
        if event is not None and not event.statistics().tasks_waiting:
            del self._name_waits[name]  # bounded: nothing is kept for a name nobody takes
        if bound == deadline:
            raise DeadlineExceeded(
                f"no actor named {name!r} was running before the message's deadline", name
            )
        raise UnknownActor(
            f"no actor named {name!r} is running (waited {self.name_wait:g} s for one to start)"
        )

    async def stop(self, ref: Ref, *, timeout: float | None = None) -> None:
        """Stop the actor gracefully and wait until it has stopped.

        It finishes its current message, stops its children, runs ``on_stop``; after
        ``timeout`` seconds (default: its ``shutdown`` time) it is cancelled. Messages still
        queued become dead letters with reason ``stopped``. Returns at once if it already
        stopped.
        """
        cell = _cell_of(ref, "stop")  # a name ref: the name's current holder
        if timeout is not None:
            timeout = check_positive(timeout, f"stop({cell.label!r}): timeout")
        if self.closed:
            raise RuntimeClosed("cannot stop an actor: the runtime has exited")
        if _current.get() is cell:
            raise RuntimeError(
                f"actor {cell.label!r} cannot rt.stop() itself (it would wait for its own "
                "end): use self.ctx.stop()"
            )
        supervisor = cell.supervisor
        if isinstance(supervisor, SupervisorActor) and not cell.terminated:
            # A supervised child stopped from outside is terminated through its supervisor,
            # which would otherwise restart it (its spec is kept, as by terminate_child).
            # Naming the identity makes a second, concurrent stop a no-op.
            with contextlib.suppress(ActorStopped):
                await supervisor.ctx.self_ref.ask(_TerminateChild(cell.label, cell))
            if cell.terminated:
                return
        await cell.stop("shutdown", cell.shutdown if timeout is None else timeout)

    def supervisor(self, name: str) -> SupervisorRef:
        """The :class:`SupervisorRef` of the live supervisor called ``name`` (a root or a
        nested one), to administer it like the root. Raises :class:`UnknownActor` for no
        such actor, ``TypeError`` if that actor is not a supervisor."""
        if self.closed:
            raise RuntimeClosed(f"rt.supervisor({name!r}): the runtime is not running")
        check_name(name, "rt.supervisor")
        cell = self.holder(name)
        if cell is None:
            raise UnknownActor(f"rt.supervisor({name!r}): no live actor has that name")
        if cell.actor_class is not SupervisorActor:
            raise TypeError(
                f"actor {name!r} is a {cell.actor_class.__qualname__}, not a supervisor"
            )
        return SupervisorRef(cell)

    def breaker(self, name: str) -> BreakerInfo:
        """A snapshot of the circuit breaker of the live actor called ``name``: its state and
        counters (:class:`~understudy.BreakerInfo`). Never blocks. Raises
        :class:`UnknownActor` for no such actor, ``LookupError`` if it has no breaker.
        A pool's name gives the pool's one breaker."""
        router = live(self, name)  # a pool (understudy.pools): its own breaker
        if isinstance(router, PoolRef) and router.breaker is not None:
            return router.breaker.snapshot()
        cell = self._names.get(name)
        if cell is None:
            raise UnknownActor(f"no live actor is named {name!r}")
        guard = cell.guard
        if guard is None or guard.breaker is None:
            raise LookupError(f"actor {name!r} has no circuit breaker (spawn it with breaker=)")
        return guard.breaker.snapshot()

    def budget(
        self,
        name: str | None = None,
        *,
        seconds: float | None = None,
        tokens: int | None = None,
        usd: float | None = None,
        persistent: bool = False,
    ) -> BudgetScope:
        """``async with rt.budget(name=, seconds=, tokens=, usd=) as budget:`` — open a
        :class:`~understudy.Budget` that every message sent in the body carries, hop after
        hop (see :mod:`understudy.budgets`). ``seconds`` is also the deadline of those
        messages. Limits are positive (None: bounded only by an enclosing budget). Bad
        values raise ``TypeError``/``ValueError`` here; entering raises ``ValueError`` for
        limits above an enclosing budget's, :class:`BudgetExceeded` for more than it has
        left, and :class:`RuntimeClosed` outside the running runtime. Sends made in the
        body share one correlation id (outside an actor, a new one). ``persistent=True``
        (with a name, in a runtime with a store) keeps it in the store: every opening of
        that name continues from what was spent and reserved, after a restart too."""
        return BudgetScope(self, name, seconds, tokens, usd, persistent)

    def tree(self) -> list[ActorInfo]:
        """The live actors as typed trees (:class:`~understudy.ActorInfo`), top-level actors
        in spawn order with their children nested. A snapshot; never blocks."""
        return self.metrics.tree()

    def __contains__(self, name: object) -> bool:
        return name in self._names


def _event_loop_clock() -> tuple[Callable[[], float], float]:
    """``anyio.current_time`` made cheap to read where a deadline is checked per message
    (it looks the backend up on every call: about 500 ns here, against 45 ns for a bare
    ``time.monotonic``), and the event loop's time minus it.

    asyncio's default loop time is ``time.monotonic`` itself (offset 0). trio's default
    clock is ``perf_counter`` plus a constant: the runtime then reads ``perf_counter`` and
    keeps the constant (a deadline is a moment either way; only differences matter to the
    runtime). Any other clock (trio's ``MockClock``, another loop's) is used as it is.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: trio
        import trio.lowlevel

        clock = trio.lowlevel.current_clock()
        offset = getattr(clock, "offset", None)
        if type(clock).__name__ == "SystemClock" and isinstance(offset, float):
            return time.perf_counter, offset
        return clock.current_time, 0.0
    if type(loop).time is asyncio.BaseEventLoop.time:
        return time.monotonic, 0.0
    return loop.time, 0.0


class _RootGuard:
    """The supervising hook of a root supervisor: its end is the runtime's business."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def child_exited(self, cell: Cell, reason: ExitReason, error: BaseException | None) -> bool:
        self.runtime._root_ended(cell, reason, error)
        return False


def run(
    main: Callable[..., Awaitable[T]],
    *args: Any,
    backend: Literal["asyncio", "trio"] = "asyncio",
) -> T:
    """Run ``main(*args)`` on the chosen event loop and return its result (for scripts)."""
    if backend not in ("asyncio", "trio"):
        raise ValueError(f"backend must be 'asyncio' or 'trio', not {backend!r}")
    return anyio.run(main, *args, backend=backend)


__all__ = ["Runtime", "run"]

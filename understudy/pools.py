"""Pools: N supervised, identical workers behind one name.

::

    await rt.start(us.Supervisor(children=[us.Pool(Fetcher, name="fetch", size=8)]))
    fetch = rt.ref("fetch")                  # one ref for the whole pool
    page = await fetch.ask(Fetch(url))      # goes to one worker

A pool is a supervisor of its own kind (``us.Pool`` is a :class:`~understudy.Supervisor`
spec, so it nests in a tree like one; ``rt.spawn_pool`` starts one at the top level). Its
workers are unnamed actors of one class, restarted one for one by the pool's supervisor.

Routing happens at the sender, in :class:`PoolRef` (no extra actor hop):

* ``least_busy`` (default): the worker with the fewest messages queued, plus one if it is
  handling a message; ties go round robin. A worker being restarted is skipped while another runs.
* ``round_robin``: each send to the next worker.
* ``by_key``: ``key(msg)`` picks the worker (a stable hash, modulo the pool's size), so the
  messages of one key reach one worker in order. Resizing a ``by_key`` pool remaps keys.

Resizing: with ``max`` above ``min`` the pool checks every ``scale_every`` seconds; when the
mean mailbox depth has stayed above ``scale_above`` for ``scale_after`` seconds it adds a
worker (up to ``max``); when every mailbox has been empty for ``shrink_after`` seconds it
removes one (down to ``min``). Agent workloads wait on I/O, so the pool scales on queue
depth, not CPU. Each change is a :class:`PoolResized` event and is counted in
``understudy_pool_resizes_total``.

A crashed worker's queued messages are not lost: the worker keeps its mailbox across its
restart (OTP identity), and unless the pool routes ``by_key`` (whose per-key order must
hold) they are moved at once to the other running workers (``understudy_pool_rerouted_total``)
instead of waiting out the restart. The message whose handler crashed is a dead letter
(``crashed``) and its asker gets the exception, as for any actor. A worker removed by a
shrink hands its queue to the others first. Only when the whole pool stops do queued
messages become dead letters (``stopped``/``shutdown``).

The pool has one circuit breaker (``breaker=``): it counts the outcome of every ask made
through the pool ref and every worker crash, whichever worker it was, and while it is open
the pool ref refuses at once with :class:`~understudy.CircuitOpen`.

Metrics are labelled by the pool's name, never by worker (``actor="fetch"``).
"""

from __future__ import annotations

import contextlib
import itertools
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from understudy._checks import count, group_name
from understudy.actors import (
    DEFAULT_SHUTDOWN,
    Actor,
    Cell,
    Ref,
    _cell_of,
    actor_class_of,
    check_positive,
)
from understudy.breaker import Breaker, BreakerStateChanged, check_breaker
from understudy.errors import ActorStopped, CircuitOpen, RuntimeClosed
from understudy.events import DeadLetter, Event
from understudy.messages import ExitReason, Message, Request
from understudy.meter import mark_supervisor
from understudy.supervision import (
    Backoff,
    Child,
    RestartType,
    SimpleOneForOne,
    Supervisor,
    SupervisorActor,
)

if TYPE_CHECKING:
    from understudy.fallback import Retry
    from understudy.runtime import Runtime

R = TypeVar("R")

Routing = Literal["least_busy", "round_robin", "by_key"]
ROUTINGS: tuple[Routing, ...] = ("least_busy", "round_robin", "by_key")


def label_as(cell: Cell, group: str, runtime: Any) -> None:
    """Label ``cell``'s metrics (and its breaker's) with ``group``. Never blocks."""
    cell.group = group
    breakers: dict[int, tuple[str, Breaker, Cell]] = runtime.resilience.breakers
    entry = breakers.get(cell.id)
    if entry is not None:  # registered under its own label when its guard was made
        breakers[cell.id] = (group, entry[1], cell)


# ------------------------------------------------------------------------------ the spec


class PoolResized(Event, frozen=True, kw_only=True):
    """Pool ``actor`` went from ``previous`` to ``size`` workers (``reason``: ``busy``,
    ``idle``)."""

    previous: int
    size: int
    reason: str


class Pool(Supervisor):
    """A pool spec: ``size`` workers of ``actor`` behind the name ``name``.

    ``routing`` is ``"least_busy"`` (default), ``"round_robin"`` or ``"by_key"`` (then
    ``key``, a function of the message returning a str/int/bytes, is required). ``min`` and
    ``max`` (default: both ``size``) bound resizing, which looks every ``scale_every``
    seconds: grow by one when the mean mailbox depth stayed above ``scale_above`` for
    ``scale_after`` seconds, shrink by one when every mailbox stayed empty for
    ``shrink_after`` seconds. ``breaker`` is the pool's one circuit breaker (a template,
    like a child's). ``max_restarts``/``within`` are the pool supervisor's restart
    intensity (its workers' restarts together); ``backoff`` delays a worker's restarts.
    ``restart``/``shutdown``/``significant`` are as for a nested supervisor. Other keywords
    are the workers' spawn options (``capacity``, ``overflow``, ``timeout``, ...).
    Everything is validated here: ``TypeError``/``ValueError`` naming the bad option.
    """

    runner: ClassVar[type[SupervisorActor]]  # set below: PoolActor
    __slots__ = (
        "breaker",
        "key",
        "max",
        "min",
        "routing",
        "scale_above",
        "scale_after",
        "scale_every",
        "shrink_after",
        "size",
        "worker",
    )

    def __init__(
        self,
        actor: type[Actor] | Callable[[], Actor],
        *,
        name: str,
        size: int = 8,
        min: int | None = None,
        max: int | None = None,
        routing: Routing = "least_busy",
        key: Callable[[Any], object] | None = None,
        breaker: Breaker | None = None,
        scale_above: float = 2.0,
        scale_after: float = 1.0,
        shrink_after: float = 30.0,
        scale_every: float = 0.25,
        max_restarts: int = 10,
        within: float = 5.0,
        backoff: Backoff | None = None,
        restart: RestartType = "permanent",
        shutdown: float | str = "infinity",
        significant: bool = False,
        **options: Any,
    ) -> None:
        where = f"Pool({getattr(actor, '__qualname__', actor)!r}, name={name!r})"
        group_name(name, where)
        size = count(size, f"{where}: size")
        low = size if min is None else count(min, f"{where}: min")
        high = size if max is None else count(max, f"{where}: max")
        if low > high:
            raise ValueError(f"{where}: min ({low}) must not be above max ({high})")
        if not low <= size <= high:
            raise ValueError(f"{where}: size ({size}) must be within min..max ({low}..{high})")
        if routing not in ROUTINGS:
            raise ValueError(f"{where}: routing must be one of {ROUTINGS}, not {routing!r}")
        if routing == "by_key":
            if not callable(key):
                raise TypeError(f"{where}: routing='by_key' needs key=, a function of the message")
        elif key is not None:
            raise ValueError(f"{where}: key= is only for routing='by_key'")
        check_breaker(breaker, where)
        if options.get("persistent"):
            raise ValueError(
                f"{where}: pool workers are interchangeable and unnamed, so they cannot be "
                "persistent; for state per key use us.Entities"
            )
        # The workers' template: validates the actor and the spawn options.
        worker = Child(actor, shutdown=DEFAULT_SHUTDOWN, backoff=backoff, **options)
        super().__init__(
            strategy=SimpleOneForOne(max_restarts=max_restarts, within=within),
            children=[worker],
            name=name,
            restart=restart,
            shutdown=shutdown,
            significant=significant,
            auto_shutdown="never",
        )
        self.worker = worker
        self.size = size
        self.min = low
        self.max = high
        self.routing: Routing = routing
        self.key = key
        self.breaker = breaker
        self.scale_above = check_positive(scale_above, f"{where}: scale_above")
        self.scale_after = check_positive(scale_after, f"{where}: scale_after")
        self.shrink_after = check_positive(shrink_after, f"{where}: shrink_after")
        self.scale_every = check_positive(scale_every, f"{where}: scale_every")

    def __repr__(self) -> str:
        return f"Pool({self.worker.actor!r}, name={self.name!r}, size={self.size})"


# ---------------------------------------------------------------------------- the router


class Router:
    """A pool's routing table, read by senders (internal): the worker cells in start order,
    the round-robin cursor, the pool's breaker and counters."""

    __slots__ = (
        "breaker",
        "cell",
        "cursor",
        "key",
        "name",
        "rerouted",
        "resizes",
        "routing",
        "worker_class",
        "workers",
    )

    def __init__(self, name: str, cell: Cell, spec: Pool) -> None:
        self.name = name
        self.cell = cell
        self.worker_class: type[Actor] = actor_class_of(spec.worker.actor, f"pool {name!r}")[0]
        self.workers: list[Cell] = []
        self.cursor = itertools.count()
        self.routing = spec.routing
        self.key = spec.key
        self.breaker: Breaker | None = None
        self.rerouted = 0
        self.resizes: dict[str, int] = {"up": 0, "down": 0}

    def stopped(self, msg: object) -> None:
        """The pool has no workers (it stopped): a dead letter, and :class:`ActorStopped`."""
        system = self.cell.system
        if system.closed:
            raise RuntimeClosed(f"cannot send to pool {self.name!r}: its runtime has exited")
        if isinstance(msg, Message):
            letter = DeadLetter(actor=self.name, message=msg, reason="stopped")
            system.dead_letters.record(letter)
            if system.events.active:
                system.events.publish(letter)
        raise ActorStopped(f"pool {self.name!r} has stopped")

    def pick(self, msg: object) -> Cell:
        """The worker ``msg`` goes to. Never blocks."""
        workers = self.workers
        n = len(workers)
        if not n:
            self.stopped(msg)
        start = next(self.cursor)
        routing = self.routing
        if routing == "round_robin":
            return workers[start % n]
        if routing == "by_key":
            assert self.key is not None
            return workers[_stable_hash(self.key(msg)) % n]
        best = workers[start % n]
        best_load = _load(best)
        if best_load:
            for i in range(1, n):
                cell = workers[(start + i) % n]
                load = _load(cell)
                if load < best_load:
                    best, best_load = cell, load
                    if not load:
                        break
        return best


def _load(cell: Cell) -> int:
    """Queued messages, plus one while the worker is not waiting for mail (it has a message
    in hand: the queue alone would show a worker blocked in a slow handler as free)."""
    if cell.instance is None:  # restarting: only if every other worker is
        return 1 << 30
    mailbox = cell.mailbox
    return len(mailbox.queue) + (mailbox.waiter is None)


def _stable_hash(key: object) -> int:
    """A hash that does not change between processes (``hash(str)`` is salted)."""
    if isinstance(key, int) and not isinstance(key, bool):
        return key & 0xFFFFFFFF
    if isinstance(key, str):
        return zlib.crc32(key.encode())
    if isinstance(key, bytes):
        return zlib.crc32(key)
    raise TypeError(f"pool key function returned {key!r}: keys are str, int or bytes")


def live(runtime: Any, name: str) -> Any:
    """The pool ref or entity group registered as ``name`` in ``rt.routers``, or None; an
    entry whose supervisor identity has ended for good is dropped. Never blocks."""
    routers: dict[str, Any] = runtime.routers
    found = routers.get(name)
    if found is not None and found._router_cell().terminated:
        del routers[name]
        return None
    return found


class PoolRef(Ref):
    """The ref of a pool: sends go to one of its workers, chosen at the sender.

    ``tell`` and ``ask`` behave as for one actor (see :class:`~understudy.Ref`), plus the
    pool's breaker: while it is open they raise :class:`~understudy.CircuitOpen` at once.
    """

    __slots__ = ("_router",)

    def __init__(self, router: Router) -> None:
        super().__init__(router.cell)
        self._router = router

    def __repr__(self) -> str:
        return f"<PoolRef {self._router.name} ({len(self._router.workers)} workers)>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PoolRef) and other._router is self._router

    def __hash__(self) -> int:
        return hash(self._router)

    @property
    def worker_class(self) -> type[Actor]:
        """The actor class of the pool's workers (what a message to the pool is handled by)."""
        return self._router.worker_class

    def _router_cell(self) -> Cell:
        return self._router.cell

    @property
    def size(self) -> int:
        """How many workers the pool has now."""
        return len(self._router.workers)

    @property
    def breaker(self) -> Breaker | None:
        """The pool's circuit breaker (None without ``breaker=``); see ``rt.breaker(name)``."""
        return self._router.breaker

    async def tell(self, msg: Message) -> None:
        """Send ``msg`` to one worker (see :meth:`Ref.tell`)."""
        router = self._router
        breaker = router.breaker
        if breaker is not None and breaker._state != "closed":
            _refuse(router, breaker, msg)
        if not router.workers:  # stopped: a dead letter, as for any stopped actor
            with contextlib.suppress(ActorStopped):
                router.stopped(msg)
            return
        await router.pick(msg).ref.tell(msg)

    async def ask(
        self, msg: Request[R], *, timeout: float | None = None, retry: Retry | None = None
    ) -> R:
        """Ask one worker (see :meth:`Ref.ask`); the outcome counts for the pool's breaker."""
        if retry is not None:
            return await retry.ask(self, msg, timeout)
        router = self._router
        cell = router.pick(msg)
        breaker = router.breaker
        if breaker is None:
            return await cell.ref.ask(msg, timeout=timeout)
        if breaker._state != "closed":
            _refuse(router, breaker, msg)
        try:
            result = await cell.ref.ask(msg, timeout=timeout)
        except CircuitOpen:
            breaker.release()
            raise
        except Exception as exc:
            breaker.record_failure(exc)
            raise
        except BaseException:
            breaker.release()
            raise
        if breaker._failures or breaker._state != "closed":
            breaker.record_success()
        return result


def _refuse(router: Router, breaker: Breaker, msg: Message) -> None:
    error = breaker.refusal()
    if error is None:
        return  # a half-open trial
    system = router.cell.system
    letter = DeadLetter(actor=router.name, message=msg, reason="circuit_open")
    system.dead_letters.record(letter)
    if system.events.active:
        system.events.publish(letter)
    raise error


# ------------------------------------------------------------------------ the pool actor


class _ScaleTick(Message, frozen=True):
    pass


class PoolActor(SupervisorActor):
    """The supervisor of one pool: starts and resizes its workers, keeps the router."""

    spec: Pool

    def __init__(self, spec: Pool, breakers: dict[str, Breaker] | None = None) -> None:
        super().__init__(spec, breakers)
        self.router: Router | None = None
        self.busy_since: float | None = None
        self.idle_since: float | None = None

    async def on_start(self) -> None:
        me = self.ctx._cell
        mark_supervisor(me)
        spec = self.spec
        runtime: Any = me.system
        name = me.label
        known = runtime.routers.get(name)
        if isinstance(known, PoolRef) and known._router.cell is me:
            # A restart of this pool's supervisor: refs taken before it keep working, and
            # the breaker, which belongs to the pool's identity, keeps its state.
            router = self.router = known._router
            router.workers = []
        else:
            router = self.router = Router(name, me, spec)
            if spec.breaker is not None:
                router.breaker = spec.breaker.copy(
                    name=name, clock=runtime.clock, listener=self._breaker_changed
                )
                runtime.resilience.track(me, router.breaker)
        try:
            for _ in range(spec.size):
                await self._add_worker()
        except BaseException:
            await self._stop_all()
            raise
        if not (isinstance(known, PoolRef) and known._router is router):
            runtime.routers[name] = PoolRef(router)
        if spec.min < spec.max:
            self.ctx.schedule_every(spec.scale_every, _ScaleTick())

    async def on_stop(self) -> None:
        # The workers stop with this instance. The entry in rt.routers stays: a restarted
        # pool reuses it, and it is dropped once the identity has ended (see live()).
        if self.router is not None:
            self.router.workers = []

    async def _add_worker(self) -> Cell:
        assert self.router is not None
        cell = await self._add(self.spec.worker, (), None)
        if cell is None:
            raise ValueError(
                f"pool {self.router.name!r}: a worker's on_start returned us.Ignore; pool "
                "workers are interchangeable and must start"
            )
        label_as(cell, self.router.name, cell.system)
        self.router.workers.append(cell)
        return cell

    def _breaker_changed(
        self, breaker: Breaker, previous: Any, state: Any, error: BaseException | None
    ) -> None:
        events = self.ctx._cell.system.events
        if events.active:
            retry_after = (
                max(breaker._open_until - self.ctx._cell.system.clock(), 0.0)
                if state == "open"
                else 0.0
            )
            events.publish(
                BreakerStateChanged(
                    actor=self.ctx.name,
                    previous=previous,
                    state=state,
                    retry_after=retry_after,
                    error=error,
                )
            )

    # -- a worker ended (in its task, synchronously) --

    def child_exited(self, cell: Cell, reason: ExitReason, error: BaseException | None) -> bool:
        router = self.router
        if router is not None and reason in ("failed", "killed") and cell in router.workers:
            breaker = router.breaker
            if breaker is not None and error is not None and cell.current[2] is None:
                breaker.record_failure(error)  # a told message crashed it (asks count at the ref)
            if router.routing != "by_key":
                self._reroute(cell)
        return super().child_exited(cell, reason, error)

    def _reroute(self, cell: Cell) -> None:
        """Move ``cell``'s queued messages to the other running workers. Never blocks."""
        router = self.router
        assert router is not None
        others = [w for w in router.workers if w is not cell and w.instance is not None]
        queue = cell.mailbox.queue
        if not others or not queue:
            return
        kept = []
        i = 0
        while queue:
            envelope = queue.popleft()
            for j in range(len(others)):
                target = others[(i + j) % len(others)]
                if target.accepting and target.mailbox.put_nowait(envelope):
                    router.rerouted += 1
                    break
            else:
                kept.append(envelope)
            i += 1
        queue.extend(kept)
        cell.mailbox.release_senders()

    # -- resizing (in the pool's task) --

    async def scale_tick(self, msg: _ScaleTick) -> None:
        router = self.router
        if router is None:
            return
        spec = self.spec
        workers = router.workers
        now = self.ctx._cell.system.clock()
        depth = sum(len(w.mailbox.queue) for w in workers)
        n = len(workers)
        if n and depth / n > spec.scale_above:
            self.idle_since = None
            if self.busy_since is None:
                self.busy_since = now
            elif now - self.busy_since >= spec.scale_after and n < spec.max:
                await self._add_worker()
                self._resized(n, "busy", "up")
                self.busy_since = now
            return
        self.busy_since = None
        if depth or any(w.mailbox.waiter is None for w in workers):
            self.idle_since = None
            return
        if self.idle_since is None:
            self.idle_since = now
        elif now - self.idle_since >= spec.shrink_after and n > spec.min:
            await self._remove_worker()
            self._resized(n, "idle", "down")
            self.idle_since = now

    async def _remove_worker(self) -> None:
        router = self.router
        assert router is not None
        cell = router.workers.pop()  # senders stop choosing it first
        self._reroute_all(cell)
        record = self.by_cell.pop(cell.id, None)  # let it go: its exit is not a restart
        if record is not None:
            self.records.pop(record.key, None)
            self.pending.pop(record.key, None)
            self.aliases.pop(cell.label, None)
            await cell.stop("shutdown", cell.shutdown)

    def _reroute_all(self, cell: Cell) -> None:
        router = self.router
        assert router is not None
        router.workers.append(cell)
        try:
            self._reroute(cell)
        finally:
            router.workers.remove(cell)

    def _resized(self, previous: int, reason: str, direction: str) -> None:
        assert self.router is not None
        self.router.resizes[direction] += 1
        self._publish(
            PoolResized(
                actor=self.ctx.name,
                previous=previous,
                size=len(self.router.workers),
                reason=reason,
            )
        )


Pool.runner = PoolActor


def pool_ref(runtime: Runtime, ref: Ref) -> PoolRef:
    """The :class:`PoolRef` of the pool whose supervisor is ``ref`` (internal)."""
    cell = _cell_of(ref, "spawn_pool")
    found = runtime.routers.get(cell.label)
    assert isinstance(found, PoolRef)
    return found


# ------------------------------------------------------------------------------- metrics


class GroupCollector:
    """Exports pools' and entity types' own families at scrape time (internal)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def describe(self) -> Iterator[Metric]:
        yield from self._families(describe=True)

    def collect(self) -> Iterator[Metric]:
        yield from self._families(describe=False)

    def _families(self, *, describe: bool) -> Iterator[Metric]:
        workers = GaugeMetricFamily(
            "understudy_pool_workers", "Workers of each pool.", labels=["pool"]
        )
        resizes = CounterMetricFamily(
            "understudy_pool_resizes",
            "Pool resizes, by direction (up, down).",
            labels=["pool", "direction"],
        )
        rerouted = CounterMetricFamily(
            "understudy_pool_rerouted",
            "Messages moved from a crashed or removed worker to another.",
            labels=["pool"],
        )
        extra: list[Metric] = []
        if not describe:
            for name, ref in sorted(self.runtime.routers.items()):
                if isinstance(ref, PoolRef) and not ref._router.cell.terminated:
                    router = ref._router
                    workers.add_metric([name], len(router.workers))
                    for direction, n in router.resizes.items():
                        resizes.add_metric([name, direction], n)
                    rerouted.add_metric([name], router.rerouted)
        from understudy.entities import entity_families

        extra = list(entity_families(self.runtime, describe=describe))
        for family in (workers, resizes, rerouted, *extra):
            if describe or family.samples:  # no pool, no entity type: no empty families
                yield family


__all__ = [
    "ROUTINGS",
    "GroupCollector",
    "Pool",
    "PoolActor",
    "PoolRef",
    "PoolResized",
    "Routing",
    "label_as",
]

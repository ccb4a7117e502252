"""Entities: an actor per key (a conversation), activated on demand, passivated when idle.

::

    await rt.start(us.Supervisor(children=[
        us.Entities(Conversation, name="support", persistent=True, passivate_after=60.0),
    ]))
    conv = rt.entity("support", "conv-123")     # a ref; nothing runs yet
    answer = await conv.ask(Say("hello"))      # the first message activates it

Orleans' grains, Akka's sharded entities, Restate's virtual objects. ``us.Entities`` is a
supervisor spec of its own kind: its actor supervises one cell per active key.

* The first message to a key activates it: a new instance is started and, for a persistent
  type, restored from the store, where its state is kept under ``"<type>/<key>"``.
  Concurrent first messages activate it once.
* An entity that received nothing for ``passivate_after`` seconds, with nothing queued and
  no message in hand, is stopped (``on_stop`` runs; its last state is committed before its
  next activation reads it). The next message activates it again.
* ``max_active`` bounds memory: activating one more passivates the least recently used idle
  entity first (if all are busy, the bound is exceeded until one is idle).
* Each entity is supervised alone: a crash restarts that key only, from its last commit
  (the message that crashed it is a dead letter, its asker gets the exception); more than
  ``max_restarts`` crashes of one key within ``within`` seconds passivate that key instead
  (its queued messages become dead letters), so one poisoned conversation cannot take the
  type down. Breaker and time limits (``breaker=``, ``timeout=``...) are per key.
* Messages to one key are handled one at a time, in order, like any actor's; send them
  through ``rt.entity(...)``/``ctx.entity(...)`` refs (a message sent to an entity's
  ``self_ref`` after it was passivated is a dead letter).
* Keys are strings of 1 to ``max_key_length`` (default 200) characters without control
  characters; anything else raises ``TypeError``/``ValueError`` at ``rt.entity``.
* Metrics are labelled by type (``actor="support"``), never by key; ``rt.tree()`` shows the
  type's supervisor without its entities, and :func:`entity_types` / :func:`entity_lookup`
  give the counts and one key's state.

What a passivated entity costs in memory: its key in a set (for the counts and the lookup;
about 100 bytes). A persistent type's passivated keys are also in the store
(``understudy inspect app.db --entities``).
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import anyio
import msgspec
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from understudy._checks import count, group_name
from understudy._wake import Wake
from understudy.actors import DEFAULT_SHUTDOWN, Actor, Cell, Ref, spawn_cell, start_instance
from understudy.errors import ActorStopped, DeadlineExceeded, RuntimeClosed, UnknownActor
from understudy.messages import ExitReason, Message, Request
from understudy.meter import clock as meter_clock
from understudy.meter import count_restart, mark_supervisor
from understudy.metrics import ActorInfo
from understudy.metrics._tree import info_of
from understudy.pools import label_as, live
from understudy.resilience import check_limit
from understudy.supervision import (
    Child,
    ChildRestarted,
    RestartType,
    SimpleOneForOne,
    Supervisor,
    SupervisorActor,
)

if TYPE_CHECKING:
    from understudy.breaker import Breaker
    from understudy.fallback import Retry
    from understudy.runtime import Runtime

R = TypeVar("R")
logger = logging.getLogger("understudy")

MAX_KEY_LENGTH = 200
"""Default longest entity key, in characters."""


def check_key(key: object, type_name: str, max_length: int = MAX_KEY_LENGTH) -> str:
    """``key`` if it is a valid entity key; else ``TypeError``/``ValueError`` saying why."""
    if not isinstance(key, str):
        raise TypeError(
            f"entity key of type {type_name!r} must be a str, not {type(key).__name__} {key!r}"
        )
    if not key:
        raise ValueError(f"entity key of type {type_name!r} must not be empty")
    if len(key) > max_length:
        raise ValueError(
            f"entity key of type {type_name!r} is {len(key)} characters long; the limit is "
            f"{max_length} ({key[:40]!r}...)"
        )
    if not key.isprintable():
        raise ValueError(
            f"entity key of type {type_name!r} must not contain control characters: {key!r}"
        )
    return key


# ------------------------------------------------------------------------------ the spec


class Entities(Supervisor):
    """An entity type spec: one ``actor`` per key, under the type name ``name``.

    ``passivate_after``: idle seconds before an entity is passivated (None: never).
    ``max_active``: most entities active at once (None: unbounded). ``persistent`` (default:
    the class's) keeps each entity's ``State`` in the store; ``durability`` as for spawn.
    ``max_restarts``/``within``: crashes of one key tolerated (then it is passivated).
    ``max_key_length``: longest key. Other keywords are each entity's spawn options
    (``capacity``, ``overflow``, ``breaker``, ``timeout``, ...). ``restart``/``shutdown``/
    ``significant`` are those of the type's supervisor as a child. Validated here.
    """

    runner: ClassVar[type[SupervisorActor]]  # set below: EntitiesActor
    __slots__ = (
        "max_active",
        "max_key_length",
        "max_restarts_per_key",
        "passivate_after",
        "template",
        "within_per_key",
    )

    def __init__(
        self,
        actor: type[Actor] | Callable[[], Actor],
        *,
        name: str,
        passivate_after: float | None = 60.0,
        max_active: int | None = None,
        max_restarts: int = 3,
        within: float = 5.0,
        max_key_length: int = MAX_KEY_LENGTH,
        restart: RestartType = "permanent",
        shutdown: float | str = "infinity",
        significant: bool = False,
        **options: Any,
    ) -> None:
        where = f"Entities({getattr(actor, '__qualname__', actor)!r}, name={name!r})"
        group_name(name, where)
        self.passivate_after = check_limit(passivate_after, f"{where}: passivate_after")
        self.max_active = None if max_active is None else count(max_active, f"{where}: max_active")
        self.max_restarts_per_key = count(max_restarts, f"{where}: max_restarts", minimum=0)
        within_s = check_limit(within, f"{where}: within")
        assert within_s is not None
        self.within_per_key = within_s
        self.max_key_length = count(max_key_length, f"{where}: max_key_length")
        self.template = Child(actor, shutdown=DEFAULT_SHUTDOWN, restart="transient", **options)
        super().__init__(
            strategy=SimpleOneForOne(),
            children=[self.template],
            name=name,
            restart=restart,
            shutdown=shutdown,
            significant=significant,
            auto_shutdown="never",
        )

    def __repr__(self) -> str:
        return f"Entities({self.template.actor!r}, name={self.name!r})"


# ------------------------------------------------------------------------------- info


class EntityTypeInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One entity type: its class, how many entities are active and passivated, and how
    many activations and passivations (by reason: ``idle``, ``max_active``, ``crashes``)
    happened so far."""

    type: str
    actor_class: str = msgspec.field(name="class")
    active: int
    passivated: int
    activations: int
    passivations: dict[str, int]


class EntityInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One key of an entity type: ``state`` is ``active``, ``activating``,
    ``passivating``, ``passivated`` (seen before, not in memory now) or ``unknown``;
    ``actor`` is its live actor's snapshot when active."""

    type: str
    key: str
    state: Literal["active", "activating", "passivating", "passivated", "unknown"]
    actor: ActorInfo | None = None


# ---------------------------------------------------------------------------- the group


class Group:
    """An entity type's table of active keys, read by senders (internal).

    ``active`` is in least-recently-used order (a send moves its key to the end) and
    ``touched`` holds each active key's last send time: the sweeper passivates from the
    front while the front is idle."""

    __slots__ = (
        "activating",
        "activations",
        "active",
        "actor",
        "cell",
        "clock",
        "max_length",
        "name",
        "passivated",
        "passivating",
        "passivations",
        "touched",
    )

    def __init__(self, name: str, cell: Cell, actor: EntitiesActor) -> None:
        self.name = name
        self.cell = cell
        self.actor = actor
        self.clock = cell.system.clock
        self.active: collections.OrderedDict[str, Cell] = collections.OrderedDict()
        self.touched: dict[str, float] = {}
        self.activating: dict[str, Wake] = {}
        self.passivating: dict[str, Cell] = {}
        self.passivated: set[str] = set()
        self.max_length = actor.spec.max_key_length
        self.activations = 0
        self.passivations: dict[str, int] = {"idle": 0, "max_active": 0, "crashes": 0}

    def cell_for(self, key: str) -> Cell | None:
        """The active cell of ``key`` (marked as used now), or None. Never blocks."""
        cell = self.active.get(key)
        if cell is not None:
            self.active.move_to_end(key)
            self.touched[key] = self.clock()
        return cell

    async def activate(self, key: str) -> Cell:
        """The cell of ``key``, activating it if needed (once, however many ask at once)."""
        while True:
            cell = self.cell_for(key)
            if cell is not None:
                return cell
            pending = self.activating.get(key)
            if pending is not None:
                await pending.wait()
                continue
            event = self.activating[key] = Wake()
            try:
                stopping = self.passivating.get(key)
                if stopping is not None:
                    await stopping.wait_terminated()  # its last state is queued or committed
                cell = await self.actor.start_entity(key)
                self.active[key] = cell
                self.touched[key] = self.clock()
                self.passivated.discard(key)
                self.activations += 1
                return cell
            finally:
                del self.activating[key]
                event.set()

    def _router_cell(self) -> Cell:
        return self.cell

    def state_of(self, key: str) -> EntityInfo:
        cell = self.active.get(key)
        if cell is not None:
            return EntityInfo(
                type=self.name, key=key, state="active", actor=info_of(cell, meter_clock())
            )
        state: Literal["activating", "passivating", "passivated", "unknown"]
        if key in self.activating:
            state = "activating"
        elif key in self.passivating:
            state = "passivating"
        elif key in self.passivated:
            state = "passivated"
        else:
            state = "unknown"
        return EntityInfo(type=self.name, key=key, state=state)

    def info(self) -> EntityTypeInfo:
        return EntityTypeInfo(
            type=self.name,
            actor_class=self.actor.template_class.__qualname__,
            active=len(self.active),
            passivated=len(self.passivated),
            activations=self.activations,
            passivations=dict(self.passivations),
        )


class EntityRef(Ref):
    """The ref of one entity: valid whether it is active or passivated; a send activates it.

    ``tell``/``ask`` behave as for any actor (see :class:`~understudy.Ref`); the first send
    to a passivated key waits for its activation (its restore from the store) and raises
    what activating it raised (e.g. :class:`~understudy.CorruptState`), or
    :class:`~understudy.ActorStopped` when the type has stopped.
    """

    __slots__ = ("_group", "_key")

    def __init__(self, group: Group, key: str) -> None:
        super().__init__(group.cell)
        self._group = group
        self._key = key

    @property
    def name(self) -> str:
        """``"<type>/<key>"``."""
        return f"{self._group.name}/{self._key}"

    @property
    def key(self) -> str:
        """The entity's key."""
        return self._key

    def __repr__(self) -> str:
        return f"<EntityRef {self._group.name}/{self._key}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, EntityRef) and other._group is self._group and other._key == self._key
        )

    def __hash__(self) -> int:
        return hash((self._group.name, self._key))

    async def tell(self, msg: Message) -> None:
        """Send ``msg`` to the entity, activating it first if needed (see :meth:`Ref.tell`)."""
        group = self._group
        cell = group.cell_for(self._key)
        if cell is None:
            cell = await group.activate(self._key)
        await cell.ref.tell(msg)

    async def ask(
        self, msg: Request[R], *, timeout: float | None = None, retry: Retry | None = None
    ) -> R:
        """Ask the entity, activating it first if needed (see :meth:`Ref.ask`); ``timeout``
        covers the activation too."""
        if retry is not None:
            return await retry.ask(self, msg, timeout)
        group = self._group
        cell = group.cell_for(self._key)
        if cell is None:
            if timeout is None:
                cell = await group.activate(self._key)
            else:
                started = group.clock()
                with anyio.move_on_after(timeout) as scope:
                    cell = await group.activate(self._key)
                if cell is None or scope.cancelled_caught:
                    raise DeadlineExceeded(
                        f"ask({type(msg).__qualname__}) to entity {self.name!r}: its "
                        f"activation took longer than the timeout ({timeout} s)",
                        self.name,
                    )
                timeout = max(timeout - (group.clock() - started), 1e-9)
        return await cell.ref.ask(msg, timeout=timeout)


# ---------------------------------------------------------------------- the type's actor


class _Sweep(Message, frozen=True):
    pass


class _EntityCrashed(Message, frozen=True):
    cell: Cell
    generation: int
    key: str
    error: BaseException | None
    reason: ExitReason


class EntitiesActor(SupervisorActor):
    """The supervisor of one entity type: activates, restarts and passivates its keys."""

    hides_children: ClassVar[bool] = True  # rt.tree(): counts (entity_types), not 10^6 keys
    spec: Entities

    def __init__(self, spec: Entities, breakers: dict[str, Breaker] | None = None) -> None:
        super().__init__(spec, breakers)
        self.group: Group | None = None
        self.crashes: dict[str, collections.deque[float]] = {}
        template = spec.template.actor
        self.template_class: type[Actor] = (
            template if isinstance(template, type) else type(template())
        )

    async def on_start(self) -> None:
        me = self.ctx._cell
        mark_supervisor(me)
        runtime: Any = me.system
        known = runtime.routers.get(me.label)
        if isinstance(known, Group) and known.cell is me:
            # A restart of this type's supervisor: refs taken before it keep working. Its
            # entities ended with the previous instance; the next message reactivates them.
            for key in known.active:
                known.passivated.add(key)
            known.active.clear()
            known.touched.clear()
            known.actor = self
            self.group = known
        else:
            self.group = Group(me.label, me, self)
            runtime.routers[me.label] = self.group
        after = self.spec.passivate_after
        if after is not None:
            self.ctx.schedule_every(min(max(after / 4, 0.01), 1.0), _Sweep())

    async def start_entity(self, key: str) -> Cell:
        """Spawn the cell of ``key`` under this supervisor (called from a sender's task)."""
        me = self.ctx._cell if getattr(self, "ctx", None) is not None else None
        if me is None or me.instance is not self or me.stopping or me.terminated:
            raise ActorStopped(f"entity type {self.spec.name!r} has stopped")
        if me.system.shutting_down or me.system.closed:
            raise RuntimeClosed(f"cannot activate an entity of {me.label!r}: shutting down")
        group = self.group
        assert group is not None
        limit = self.spec.max_active
        if limit is not None and len(group.active) >= limit:
            self._evict(len(group.active) - limit + 1)
        template = self.spec.template
        cell = await spawn_cell(
            me.system,
            me,
            template.actor,
            name=f"{group.name}/{key}",
            shutdown=template.shutdown,
            supervisor=self,
            **template.options,
        )
        label_as(cell, group.name, me.system)
        return cell

    def _evict(self, count: int) -> None:
        """Passivate up to ``count`` least recently used idle entities (looks at 32)."""
        group = self.group
        assert group is not None
        idle: list[str] = []
        for looked, (key, cell) in enumerate(group.active.items()):
            if len(idle) >= count or looked >= count + 32:
                break
            if _idle(cell):
                idle.append(key)
        for key in idle:
            self._passivate(key, "max_active")

    def _passivate(self, key: str, reason: str) -> None:
        """Stop ``key``'s cell gracefully; senders from now on wait for a new activation."""
        group = self.group
        assert group is not None
        cell = group.active.pop(key)
        group.touched.pop(key, None)
        group.passivating[key] = cell
        group.passivations[reason] += 1
        self.ctx._cell.system.task_group.start_soon(self._stop_entity, key, cell)

    async def _stop_entity(self, key: str, cell: Cell) -> None:
        group = self.group
        assert group is not None
        try:
            await cell.stop("normal", cell.shutdown)
            store = getattr(cell.system, "store", None)
            if cell.persistence is not None and store is not None and cell.name is not None:
                with contextlib.suppress(Exception):  # a failed write: the next restore sees it
                    await store.committed(cell.name)  # passivated once its state is committed
        finally:
            if group.passivating.get(key) is cell:
                del group.passivating[key]
            if key not in group.active:
                group.passivated.add(key)

    async def sweep(self, msg: _Sweep) -> None:
        group = self.group
        after = self.spec.passivate_after
        if group is None or after is None:
            return
        cutoff = group.clock() - after
        touched = group.touched
        due: list[str] = []
        busy: list[str] = []
        for key, cell in group.active.items():
            if touched.get(key, 0.0) > cutoff:
                break  # LRU order: the rest were used later
            (due if _idle(cell) else busy).append(key)
        for key in due:
            self._passivate(key, "idle")
        for key in busy:  # still working: look again after another idle period
            group.active.move_to_end(key)
            touched[key] = group.clock()
        if self.crashes:
            self._prune_crashes()

    # -- the Supervising hook (in the entity's task, synchronously) --

    def child_exited(self, cell: Cell, reason: ExitReason, error: BaseException | None) -> bool:
        me = self.ctx._cell if getattr(self, "ctx", None) is not None else None
        group = self.group
        if me is None or me.instance is not self or me.stopping or group is None:
            return False
        key = cell.label[len(group.name) + 1 :]
        if reason not in ("failed", "killed") or group.active.get(key) is not cell:
            if group.active.get(key) is cell:  # it stopped itself (ctx.stop())
                del group.active[key]
                group.touched.pop(key, None)
                group.passivated.add(key)
            return False
        me.mailbox.put_system(
            ("message", _EntityCrashed(cell, cell.generation, key, error, reason))
        )
        return True

    async def handle_entity_crashed(self, msg: _EntityCrashed) -> None:
        cell = msg.cell
        group = self.group
        if group is None or cell.generation != msg.generation or cell.instance is not None:
            return
        logger.error(
            "entity %r of type %r exited (%s); restarting it from its last commit",
            msg.key,
            group.name,
            msg.reason,
            exc_info=msg.error,
            extra={"actor": cell.label, "correlation_id": None},
        )
        now = cell.system.clock()
        times = self.crashes.setdefault(msg.key, collections.deque())
        times.append(now)
        while times and times[0] <= now - self.spec.within_per_key:
            times.popleft()
        if len(times) > self.spec.max_restarts_per_key:
            del self.crashes[msg.key]
            if group.active.get(msg.key) is cell:
                del group.active[msg.key]
                group.touched.pop(msg.key, None)
                group.passivated.add(msg.key)
            group.passivations["crashes"] += 1
            cell.terminate(msg.reason, msg.error)
            return
        failure = await start_instance(cell, cell.new_instance(), msg.error)
        if failure is not None:  # cannot restart (its restore failed): passivate it
            if group.active.get(msg.key) is cell:
                del group.active[msg.key]
                group.touched.pop(msg.key, None)
            group.passivations["crashes"] += 1
            cell.terminate("failed", failure)
            return
        count_restart(cell, msg.reason)
        self._publish(
            ChildRestarted(
                actor=cell.label,
                supervisor=self.ctx.name,
                reason=msg.reason,
                error=msg.error,
                restarts=cell.restarts,
            )
        )

    def _prune_crashes(self) -> None:
        now = self.ctx._cell.system.clock()
        window = self.spec.within_per_key
        for key in [k for k, t in self.crashes.items() if not t or t[-1] <= now - window]:
            del self.crashes[key]


def _idle(cell: Cell) -> bool:
    """Nothing queued and no message in hand (waiting for mail, or not started)."""
    mailbox = cell.mailbox
    return not mailbox.queue and not mailbox.system and mailbox.waiter is not None


Entities.runner = EntitiesActor


# --------------------------------------------------------------------------- public reads


def _group(runtime: Runtime, type_name: str) -> Group:
    found = live(runtime, type_name)
    if not isinstance(found, Group):
        raise UnknownActor(f"no running entity type is named {type_name!r}")
    return found


def entity_ref(runtime: Runtime, type_name: str, key: str) -> EntityRef:
    """``rt.entity(type_name, key)`` (internal)."""
    if runtime.closed and runtime._entered:
        raise RuntimeClosed("the runtime has exited")
    if not isinstance(type_name, str):
        raise TypeError(f"entity type name must be a str, not {type_name!r}")
    group = _group(runtime, type_name)
    return EntityRef(group, check_key(key, type_name, group.max_length))


def entity_types(runtime: Runtime) -> list[EntityTypeInfo]:
    """Every running entity type with its counts, by name (for ``/tree``). Never blocks."""
    return [
        ref.info()
        for _, ref in sorted(runtime.routers.items())
        if isinstance(ref, Group) and not ref.cell.terminated
    ]


def entity_lookup(runtime: Runtime, type_name: str, key: str) -> EntityInfo:
    """One key's state (and its actor's snapshot when active). Never blocks. Raises
    :class:`UnknownActor` for no such type, ``TypeError``/``ValueError`` for a bad key."""
    group = _group(runtime, type_name)
    return group.state_of(check_key(key, type_name, group.max_length))


def entity_families(runtime: Runtime, *, describe: bool) -> Iterator[Metric]:
    """The entity metric families (read by the runtime's group collector)."""
    entities = GaugeMetricFamily(
        "understudy_entities",
        "Entities by type and state (active, passivated).",
        labels=["type", "state"],
    )
    activations = CounterMetricFamily(
        "understudy_entity_activations", "Entity activations by type.", labels=["type"]
    )
    passivations = CounterMetricFamily(
        "understudy_entity_passivations",
        "Entity passivations by type and reason (idle, max_active, crashes).",
        labels=["type", "reason"],
    )
    if not describe:
        for info in entity_types(runtime):
            entities.add_metric([info.type, "active"], info.active)
            entities.add_metric([info.type, "passivated"], info.passivated)
            activations.add_metric([info.type], info.activations)
            for reason, n in sorted(info.passivations.items()):
                passivations.add_metric([info.type, reason], n)
    yield entities
    yield activations
    yield passivations


__all__ = [
    "MAX_KEY_LENGTH",
    "Entities",
    "EntitiesActor",
    "EntityInfo",
    "EntityRef",
    "EntityTypeInfo",
    "check_key",
    "entity_lookup",
    "entity_ref",
    "entity_types",
]

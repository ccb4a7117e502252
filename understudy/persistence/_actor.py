"""Persistent actors: restore at start, persist after each message, replies after commit.

A persistent actor identity gets a :class:`Snapshots` link when it is spawned. Its cell then
runs :meth:`Snapshots.serve` instead of the plain serve loop (so actors that are not
persistent pay nothing), and every new instance — the first, and each one a supervisor makes
after a crash — starts from :meth:`Snapshots.restore`: the latest committed snapshot, or a
fresh ``State()`` when there is none.

Snapshot actors (``persistent = True``): after each message that completes, the instance's
``state`` is encoded (msgspec msgpack); if it differs from the last snapshot it is queued as
version + 1. Event-sourced actors (:class:`EventSourced`): the events the message persisted
with ``ctx.persist`` are queued for the journal, plus a snapshot every ``snapshot_every``
events; a restart replays the journal after the latest snapshot.

With ``durability="commit"`` an ask's reply is held until what this actor queued last — the
write holding this message's effects, or a later one — is committed; with ``"async"`` the
reply is released at once and the commit follows within one group (a process crash in
between loses effects that were already acknowledged: that is the documented window).

The actor does not wait for its commits: it goes on with the next message while the store
commits, and the store keeps the actor's writes in order (one entry per group, a later one
never committed before or without an earlier one). Waiting for each commit instead would
promise nothing more and costs (bench/persistence.py, 100 concurrent callers, several
runs): 6-23% of the throughput spread over 100 actors, and 12-30x on one hot actor, which
then commits once per message instead of once per group. A reply never reveals state that
is not committed: a read that changed nothing still waits for the pending write it observed.

A handler that raises leaves no half-applied state: its changes and events were never
queued, and the next instance restores from what is committed (after the writes still
queued have committed). A write that cannot be committed — an I/O error, a busy database
after the retries, a version conflict (:class:`~understudy.StaleState`) — fails every ask
waiting for it with :class:`~understudy.PersistenceError` and fails the actor at its next
message boundary, so a supervisor restarts it from what is on disk.
"""

from __future__ import annotations

import re
import typing
import weakref
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import msgspec

from understudy.actors import PERSISTENCE_FAILED, Actor, Cell, Durability
from understudy.errors import (
    CorruptState,
    KindChanged,
    PersistenceError,
    StateSchemaChanged,
)
from understudy.events import DeadLetter
from understudy.messages import ExitReason
from understudy.persistence._log import Log
from understudy.persistence._schema import Append, Event

if TYPE_CHECKING:
    from understudy.persistence._store import Store

DURABILITIES: tuple[Durability, ...] = ("commit", "async")

_FAILED = PERSISTENCE_FAILED
"""System-lane item kind: ``(_FAILED, error, generation)``, a write of that instance failed
(handled by ``Cell.system_message``)."""


class EventSourced(Actor):
    """Base class of event-sourced actors: the state is the sum of a journal of events.

    Declare the event types (msgspec Structs) in ``events``, change ``self.state`` only in
    :meth:`apply`, and record each change with ``await self.ctx.persist(event)``, which
    applies the event at once and journals it with the next sequence number::

        class Ledger(us.EventSourced):
            events = (Deposited, Withdrew)
            snapshot_every = 100

            class State(msgspec.Struct):
                balance: int = 0

            def apply(self, event: Deposited | Withdrew) -> None:
                if isinstance(event, Deposited):
                    self.state.balance += event.amount
                else:
                    self.state.balance -= event.amount

            async def deposit(self, msg: Deposit) -> int:
                await self.ctx.persist(Deposited(msg.amount))
                return self.state.balance

    The events of a message are committed together when it completes (none if its handler
    raises); with ``durability="commit"`` the reply waits for that commit. A snapshot of the
    state is written every ``snapshot_every`` events; a restart loads the latest snapshot and
    replays the events after it through :meth:`apply`, which must therefore be
    deterministic and do no I/O. The journal is kept as an audit trail (read it with
    ``Store.journal``) unless ``retain_events`` is set: then each snapshot also drops the
    events older than the last ``retain_events`` before it (``Store.prune_journal`` does
    the same on demand).
    """

    persistent = True
    events: ClassVar[tuple[type[msgspec.Struct], ...]] = ()
    """The event types this actor journals (msgspec Structs with distinct class names)."""
    snapshot_every: ClassVar[int] = 100
    """Write a snapshot after this many events."""
    retain_events: ClassVar[int | None] = None
    """None: keep the whole journal. n: when a snapshot is written, drop the events older
    than the n before it."""

    def apply(self, event: Any) -> None:
        """Apply one event to ``self.state`` (live, and when replaying the journal)."""
        raise NotImplementedError(f"{type(self).__qualname__} must define apply(self, event)")


_FIELD_IN_PATH = re.compile(r"\$\.([^.\[`]+)")
_MISSING_FIELD = re.compile(r"missing required field `([^`]+)`")


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, Log):
        return len(obj)  # the snapshot holds a log's length; its entries are rows of their own
    raise NotImplementedError(f"cannot encode {type(obj).__qualname__}")


def _dec_hook(tp: Any, obj: Any) -> Any:
    if typing.get_origin(tp) is Log and type(obj) is int and obj >= 0:
        log: Log[Any] = Log()
        log._restored(obj, [])  # the entries are filled in from their rows
        return log
    raise NotImplementedError(f"cannot decode {tp!r} from {type(obj).__qualname__}")


def _type_name(tp: Any) -> str:
    name = getattr(tp, "__name__", None)
    if name is not None and not typing.get_args(tp):
        return str(name)
    return repr(tp).replace("typing.", "").replace("understudy.persistence._log.", "")


def _stored_schema(raw: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {type(v).__name__}" for k, v in raw.items()) + "}"


def _custom_types(info: Any, seen: set[int] | None = None) -> list[str]:
    """The types in msgspec type info ``info`` that msgspec cannot encode by itself."""
    seen = set() if seen is None else seen
    if id(info) in seen:
        return []
    seen.add(id(info))
    if isinstance(info, msgspec.inspect.CustomType):
        return [info.cls.__qualname__]
    found: list[str] = []
    for value in getattr(info, "__struct_fields__", ()):
        child = getattr(info, value)
        if isinstance(child, tuple):
            for item in child:
                if isinstance(item, (msgspec.inspect.Type, msgspec.inspect.Field)):
                    found.extend(_custom_types(item, seen))
        elif isinstance(child, (msgspec.inspect.Type, msgspec.inspect.Field)):
            found.extend(_custom_types(child, seen))
    return found


class _LogField(NamedTuple):
    attr: str
    """The attribute of ``State``."""
    name: str
    """The field's stored name (its msgspec encode name)."""
    keep: int | None
    decoder: msgspec.msgpack.Decoder[Any]


class Layout:
    """What persisting a ``State`` type needs, computed once per type (entities of one
    type share it): its decoder, its fields, its ``Log`` fields."""

    __slots__ = ("decoder", "encoder", "expected", "logs", "names", "requests", "state_type")

    def __init__(self, state_type: type[msgspec.Struct], what: str, event_sourced: bool) -> None:
        self.state_type = state_type
        self.decoder = msgspec.msgpack.Decoder(state_type, dec_hook=_dec_hook)
        self.encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
        fields = msgspec.structs.fields(state_type)
        self.names = frozenset(f.encode_name for f in fields)
        self.expected = (
            "{" + ", ".join(f"{f.encode_name}: {_type_name(f.type)}" for f in fields) + "}"
        )
        logs: list[_LogField] = []
        for f in fields:
            if typing.get_origin(f.type) is not Log and f.type is not Log:
                continue
            where = f"{what}: State field {f.name!r}"
            if event_sourced:
                raise TypeError(
                    f"{where} is a Log, but an event-sourced actor's state is rebuilt from its "
                    "events: keep the history in the events (or use a snapshot actor)"
                )
            args = typing.get_args(f.type)
            if not args:
                raise TypeError(f"{where}: say what the log holds, e.g. us.Log[Turn]")
            try:
                custom = _custom_types(msgspec.inspect.type_info(args[0]))
            except TypeError as exc:
                custom = [str(exc)]
            if custom:
                raise TypeError(
                    f"{where}: a Log holds msgspec values (Structs, str, int, float, tuples, "
                    f"...), and {_type_name(args[0])} contains {', '.join(custom)}, which "
                    "msgspec cannot encode"
                )
            if f.default_factory is msgspec.NODEFAULT:
                raise TypeError(
                    f"{where} needs a fresh log per instance: declare it "
                    f"`{f.name}: us.Log[{_type_name(args[0])}] = us.Log.field()`"
                )
            fresh = f.default_factory()
            if not isinstance(fresh, Log) or len(fresh):
                raise TypeError(f"{where}: its default must be an empty Log (us.Log.field())")
            logs.append(
                _LogField(f.name, f.encode_name, fresh.keep, msgspec.msgpack.Decoder(args[0]))
            )
        self.logs = tuple(logs)
        self.requests: tuple[tuple[str, int | None], ...] = tuple((lf.name, lf.keep) for lf in logs)


_LAYOUTS: weakref.WeakKeyDictionary[type, Layout] = weakref.WeakKeyDictionary()


def layout_of(cls: type[Actor], what: str) -> Layout:
    """The (cached) :class:`Layout` of ``cls.State``; ``TypeError`` for a bad Log field."""
    state_type = cls.State
    assert state_type is not None
    layout = _LAYOUTS.get(state_type)
    if layout is None:
        layout = _LAYOUTS[state_type] = Layout(state_type, what, issubclass(cls, EventSourced))
    elif layout.logs and issubclass(cls, EventSourced):
        Layout(state_type, what, True)  # raises
    return layout


class Snapshots:
    """One persistent actor identity's link to its store; outlives its instances."""

    pipeline: ClassVar[bool] = True
    """Whether an actor goes on with its next message while its writes commit (True), or
    waits for the commit first (False: a slower mode kept for measurement, see bench/)."""

    __slots__ = (
        "broken",
        "buffer",
        "cell",
        "counts",
        "decoder",
        "decoders",
        "durability",
        "encoder",
        "generation",
        "key",
        "kinds",
        "last",
        "layout",
        "logs",
        "migrate",
        "retain",
        "seq",
        "serving",
        "snapshot_every",
        "state_type",
        "store",
        "version",
    )

    def __init__(self, store: Store, cell: Cell, layout: Layout, durability: Durability) -> None:
        assert cell.name is not None
        self.store = store
        self.cell = cell
        self.key = cell.name
        self.layout = layout
        self.state_type = layout.state_type
        self.durability: Durability = durability
        self.decoder = layout.decoder
        self.encoder = layout.encoder
        self.logs = layout.logs
        self.counts: dict[str, int] = {}
        """Each Log field's length as last handed to the store."""
        migrate = getattr(cell.actor_class, "migrate_state", None)
        self.migrate: typing.Callable[[dict[str, Any]], Any] | None = migrate
        self.version = 0
        """The version of the last snapshot loaded or queued."""
        self.last = b""
        self.generation = 0
        self.broken: PersistenceError | None = None
        self.serving = False
        # Event sourcing (kinds is None for a snapshot actor).
        self.kinds: dict[type, str] | None = None
        self.decoders: dict[str, msgspec.msgpack.Decoder[Any]] = {}
        self.seq = 0
        """The sequence number of the last event applied (event-sourced actors)."""
        self.buffer: list[Event] = []
        self.snapshot_every = 0
        self.retain: int | None = None
        cls = cell.actor_class
        if issubclass(cls, EventSourced):
            self.kinds = {tp: tp.__name__ for tp in cls.events}
            self.decoders = {tp.__name__: msgspec.msgpack.Decoder(tp) for tp in cls.events}
            self.snapshot_every = cls.snapshot_every
            self.retain = cls.retain_events

    # -- restoring --

    async def restore(self, instance: Actor) -> None:
        """Set ``instance.state`` to what a new instance starts from: the latest committed
        snapshot (and, for an event-sourced actor, the journal after it replayed), or a
        fresh ``State()``. Waits for this actor's writes still being committed. Raises
        :class:`CorruptState` (naming the actor and the row's version) if a row does not
        decode, :class:`PersistenceError` if it cannot be read."""
        store = self.store
        journaled = self.kinds is not None
        loaded = await store.restore_from(self.key, journal=journaled, logs=self.layout.requests)
        row, tail = loaded.result, loaded.tail
        if not journaled and loaded.last_event > (row[0] if row is not None else 0):
            raise KindChanged(self.key, row[0] if row is not None else 0, loaded.last_event)
        migrated = False
        if row is None:
            state = self.state_type()
            version, data = 0, self.encoder.encode(state)  # a row only once it changes
        else:
            version, data = row
            state, migrated = self.decode(version, data)
        counts = {}
        for log in self.logs:
            if migrated:
                self.keep_stored_log(state, log, data)
            counts[log.name] = self.restore_log(state, log, version, loaded.entries)
        instance.state = state
        seq = version
        if tail:
            seq = self.replay(instance, version, tail)
        self.version = version
        self.last = data
        self.seq = seq
        self.counts = counts
        self.buffer = []
        self.broken = None
        if migrated:
            await self.commit_migration(state)
        self.generation += 1  # only now: failures of the previous instance stay its own
        self.serving = True

    def decode(self, version: int, data: bytes) -> tuple[Any, bool]:
        """The stored snapshot as a ``State``, and whether it was migrated to one. Raises
        :class:`StateSchemaChanged` when it does not fit exactly and no migration is
        declared, :class:`CorruptState` when it does not decode at all."""
        try:
            raw = msgspec.msgpack.decode(data)
        except msgspec.DecodeError as exc:
            raise CorruptState(self.key, version, str(exc)) from exc
        if not isinstance(raw, dict):
            raise CorruptState(self.key, version, f"a {type(raw).__name__}, not a State")
        names = self.layout.names
        unknown = [name for name in raw if name not in names]
        cause: BaseException | None = None
        if unknown:
            field, problem = (
                unknown[0],
                "is stored but State has no such field (removed or renamed)",
            )
        else:
            try:
                return self.decoder.decode(data), False
            except msgspec.ValidationError as exc:
                cause = exc
                text = str(exc)
                missing = _MISSING_FIELD.search(text)
                path = _FIELD_IN_PATH.search(text)
                if missing is not None:
                    field, problem = missing.group(1), "is required by State but not stored"
                else:
                    field = path.group(1) if path is not None else "?"
                    problem = f"does not decode into its declared type ({text})"
        error = StateSchemaChanged(
            self.key, version, field, problem, _stored_schema(raw), self.layout.expected
        )
        migrate = self.migrate
        if migrate is None:
            raise error from cause
        try:
            result = migrate(dict(raw))
            if isinstance(result, dict):
                result = msgspec.convert(result, self.state_type, dec_hook=_dec_hook)
            if not isinstance(result, self.state_type):
                raise TypeError(
                    f"it returned a {type(result).__qualname__}, not a "
                    f"{self.state_type.__qualname__} (or a dict of its fields)"
                )
        except Exception as exc:
            raise CorruptState(
                self.key, version, f"its migrate_state failed: {exc!r} (on {error.detail})"
            ) from exc
        return result, True

    def keep_stored_log(self, state: Any, log: _LogField, data: bytes) -> None:
        """After a migration that built a fresh Log for a field whose entries are stored:
        the stored entries stay that log's (a migration does not rewrite log rows)."""
        stored = msgspec.msgpack.decode(data).get(log.name)
        current = getattr(state, log.attr)
        if type(stored) is int and stored > 0 and isinstance(current, Log) and not len(current):
            current._restored(stored, [])

    def restore_log(
        self, state: Any, log: _LogField, version: int, entries: dict[str, list[tuple[int, bytes]]]
    ) -> int:
        """Fill ``state``'s Log field from its committed rows; the log's stored length."""
        current = getattr(state, log.attr)
        if not isinstance(current, Log):
            raise CorruptState(self.key, version, f"Log field {log.name!r} holds {current!r}")
        count = current._queued
        if count == 0:  # a fresh log, or one a migration made: its entries are new
            current.keep = log.keep
            return 0
        rows = [row for row in entries.get(log.name, ()) if row[0] <= count]
        first = rows[0][0] if rows else count + 1
        expected_first = 1 if log.keep is None else max(count - log.keep + 1, 1)
        if first != expected_first or len(rows) != count - first + 1:
            raise CorruptState(
                self.key,
                version,
                f"Log field {log.name!r} has {count} entries but {len(rows)} rows from "
                f"{first} are stored",
                row="log",
            )
        decoder = log.decoder
        try:
            values = [decoder.decode(data) for _, data in rows]
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise CorruptState(self.key, version, f"{log.name}: {exc}", row="log entry") from exc
        current._restored(count, values)
        current.keep = log.keep
        return count

    async def commit_migration(self, state: Any) -> None:
        """Write a migrated state as the next version and wait for its commit (the old row
        stays until then); raises :class:`PersistenceError` if it cannot be committed."""
        data = self.encoder.encode(state)
        base = self.version
        appends = self.appends(state) if self.logs else None
        self.store.write(self.key, base, base + 1, data, self, appends=appends)
        await self.store.committed(self.key)
        if self.broken is not None:
            raise self.broken
        self.version = base + 1
        self.last = data

    def appends(self, state: Any) -> list[Append] | None:
        """The entries appended to ``state``'s logs since the last write, as rows."""
        rows: list[Append] | None = None
        encode = self.encoder.encode
        counts = self.counts
        for log in self.logs:
            value = getattr(state, log.attr)
            if not isinstance(value, Log) or value._queued != counts.get(log.name, 0):
                raise TypeError(
                    f"actor {self.key!r}: State field {log.attr!r} is an append-only Log; "
                    "append to it, do not replace it"
                )
            first, new = value._take()
            if new:
                counts[log.name] = first + len(new)
                if rows is None:
                    rows = []
                name = log.name
                rows.extend((name, first + 1 + i, encode(entry)) for i, entry in enumerate(new))
        return rows

    def rollback_in_memory(self, instance: Actor) -> bool:
        """Undo what the current message changed in ``instance.state`` (for a handler error
        answered without a restart): the state of the last completed message, its logs
        without the entries appended since. Returns False (nothing done) for an
        event-sourced actor, whose state is only rebuilt by replaying: restart it."""
        if self.kinds is not None:
            return False
        old = instance.state
        state = self.decoder.decode(self.last)
        for log in self.logs:
            live = getattr(old, log.attr, None)
            if isinstance(live, Log) and live._queued == self.counts.get(log.name, 0):
                live._truncate(live._queued)
                setattr(state, log.attr, live)
            else:
                fresh = getattr(state, log.attr)
                fresh.keep = log.keep
                # entries older than the last write are in the store: restart to see them
                if len(fresh):
                    return False
        instance.state = state
        return True

    def replay(
        self, instance: Actor, version: int, tail: list[tuple[int, str, bytes, float]]
    ) -> int:
        """Apply the journal entries after the snapshot; the last sequence number."""
        assert isinstance(instance, EventSourced)
        expected = version + 1
        for seq, kind, data, _ in tail:
            if seq != expected:
                raise CorruptState(
                    self.key,
                    seq,
                    f"the journal skips from {expected - 1} to {seq}",
                    row="journal entry",
                )
            decoder = self.decoders.get(kind)
            if decoder is None:
                raise CorruptState(
                    self.key,
                    seq,
                    f"unknown event type {kind!r} (it journals {sorted(self.decoders)})",
                    row="journal entry",
                )
            try:
                event = decoder.decode(data)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise CorruptState(self.key, seq, f"{kind}: {exc}", row="journal entry") from exc
            instance.apply(event)
            expected += 1
        return expected - 1

    # -- persisting --

    def persist(self, instance: Actor, event: Any) -> None:
        """Apply ``event`` to ``instance`` and journal it with the next sequence number
        (committed when the current message completes). Never blocks."""
        kinds = self.kinds
        if kinds is None:
            raise TypeError(
                f"actor {self.key!r} is not event-sourced: ctx.persist needs an "
                "understudy.EventSourced actor (a snapshot actor just changes self.state)"
            )
        kind = kinds.get(type(event))
        if kind is None:
            raise TypeError(
                f"actor {self.key!r} cannot persist {type(event).__qualname__}: its events "
                f"are {sorted(kinds.values())}"
            )
        if not self.serving:
            raise RuntimeError(
                f"actor {self.key!r}: ctx.persist is only possible while the actor serves "
                "(in handlers and on_start), not after it stopped"
            )
        assert isinstance(instance, EventSourced)
        data = self.encoder.encode(event)
        instance.apply(event)
        self.seq += 1
        self.buffer.append((self.seq, kind, data))

    def persistence_failed(self, error: PersistenceError, letters: list[Any]) -> None:
        """Called by the store when a write of this actor failed; the instance fails at
        its next message boundary (first in line: the system lane). Every message whose
        effect the write held (``letters``: their envelopes) becomes a dead letter with
        reason ``commit_failed`` (an asker's reply already got the error). Never blocks."""
        if self.broken is None:
            self.broken = error
        cell = self.cell
        if letters:
            system = cell.system
            for envelope in letters:
                letter = DeadLetter(
                    actor=cell.label,
                    message=envelope[0],
                    reason="commit_failed",
                    correlation_id=format(envelope[3], "x"),
                )
                system.dead_letters.record(letter)
                if system.events.active:
                    system.events.publish(letter)
        if not cell.terminated:
            cell.mailbox.put_system((_FAILED, error, self.generation))

    def completed(self, state: Any, reply: Any, result: Any, envelope: Any = None) -> None:
        """A message completed: queue what it changed, release ``reply`` now or after the
        commit. ``envelope`` (None for system-lane work) is the message's, kept with the
        write so that a failed commit makes it a ``commit_failed`` dead letter.

        Raises ``msgspec.EncodeError`` if the state cannot be encoded (then nothing is
        queued and ``reply`` is untouched)."""
        broken = self.broken
        if broken is not None:
            # An earlier write failed: nothing from this instance can be committed now.
            if reply is not None:
                reply.fail(PersistenceError(f"actor {self.key!r} cannot persist: {broken}"))
            return
        store = self.store
        if self.kinds is None:
            data = self.encoder.encode(state)
            appends = self.appends(state) if self.logs else None  # also refuses a replaced log
            if data != self.last:
                self.last = data
                base = self.version
                self.version = base + 1
                store.write(self.key, base, base + 1, data, self, letter=envelope, appends=appends)
        elif self.buffer:
            events = self.buffer
            self.buffer = []
            seq = self.seq
            if seq - self.version >= self.snapshot_every:
                base = self.version
                self.version = seq
                retain = self.retain
                prune = seq - retain if retain is not None and seq > retain else 0
                data = self.encoder.encode(state)
                store.write(self.key, base, seq, data, self, events, prune, envelope)
            else:
                store.write(self.key, self.version, self.version, None, self, events, 0, envelope)
        if reply is not None and not (
            self.durability == "commit" and store.wait_for_commit(self.key, reply, result)
        ):
            reply.value = result
            reply.event.set()

    # -- serving (the loop is Cell.serve; these are its hooks) --

    async def serve(self, cell: Cell, instance: Actor) -> tuple[ExitReason, BaseException | None]:
        """Serve a persistent cell: ``Cell.serve_instance``, whose loop calls
        :meth:`completed` after each message (and :meth:`committed` when not pipelined)."""
        try:
            if self.buffer:  # events persisted by on_start
                self.completed(instance.state, None, None)
            return await cell.serve_instance(instance)
        finally:
            self.serving = False

    async def committed(self) -> None:
        """Wait until this actor's queued writes are committed (the loop, unpipelined)."""
        await self.store.committed(self.key)

    async def rollback(self, instance: Actor) -> None:
        """Undo what the failed message changed: the state goes back to the last completed
        message's (what was queued or committed); its journaled events are dropped."""
        if self.kinds is None:
            if not self.rollback_in_memory(instance):
                # a log's older entries are only in the store: rebuild from what committed
                await self.store.committed(self.key)
                await self.restore(instance)
            return
        if not self.buffer:
            return  # an event-sourced state changes only through persisted events
        self.seq -= len(self.buffer)
        self.buffer = []
        # Rebuild from the store: the last snapshot plus the journal after it, once what
        # this actor queued before is committed.
        await self.store.committed(self.key)
        row, tail = await self.store.load_journaled(self.key)
        state = self.state_type() if row is None else self.decoder.decode(row[1])
        instance.state = state
        if tail:
            self.replay(instance, 0 if row is None else row[0], tail)


def attach(store: Store | None, cell: Cell, durability: Durability | None) -> Snapshots:
    """Make ``cell`` persistent in ``store``; a clear error when it cannot be.

    Raises ``ValueError`` when the runtime has no store, the actor is unnamed, or
    ``durability`` is not ``"commit"``/``"async"``; ``TypeError`` when the actor class
    declares no ``State``, or is event-sourced without valid ``events``.
    """
    cls = cell.actor_class
    what = f"actor {cell.label!r} ({cls.__qualname__})"
    if cell.name is None:
        raise ValueError(
            f"{what} cannot be persistent: it has no name. A persistent actor's snapshots are "
            "stored under its name, so spawn it with name=..."
        )
    if cls.State is None:
        raise TypeError(
            f"{what} cannot be persistent: its class declares no State. Declare a nested "
            "`class State(msgspec.Struct)` holding what must survive a restart"
        )
    if issubclass(cls, EventSourced):
        _check_event_sourced(cls, what)
    if durability is None:
        durability = cls.durability
    if durability not in DURABILITIES:
        raise ValueError(f"{what}: durability must be one of {DURABILITIES}, not {durability!r}")
    if store is None:
        raise ValueError(
            f"{what} is persistent but the runtime has no store: "
            "open one with us.Runtime(store='app.db')"
        )
    return Snapshots(store, cell, layout_of(cls, what), durability)


def _check_event_sourced(cls: type[EventSourced], what: str) -> None:
    events = cls.events
    if not isinstance(events, tuple) or not events:
        raise TypeError(f"{what} is event-sourced but declares no events: events = (A, B, ...)")
    names: dict[str, type] = {}
    for tp in events:
        if not (isinstance(tp, type) and issubclass(tp, msgspec.Struct)):
            raise TypeError(f"{what}: event type {tp!r} is not a msgspec.Struct")
        if tp.__name__ in names:
            raise TypeError(
                f"{what}: two event types are named {tp.__name__!r}; the journal stores events "
                "by class name, so event types need distinct names"
            )
        names[tp.__name__] = tp
    every = cls.snapshot_every
    if isinstance(every, bool) or not isinstance(every, int) or every <= 0:
        raise ValueError(f"{what}: snapshot_every must be a positive int, not {every!r}")
    retain = cls.retain_events
    if retain is not None and (
        isinstance(retain, bool) or not isinstance(retain, int) or retain < 0
    ):
        raise ValueError(f"{what}: retain_events must be None or an int >= 0, not {retain!r}")


__all__ = ["DURABILITIES", "EventSourced", "Snapshots", "attach"]

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

from typing import TYPE_CHECKING, Any, ClassVar

import anyio.lowlevel
import msgspec

from understudy.actors import SKIPPED, Actor, Cell, Durability
from understudy.errors import CorruptState, Killed, PersistenceError
from understudy.events import DeadLetter
from understudy.messages import ExitReason
from understudy.persistence._schema import Event

if TYPE_CHECKING:
    from understudy.persistence._store import Store

DURABILITIES: tuple[Durability, ...] = ("commit", "async")

_FAILED = "persistence_failed"
"""System-lane item kind: ``(_FAILED, error, generation)``, a write of that instance failed."""


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


class Snapshots:
    """One persistent actor identity's link to its store; outlives its instances."""

    pipeline: ClassVar[bool] = True
    """Whether an actor goes on with its next message while its writes commit (True), or
    waits for the commit first (False: a slower mode kept for measurement, see bench/)."""

    __slots__ = (
        "broken",
        "buffer",
        "cell",
        "decoder",
        "decoders",
        "durability",
        "encoder",
        "generation",
        "key",
        "kinds",
        "last",
        "retain",
        "seq",
        "serving",
        "snapshot_every",
        "state_type",
        "store",
        "version",
    )

    def __init__(
        self, store: Store, cell: Cell, state_type: type[msgspec.Struct], durability: Durability
    ) -> None:
        assert cell.name is not None
        self.store = store
        self.cell = cell
        self.key = cell.name
        self.state_type = state_type
        self.durability: Durability = durability
        self.decoder = msgspec.msgpack.Decoder(state_type)
        self.encoder = msgspec.msgpack.Encoder()
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
        if self.kinds is None:
            row = await store.load(self.key)
            tail: list[tuple[int, str, bytes, float]] = []
        else:
            row, tail = await store.load_journaled(self.key)
        if row is None:
            state = self.state_type()
            version, data = 0, self.encoder.encode(state)  # a row only once it changes
        else:
            version, data = row
            try:
                state = self.decoder.decode(data)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise CorruptState(self.key, version, str(exc)) from exc
        instance.state = state
        seq = version
        if tail:
            seq = self.replay(instance, version, tail)
        self.version = version
        self.last = data
        self.seq = seq
        self.buffer = []
        self.generation += 1  # only now: failures of the previous instance stay its own
        self.broken = None
        self.serving = True

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
            if data != self.last:
                self.last = data
                base = self.version
                self.version = base + 1
                store.write(self.key, base, base + 1, data, self, letter=envelope)
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

    # -- serving --

    async def serve(self, cell: Cell, instance: Actor) -> tuple[ExitReason, BaseException | None]:
        """The serve loop of a persistent cell: ``Cell.serve`` plus a write per message."""
        try:
            return await self._serve(cell, instance)
        finally:
            self.serving = False

    async def _serve(self, cell: Cell, instance: Actor) -> tuple[ExitReason, BaseException | None]:
        # Cell.serve (the meter's pacing included), plus completed() after each message and
        # the system-lane item by which the store fails this instance.
        mailbox = cell.mailbox
        queue = mailbox.queue
        system = mailbox.system
        meter = cell.meter
        generation = self.generation
        pipeline = self.pipeline
        guard = cell.guard  # breaker and time limits (understudy.resilience), as Cell.serve
        watch = guard if guard is not None and guard.watching() else None
        if self.buffer:  # events persisted by on_start
            self.completed(instance.state, None, None)
        budget = meter.open()
        while True:
            if system:
                meter.close(budget)
                item = system.pop(0)
                if item[0] == _FAILED:
                    if item[2] == generation:
                        return "failed", item[1]
                    budget = meter.resume()
                    continue
                outcome = await cell.system_message(instance, item)
                if outcome is not None:
                    return outcome
                try:  # a Terminated (or internal) handler may have changed the state
                    self.completed(instance.state, None, None)
                except Exception as exc:
                    exc.add_note(f"raised persisting the state of actor {cell.label!r}")
                    return "failed", exc
                budget = meter.resume()
            elif queue:
                envelope = queue.popleft()
                if mailbox.senders:
                    mailbox.wake_sender()
                cell.current = envelope
                msg, handler, reply, _, stamp, limits = envelope
                if stamp:
                    budget = meter.waited(stamp, budget)
                if limits is not None and not cell.admit(limits, envelope):
                    continue  # its deadline passed: not processed
                try:
                    if watch is None:
                        result = await handler(instance, msg)
                    else:
                        result = await watch.run(cell, handler, instance, envelope)
                        if result is SKIPPED:
                            continue  # refused by the open breaker: nothing to persist
                        if not watch.watching():
                            watch = None
                    self.completed(instance.state, reply, result, envelope)
                except Exception as exc:
                    meter.close(budget - 1)
                    meter.errors += 1
                    cell.crashed(envelope, exc)
                    return "failed", exc
                except BaseException:
                    meter.close(budget)
                    if guard is not None:
                        guard.interrupted()
                    if reply is not None:
                        reply.fail(Killed(f"actor {cell.label!r} was stopped while handling it"))
                    raise
                budget -= 1
                if not pipeline:
                    meter.close(budget)
                    await self.store.committed(self.key)
                    budget = meter.resume()
                if not budget:
                    budget = meter.tally()
                    if not budget:
                        await anyio.lowlevel.checkpoint()
                        budget = meter.open()
            else:
                meter.close(budget)
                await mailbox.wait()
                budget = meter.open()


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
    return Snapshots(store, cell, cls.State, durability)


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

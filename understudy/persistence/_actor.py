"""Persistent actors: restore at start, snapshot after each message, replies after commit.

A persistent actor identity gets a :class:`Snapshots` link when it is spawned. Its cell then
runs :meth:`Snapshots.serve` instead of the plain serve loop (so actors that are not
persistent pay nothing), and every new instance — the first, and each one a supervisor makes
after a crash — starts from :meth:`Snapshots.restore`: the latest committed snapshot, or a
fresh ``State()`` when there is none.

After each message that completes, the instance's ``state`` is encoded (msgspec msgpack); if
it differs from the last snapshot it is queued as version + 1. With ``durability="commit"``
an ask's reply is held until the newest snapshot queued for this actor — the one holding
this message's effects, or a later one — is committed; with ``"async"`` the reply is
released at once and the commit follows within one group (a process crash in between loses
effects that were already acknowledged: that is the documented window).

The actor does not wait for its commits: it goes on with the next message while the store
commits, and the store keeps the actor's snapshots in order (one per group, a later one
never committed before or without an earlier one). A reply never reveals state that is not
committed: a read that changed nothing still waits for the pending snapshot it observed.

A handler that raises leaves no half-applied state: its changes were never snapshotted, and
the next instance restores from the last committed snapshot (after the ones still queued
have committed). A snapshot that cannot be committed — an I/O error, a busy database after
the retries, a version conflict (:class:`~understudy.StaleState`) — fails every ask waiting
for it with :class:`~understudy.PersistenceError` and fails the actor at its next message
boundary, so a supervisor restarts it from what is on disk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import anyio.lowlevel
import msgspec

from understudy.actors import BATCH, Actor, Cell, Durability
from understudy.errors import CorruptState, Killed, PersistenceError
from understudy.messages import ExitReason

if TYPE_CHECKING:
    from understudy.persistence._store import Store

DURABILITIES: tuple[Durability, ...] = ("commit", "async")

_FAILED = "persistence_failed"
"""System-lane item kind: ``(_FAILED, error, generation)``, a snapshot of that instance failed."""


class Snapshots:
    """One persistent actor identity's link to its store; outlives its instances."""

    pipeline: ClassVar[bool] = True
    """Whether an actor goes on with its next message while its snapshot commits (True), or
    waits for the commit first (False: a slower mode kept for measurement, see bench/)."""

    __slots__ = (
        "broken",
        "cell",
        "decoder",
        "durability",
        "encoder",
        "generation",
        "key",
        "last",
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
        self.last = b""
        self.generation = 0
        self.broken: PersistenceError | None = None

    async def restore(self) -> Any:
        """The state a new instance starts from: the latest committed snapshot, or a fresh
        ``State()``. Waits for this actor's snapshots still being committed. Raises
        :class:`CorruptState` (naming the actor and the row's version) if the row does not
        decode, :class:`PersistenceError` if it cannot be read."""
        row = await self.store.load(self.key)
        if row is None:
            state = self.state_type()
            version, data = 0, self.encoder.encode(state)  # a row only once it changes
        else:
            version, data = row
            try:
                state = self.decoder.decode(data)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise CorruptState(self.key, version, str(exc)) from exc
        self.version = version
        self.last = data
        self.generation += 1  # only now: failures of the previous instance stay its own
        self.broken = None
        return state

    def persistence_failed(self, error: PersistenceError) -> None:
        """Called by the store when a snapshot of this actor failed; the instance fails at
        its next message boundary (first in line: the system lane). Never blocks."""
        if self.broken is None:
            self.broken = error
        cell = self.cell
        if not cell.terminated:
            cell.mailbox.put_system((_FAILED, error, self.generation))

    def snapshot(self, state: Any, reply: Any, result: Any) -> None:
        """Queue ``state`` if it changed, and release ``reply`` now or after the commit.

        Raises ``msgspec.EncodeError`` if the state cannot be encoded (then nothing is
        queued and ``reply`` is untouched)."""
        broken = self.broken
        if broken is not None:
            # An earlier snapshot failed: nothing from this instance can be committed now.
            if reply is not None:
                reply.fail(PersistenceError(f"actor {self.key!r} cannot persist: {broken}"))
            return
        data = self.encoder.encode(state)
        store = self.store
        if data != self.last:
            self.last = data
            base = self.version
            self.version = base + 1
            store.write(self.key, base, base + 1, data, self)
        if reply is not None and not (
            self.durability == "commit" and store.wait_for_commit(self.key, reply, result)
        ):
            reply.value = result
            reply.event.set()

    async def serve(self, cell: Cell, instance: Actor) -> tuple[ExitReason, BaseException | None]:
        """The serve loop of a persistent cell: ``Cell.serve`` plus a snapshot per message."""
        mailbox = cell.mailbox
        queue = mailbox.queue
        system = mailbox.system
        generation = self.generation
        pipeline = self.pipeline
        budget = BATCH
        while True:
            if system:
                item = system.pop(0)
                if item[0] == _FAILED:
                    if item[2] == generation:
                        return "failed", item[1]
                    continue
                outcome = await cell.system_message(instance, item)
                if outcome is not None:
                    return outcome
                if item[0] == "terminated":  # its handler may have changed the state
                    try:
                        self.snapshot(instance.state, None, None)
                    except Exception as exc:
                        exc.add_note(f"raised encoding the state of actor {cell.label!r}")
                        return "failed", exc
            elif queue:
                envelope = queue.popleft()
                if mailbox.senders:
                    mailbox.senders.popleft().set()
                cell.current = envelope
                msg, handler, reply, _ = envelope
                try:
                    result = await handler(instance, msg)
                except Exception as exc:
                    cell.crashed(envelope, exc)
                    return "failed", exc
                except BaseException:
                    if reply is not None:
                        reply.fail(Killed(f"actor {cell.label!r} was stopped while handling it"))
                    raise
                try:
                    self.snapshot(instance.state, reply, result)
                except Exception as exc:
                    exc.add_note(f"raised encoding the state of actor {cell.label!r}")
                    cell.crashed(envelope, exc)
                    return "failed", exc
                if not pipeline:
                    await self.store.committed(self.key)
                budget -= 1
                if not budget:
                    budget = BATCH
                    await anyio.lowlevel.checkpoint()
            else:
                budget = BATCH
                await mailbox.wait()


def attach(store: Store | None, cell: Cell, durability: Durability | None) -> Snapshots:
    """Make ``cell`` persistent in ``store``; a clear error when it cannot be.

    Raises ``ValueError`` when the runtime has no store, the actor is unnamed, or
    ``durability`` is not ``"commit"``/``"async"``; ``TypeError`` when the actor class
    declares no ``State``.
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


__all__ = ["DURABILITIES", "Snapshots", "attach"]

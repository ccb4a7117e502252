"""Persistence: actor state in SQLite that survives crashes, restarts and a killed process.

A persistent actor (``persistent=True`` on spawn, or ``persistent = True`` on the class) is
named and declares a ``State`` (a :class:`msgspec.Struct`). It starts from the latest
committed snapshot of that state — or a fresh ``State()`` — and after each message that
completes its state is snapshotted (msgspec msgpack) with the next version number.

The promise: once an ``ask`` to a persistent actor with ``durability="commit"`` (the default)
has returned, its effect is committed to the store. A crash of the actor, a restart of the
process or a SIGKILL loses none of it; a message whose handler raised leaves no
half-applied change (the next instance restores from the last committed snapshot). How much
a commit survives is the store's ``synchronous`` setting: ``"normal"`` (default) survives
any crash of the process, ``"full"`` also a power loss.

Event sourcing: an :class:`EventSourced` actor records changes as events with ``await
self.ctx.persist(event)``; they go to an append-only journal (with sequence numbers), a
snapshot is written every ``snapshot_every`` events, and a restart replays the journal after
the latest snapshot. The journal is an audit trail (``Store.journal``) with retention
(``retain_events``, ``Store.prune_journal``).

Growing state persists by delta: a :class:`Log` field (``turns: us.Log[Turn] =
us.Log.field()``) is stored as one row per entry, appended in the transaction of the
snapshot, which holds only the log's length (see :mod:`understudy.persistence._log`).

Schema changes: a stored snapshot must decode exactly into the current ``State``. A field
removed, renamed or retyped is refused at start with :class:`~understudy.StateSchemaChanged`
(naming the actor, the field and the stored schema), unless the actor class declares
``migrate_state(stored: dict) -> State`` (a staticmethod; it may return a dict of fields):
then the row is converted once and the result committed as the next version before the
actor serves. Fields added with a default need nothing. A plain persistent actor whose
journal holds events after its snapshot (it was event-sourced) is refused with
:class:`~understudy.KindChanged` rather than restored without them.

The store also keeps persistent budgets (``rt.budget(name=..., persistent=True)``, see
:mod:`understudy.budgets`), written with the next group after each change.

The :class:`Store` commits in groups with one writer task, so many concurrent asks share one
transaction; writes are compare-and-set on the version, so two runtimes on one file fail
with :class:`~understudy.StaleState` instead of overwriting each other. SQLite runs through
aiosqlite on asyncio and through stdlib ``sqlite3`` on a worker thread on trio.
"""

from understudy.persistence._actor import DURABILITIES, EventSourced, Snapshots, attach
from understudy.persistence._log import Log
from understudy.persistence._metrics import StoreCollector
from understudy.persistence._schema import SCHEMA_VERSION, SYNCHRONOUS, Synchronous
from understudy.persistence._store import InjectedWriteError, Store, StoreStats

__all__ = [
    "DURABILITIES",
    "SCHEMA_VERSION",
    "SYNCHRONOUS",
    "EventSourced",
    "InjectedWriteError",
    "Log",
    "Snapshots",
    "Store",
    "StoreCollector",
    "StoreStats",
    "Synchronous",
    "attach",
]

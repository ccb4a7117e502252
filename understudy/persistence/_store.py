"""The store: one SQLite file, one writer task, group commit.

Snapshots are queued with :meth:`Store.write` (never blocks) and committed by the store's one
writer task. Each time the writer starts a transaction it takes *every* snapshot queued at
that moment — a group — and commits it in one transaction. Several snapshots of one actor
queued before the writer took them collapse into the newest one, since only the newest is
worth writing. Everyone waiting on a snapshot of the group is released after ``COMMIT``
returned, or every one of them gets :class:`~understudy.PersistenceError` if the group failed.
While a group commits, new snapshots queue up for the next one: the more concurrent writers,
the bigger the groups, so throughput rises with load instead of being capped by the rate of
commits (fsyncs, with ``synchronous="full"``).

Order per actor: an actor's snapshots are committed in the order they were written, each
group holds at most one snapshot per actor, and a snapshot is never committed after one of
its predecessors failed (the chain is broken: it fails too).

Compare-and-set: every write names the version it was built on. A row that holds another
version (another runtime wrote that actor) refuses the write, and the writer reports
:class:`~understudy.StaleState` for that actor only; the rest of the group commits. Journal
entries (event-sourced actors) are compare-and-set too: a sequence number is taken once.

Reads (an actor's snapshot when it starts) and maintenance (journal retention) go through
the same writer, after the group in progress, so a read always sees every write queued
before it and a busy writer cannot starve them.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, cast

import anyio
from anyio.abc import TaskGroup

from understudy._wake import Wake
from understudy.errors import PersistenceError, StaleState
from understudy.persistence import _ops
from understudy.persistence._backends import Driver, open_driver
from understudy.persistence._schema import (
    SYNCHRONOUS,
    Append,
    BudgetRow,
    Event,
    Stale,
    Synchronous,
    Write,
    is_transient,
    prepare,
)

logger = logging.getLogger("understudy")


class Owner(Protocol):
    """Who wrote a snapshot: told (in the event loop, never blocking) when it failed, with
    the ``letter`` of every message whose effect that write held (see :meth:`Store.write`)."""

    def persistence_failed(self, error: PersistenceError, letters: list[Any]) -> None: ...


class Waiter(Protocol):
    """A reply slot released when a snapshot or a journal append commits
    (``understudy.refs.Reply``)."""

    value: Any

    @property
    def event(self) -> Wake: ...

    def fail(self, error: BaseException) -> None: ...


class BudgetFigures(Protocol):
    """A persistent budget, as the store writes it (``understudy.budgets.Budget``)."""

    def stored_row(self) -> BudgetRow: ...


class InjectedWriteError(sqlite3.OperationalError):
    """A write failure made on purpose by :meth:`Store.fail_next_commits` (a test hook)."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


COMMIT_SECONDS_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds of the commit duration histogram (seconds); ``+Inf`` follows."""
GROUP_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)
"""Upper bounds of the group size histogram (actors written per commit)."""
SNAPSHOT_BYTES_BUCKETS: tuple[float, ...] = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)
"""Upper bounds of the snapshot size histogram (bytes)."""


MAX_SECONDS = 86_400.0
"""The longest ``busy_timeout`` a store accepts (SQLite takes milliseconds as a C int)."""


def _seconds(value: object, name: str, *, positive: bool, most: float) -> float:
    """A finite duration option of :class:`Store`; ``ValueError``/``TypeError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Store: {name} must be a number of seconds, not {value!r}")
    low_ok = value > 0 if positive else value >= 0
    if not (low_ok and value <= most):  # also refuses NaN and inf
        bound = "positive" if positive else "non-negative"
        raise ValueError(
            f"Store: {name} must be a {bound}, finite number of seconds up to {most:g}, "
            f"not {value!r}"
        )
    return float(value)


def _buckets(bounds: tuple[float, ...]) -> list[int]:
    return [0] * (len(bounds) + 1)


_SQLITE_VALUES = (type(None), int, float, str, bytes)
"""What :meth:`Store.queue_rows` accepts in a row (bool is an int)."""


@dataclass
class StoreStats:
    """The store's own counters since it opened. Plain numbers, read at any time; the
    ``*_buckets`` lists are histogram counts per bucket of the bounds above (not cumulative,
    the last one ``+Inf``), exported by :class:`~understudy.persistence.StoreCollector`."""

    commits: int = 0
    """Transactions committed (groups)."""
    snapshots: int = 0
    """Actors written by committed groups (one per actor per group, after collapsing)."""
    events: int = 0
    """Journal entries committed (event-sourced actors)."""
    log_entries: int = 0
    """Log entries committed (``Log`` fields)."""
    budget_writes: int = 0
    """Persistent budgets' figures committed (one per budget per group)."""
    collapsed: int = 0
    """Snapshots superseded by a newer one of the same actor before the writer took them."""
    stale: int = 0
    """Writes refused by the version check (:class:`~understudy.StaleState`)."""
    failed_groups: int = 0
    """Groups that failed for good (their waiters got :class:`~understudy.PersistenceError`)."""
    retries: int = 0
    """Attempts repeated after a transient error (database busy or locked)."""
    loads: int = 0
    """Actors whose latest snapshot was read (at start or restart)."""
    bytes_written: int = 0
    """Bytes of encoded state and events committed."""
    commit_seconds: float = 0.0
    """Wall time spent committing groups (sum)."""
    max_group: int = 0
    """The largest group committed."""
    snapshot_bytes: int = 0
    """Bytes of the snapshots committed (the journal's events excluded)."""
    commit_buckets: list[int] = field(default_factory=lambda: _buckets(COMMIT_SECONDS_BUCKETS))
    group_buckets: list[int] = field(default_factory=lambda: _buckets(GROUP_SIZE_BUCKETS))
    snapshot_buckets: list[int] = field(default_factory=lambda: _buckets(SNAPSHOT_BYTES_BUCKETS))

    @property
    def mean_group(self) -> float:
        """Snapshots per commit, on average."""
        return self.snapshots / self.commits if self.commits else 0.0


class _Entry:
    """One actor's queued writes — its newest snapshot, its new events — and who waits."""

    __slots__ = (
        "actor",
        "appends",
        "base",
        "data",
        "done",
        "events",
        "letters",
        "owner",
        "prune_before",
        "version",
        "waiters",
    )

    def __init__(
        self,
        actor: str,
        base: int,
        version: int,
        data: bytes | None,
        owner: Owner,
        events: list[Event] | None,
        prune_before: int,
    ) -> None:
        self.actor = actor
        self.base = base
        self.version = version
        self.data = data
        self.owner = owner
        self.events = events
        self.prune_before = prune_before
        self.letters: list[Any] = []
        self.appends: list[Append] | None = None
        self.waiters: list[tuple[Waiter, Any]] | None = None
        self.done: Wake | None = None

    @property
    def size(self) -> int:
        size = len(self.data) if self.data is not None else 0
        if self.events:
            size += sum(len(event[2]) for event in self.events)
        if self.appends:
            size += sum(len(entry[2]) for entry in self.appends)
        return size

    def finish(self) -> None:
        if self.done is not None:
            self.done.set()

    def release(self) -> None:
        waiters = self.waiters
        if waiters is not None:
            for reply, value in waiters:
                event = reply.event
                if not event.is_set():
                    reply.value = value
                    event.set()
        self.finish()

    def fail(self, make_error: Callable[[], PersistenceError]) -> None:
        waiters = self.waiters
        if waiters is not None:
            for reply, _ in waiters:
                reply.fail(make_error())
        self.owner.persistence_failed(make_error(), self.letters)
        self.finish()


class Loaded:
    """What an actor restarts from (:meth:`Store.restore_from`)."""

    __slots__ = (
        "actor",
        "entries",
        "error",
        "event",
        "journal",
        "last_event",
        "logs",
        "result",
        "tail",
    )

    def __init__(self, actor: str, journal: bool, logs: Sequence[_ops.LogRequest]) -> None:
        self.actor = actor
        self.journal = journal
        self.event = Wake()
        self.result: tuple[int, bytes] | None = None
        """The latest snapshot ``(version, state)``, or None."""
        self.tail: list[tuple[int, str, bytes, float]] = []
        """Event-sourced: the journal after the snapshot."""
        self.last_event = 0
        """Not event-sourced: the last journal entry's sequence number (0: none)."""
        self.logs: Sequence[_ops.LogRequest] = logs
        self.entries: dict[str, list[tuple[int, bytes]]] = {}
        """Each requested log's entries ``(seq, entry)``, oldest first."""
        self.error: BaseException | None = None


class _Op:
    """A maintenance operation or a read run by the writer between groups."""

    __slots__ = ("error", "event", "result", "steps")

    def __init__(self, steps: _ops.Steps) -> None:
        self.steps = steps
        self.event = Wake()
        self.result: Any = None
        self.error: BaseException | None = None


class Store:
    """A SQLite file holding persistent actors' snapshots, written by one group-committing task.

    ``path`` is the database file (created if missing; WAL mode). ``synchronous`` is
    ``"normal"`` (default: a commit survives a process crash or SIGKILL; a power loss may
    lose the last commits) or ``"full"`` (an fsync per group: a commit survives power loss).
    ``busy_timeout`` is how long SQLite waits for a lock held by another connection before it
    reports the database busy; a busy group is then retried ``retries`` times with
    exponential backoff from ``retry_backoff`` seconds before its waiters fail.

    A runtime opens its store itself (``us.Runtime(store="app.db")`` or ``store=Store(...)``)
    and closes it after every actor stopped. On its own, use it as an async context manager.
    A store is opened once; it picks its SQLite driver from the event loop it opens on.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "normal",
        busy_timeout: float = 5.0,
        retries: int = 3,
        retry_backoff: float = 0.05,
    ) -> None:
        if not isinstance(synchronous, str) or synchronous not in SYNCHRONOUS:
            raise ValueError(
                f"Store: synchronous must be one of {SYNCHRONOUS}, not {synchronous!r}"
            )
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"Store: path must be a str or os.PathLike, not {path!r}")
        path = os.fspath(path)
        if not isinstance(path, str) or not path or path == ":memory:" or path.startswith("file:"):
            raise ValueError(f"Store: path must name a database file, not {path!r}")
        if "\x00" in path:
            raise ValueError(f"Store: path must not contain a NUL character, not {path!r}")
        busy_timeout = _seconds(busy_timeout, "busy_timeout", positive=True, most=MAX_SECONDS)
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 1000:
            raise ValueError(f"Store: retries must be an int from 0 to 1000, not {retries!r}")
        retry_backoff = _seconds(retry_backoff, "retry_backoff", positive=False, most=60.0)
        self.path = path
        self.synchronous: Synchronous = synchronous
        self.busy_timeout = float(busy_timeout)
        self.retries = retries
        self.retry_backoff = float(retry_backoff)
        self.stats = StoreStats()
        """The store's counters (commits, snapshots, group sizes, failures, ...)."""
        self.schema_found: int | None = None
        """The schema version the file had when it was opened (0: new file)."""
        self._driver: Driver | None = None
        self._pending: dict[str, _Entry] = {}
        self._latest: dict[str, _Entry] = {}
        self._loads: list[Loaded] = []
        self._budgets: dict[str, BudgetFigures] = {}
        """Persistent budgets changed since the last group (written whole with the next)."""
        self.live_budgets: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
        """The persistent budgets open in this runtime, by name (``understudy.budgets``)."""
        self._rows: list[tuple[str, list[tuple[Any, ...]]]] = []
        """Rows queued by :meth:`queue_rows` for the next group: (INSERT statement, rows)."""
        self._rows_queued = 0
        self._rows_done = 0
        self._rows_event: anyio.Event | None = None
        self._ops: list[_Op] = []
        self._wake: Wake | None = None
        self._writer_done: anyio.Event | None = None
        self._own_group: TaskGroup | None = None
        self._faults: list[InjectedWriteError] = []
        self._state = "new"

    # -- lifecycle --

    @property
    def driver(self) -> str | None:
        """The SQLite driver in use (``"aiosqlite"``, ``"sqlite3-thread"``) once open."""
        return self._driver.name if self._driver is not None else None

    @property
    def is_open(self) -> bool:
        return self._state == "open"

    async def open(self, task_group: TaskGroup) -> None:
        """Create or migrate the file, open the driver, start the writer in ``task_group``.

        Blocks on the file (on a worker thread). Raises :class:`PersistenceError` naming the
        file for a file that cannot be a store (no WAL, a newer schema) or cannot be opened
        at all (the SQLite error is its cause). ``task_group`` must outlive :meth:`aclose`.
        """
        if self._state != "new":
            raise RuntimeError("a Store can be opened once; make a new one")
        self._state = "opening"
        try:
            self.schema_found = await anyio.to_thread.run_sync(
                prepare, self.path, self.busy_timeout
            )
            self._driver = await open_driver(self.path, self.synchronous, self.busy_timeout)
        except (sqlite3.Error, OSError) as exc:
            self._state = "closed"
            raise PersistenceError(f"cannot open the store {self.path!r}: {exc}") from exc
        except BaseException:
            self._state = "closed"
            raise
        self._writer_done = anyio.Event()
        self._state = "open"
        task_group.start_soon(self._writer)

    async def aclose(self) -> None:
        """Commit everything queued, stop the writer, close the file. Idempotent.

        Waits for the last group (shielded from cancellation: what was queued is committed
        or failed, never abandoned mid-transaction).
        """
        if self._state not in ("open", "closing"):
            self._state = "closed"
            return
        self._state = "closing"
        with anyio.CancelScope(shield=True):
            self._poke()
            assert self._writer_done is not None
            await self._writer_done.wait()
            assert self._driver is not None
            await self._driver.close()
        self._state = "closed"

    async def __aenter__(self) -> Store:
        group = anyio.create_task_group()
        await group.__aenter__()
        try:
            await self.open(group)
        except BaseException:
            group.cancel_scope.cancel()
            await group.__aexit__(None, None, None)
            raise
        self._own_group = group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        group = self._own_group
        try:
            await self.aclose()
        finally:
            assert group is not None
            result = await group.__aexit__(exc_type, exc, tb)
        return result

    # -- writing --

    def write(
        self,
        actor: str,
        base: int,
        version: int,
        data: bytes | None,
        owner: Owner,
        events: list[Event] | None = None,
        prune_before: int = 0,
        letter: Any = None,
        appends: list[Append] | None = None,
    ) -> None:
        """Queue ``actor``'s snapshot ``version`` (built on ``base``, 0 for the first one)
        and/or its new journal ``events``.

        Never blocks. Merges into the writes of the same actor that the writer has not taken
        yet: a newer snapshot replaces the queued one (which keeps its base and waiters),
        events are appended. ``data=None`` queues events only. ``prune_before`` drops the
        actor's journal entries up to that sequence number in the same transaction.
        ``appends`` are entries of the actor's logs, committed with the snapshot.
        ``owner.persistence_failed`` is called if the writes cannot be committed, with every
        ``letter`` (not None) given for them: the messages whose effect is lost, which the
        owner records as dead letters. Raises :class:`PersistenceError` if the store is not
        open.
        """
        entry = self._pending.get(actor)
        if entry is not None:
            if data is not None:
                if entry.data is None:
                    entry.base = base
                else:
                    self.stats.collapsed += 1
                entry.data = data
                entry.version = version
            if events:
                if entry.events is None:
                    entry.events = list(events)
                else:
                    entry.events.extend(events)
            if prune_before:
                entry.prune_before = prune_before
            if letter is not None:
                entry.letters.append(letter)
            if appends:
                if entry.appends is None:
                    entry.appends = appends
                else:
                    entry.appends.extend(appends)
            entry.owner = owner
            return
        if self._state != "open":
            raise PersistenceError(f"cannot persist actor {actor!r}: the store is not open")
        entry = _Entry(actor, base, version, data, owner, events, prune_before)
        if letter is not None:
            entry.letters.append(letter)
        if appends:
            entry.appends = appends
        self._pending[actor] = entry
        self._latest[actor] = entry
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set()

    def queue_rows(self, insert: str, rows: list[tuple[Any, ...]]) -> bool:
        """Queue ``rows`` for ``insert`` (an INSERT into a table of the store's schema) with
        the next group commit: in its transaction, so they are committed together with the
        budgets' figures changed before them and no later than any actor's write queued
        after them. Never blocks; False (nothing queued) when the store is not open. A
        failed group queues them again. :meth:`flush` waits for them.

        Raises ``ValueError`` for a statement that is not an INSERT or a row that is not a
        tuple of as many values as the statement has ``?`` placeholders, ``TypeError`` for a
        value SQLite cannot store: checked here, because a row that fails in the group would
        fail every actor's write in it, and again in the next."""
        if not isinstance(insert, str) or not insert.lstrip().upper().startswith("INSERT "):
            raise ValueError(
                f"Store.queue_rows: insert must be an INSERT statement, not {insert!r}"
            )
        width = insert.count("?")
        for i, row in enumerate(rows):
            if type(row) is not tuple or len(row) != width:
                raise ValueError(
                    f"Store.queue_rows: rows[{i}] must be a tuple of {width} values (the "
                    f"statement's placeholders), not {row!r}"
                )
            for value in row:
                if not isinstance(value, _SQLITE_VALUES):
                    raise TypeError(
                        f"Store.queue_rows: rows[{i}] holds a {type(value).__name__}, which "
                        "SQLite cannot store (None, int, float, str, bytes)"
                    )
        if self._state != "open":
            return False
        self._rows.append((insert, rows))
        self._rows_queued += 1
        self._poke()
        return True

    def budget_changed(self, name: str, budget: BudgetFigures) -> None:
        """Queue persistent budget ``name``'s figures for the next group (never blocks).
        A failed group queues them again; a budget change after the store closed is kept
        in memory only (the runtime is ending)."""
        if self._state != "open":
            return
        self._budgets[name] = budget
        self._poke()

    async def load_budget(self, name: str) -> BudgetRow | None:
        """The committed figures of persistent budget ``name``, or None. Waits for the
        writes queued before it. Raises :class:`PersistenceError`."""
        row: BudgetRow | None = await self._run(_ops.load_budget(name))
        return row

    def wait_for_commit(self, actor: str, reply: Waiter, value: Any) -> bool:
        """Release ``reply`` with ``value`` once ``actor``'s newest queued snapshot commits
        (or fail it with :class:`PersistenceError` if that snapshot fails).

        Returns False, and does nothing, when no snapshot of ``actor`` is queued or being
        committed: everything it wrote is already durable. Never blocks.
        """
        entry = self._latest.get(actor)
        if entry is None:
            return False
        if entry.waiters is None:
            entry.waiters = [(reply, value)]
        else:
            entry.waiters.append((reply, value))
        return True

    async def committed(self, actor: str) -> None:
        """Wait until no snapshot of ``actor`` is queued or being committed (committed or
        failed). Returns at once when there is none."""
        entry = self._latest.get(actor)
        while entry is not None:
            if entry.done is None:
                entry.done = Wake()
            await entry.done.wait()
            entry = self._latest.get(actor)

    async def flush(self) -> None:
        """Wait until everything queued before this call is committed (or failed): the
        actors' writes and the rows of :meth:`queue_rows` (until the writer stops)."""
        for actor in list(self._latest):
            await self.committed(actor)
        target = self._rows_queued
        writer = self._writer_done
        while self._rows_done < target and writer is not None and not writer.is_set():
            if self._rows_event is None:
                self._rows_event = anyio.Event()
            await self._rows_event.wait()

    def fail_next_commits(self, count: int = 1, *, transient: bool = False) -> None:
        """Test hook (also for chaos testing): make the next ``count`` commit attempts fail.

        Each attempt writes its group and then raises an :class:`InjectedWriteError` (a
        :class:`sqlite3.OperationalError`) before ``COMMIT``, so the transaction is rolled
        back. ``transient=True`` makes it look like a busy database, which the writer retries
        (each retry is an attempt: ``count`` above ``retries`` fails the group); otherwise it
        is an I/O error and the group fails at once. Never blocks.
        """
        for _ in range(count):
            what = "database is locked" if transient else "disk I/O error"
            self._faults.append(
                InjectedWriteError(
                    f"{what} (injected by Store.fail_next_commits)", transient=transient
                )
            )

    # -- reading --

    async def load(self, actor: str) -> tuple[int, bytes] | None:
        """The latest committed ``(version, state)`` of ``actor``, or None if it has none.

        Waits first for any snapshot of ``actor`` still queued or being committed, so a
        restarting actor sees everything its previous instance had acknowledged. Reads go
        through the writer, batched: many actors starting at once cost one query per 500.
        Raises :class:`PersistenceError` if the read fails or the store is not open.
        """
        request = await self.restore_from(actor)
        return request.result

    async def load_journaled(
        self, actor: str
    ) -> tuple[tuple[int, bytes] | None, list[tuple[int, str, bytes, float]]]:
        """What an event-sourced actor restarts from: its latest snapshot (or None) and the
        journal entries after it, ``(seq, kind, event, recorded)`` in order. As :meth:`load`.
        """
        request = await self.restore_from(actor, journal=True)
        return request.result, request.tail

    async def restore_from(
        self, actor: str, *, journal: bool = False, logs: Sequence[_ops.LogRequest] = ()
    ) -> Loaded:
        """Everything ``actor`` restarts from, in one batched read: its snapshot, its
        journal after it (``journal=True``) or else the last journal entry's number, and
        the entries of the ``logs`` asked for (``(field, keep)``: the last ``keep``, or all
        for None). As :meth:`load`."""
        await self.committed(actor)
        if self._state != "open":
            raise PersistenceError(f"cannot load actor {actor!r}: the store is not open")
        request = Loaded(actor, journal, logs)
        self._loads.append(request)
        self._poke()
        await request.event.wait()
        if request.error is not None:
            raise request.error
        return request

    async def journal(self, actor: str, after: int = 0) -> list[tuple[int, str, bytes, float]]:
        """``actor``'s committed journal entries with a sequence number above ``after``, in
        order, as ``(seq, kind, event, recorded)``: the audit trail of an event-sourced
        actor. Waits for the writes queued before it. Raises :class:`PersistenceError`."""
        await self.committed(actor)
        result: list[tuple[int, str, bytes, float]] = await self._run(_ops.journal(actor, after))
        return result

    async def log(
        self, actor: str, field: str | None = None
    ) -> list[tuple[str, int, bytes, float]]:
        """``actor``'s committed log entries (``Log`` fields) as ``(field, seq, entry,
        recorded)``, by field then position; only ``field``'s when given. Waits for the
        writes queued before it. Raises :class:`PersistenceError`."""
        await self.committed(actor)
        rows: list[tuple[str, int, bytes, float]] = await self._run(_ops.read_logs(actor))
        return rows if field is None else [row for row in rows if row[0] == field]

    async def prune_journal(self, *, keep: int = 0) -> int:
        """Retention: delete the journal entries that every actor's latest snapshot already
        includes, except the last ``keep`` of them per actor; returns how many were deleted.

        Recovery needs only the snapshot and the entries after it, so this loses nothing a
        restart needs; what it drops is audit trail. Runs on the writer between groups (one
        transaction). Raises :class:`PersistenceError` if it fails.
        """
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ValueError(f"prune_journal: keep must be a non-negative int, not {keep!r}")
        await self.flush()
        dropped: int = await self._run(_ops.prune(keep))
        return dropped

    async def _run(self, steps: _ops.Steps) -> Any:
        if self._state != "open":
            steps.close()
            raise PersistenceError("the store is not open")
        op = _Op(steps)
        self._ops.append(op)
        self._poke()
        await op.event.wait()
        if op.error is not None:
            raise op.error
        return op.result

    async def snapshots(self) -> list[tuple[str, int, float, bytes]]:
        """Every stored snapshot as ``(actor, version, updated, state)``, by actor name.

        Reads through a separate connection on a worker thread (WAL readers never block the
        writer); for inspection, not for the hot path.
        """
        from understudy.persistence._inspect import read_snapshots

        return await anyio.to_thread.run_sync(read_snapshots, self.path)

    # -- the writer --

    def _poke(self) -> None:
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set()

    async def _writer(self) -> None:
        assert self._writer_done is not None
        try:
            while True:
                if self._pending or self._budgets or self._rows:
                    await self._commit_group()
                if self._loads:
                    # After each group, so a busy writer cannot starve actors that start.
                    await self._serve_loads()
                if self._ops:
                    await self._serve_ops()
                if self._pending or self._loads or self._ops or self._budgets or self._rows:
                    continue
                if self._state == "closing":
                    return
                wake = self._wake = Wake()
                await wake.wait()
        finally:
            if self._state == "open":
                self._state = "closing"  # the writer is gone: refuse new work
            self._fail_everything(PersistenceError("the store closed before committing it"))
            self._rows_released()
            self._writer_done.set()

    async def _commit_group(self) -> None:
        group = self._pending
        self._pending = {}
        budgets = self._budgets
        self._budgets = {}
        budget_rows = [budget.stored_row() for budget in budgets.values()]
        rows_upto = self._rows_queued
        rows: list[tuple[str, list[tuple[Any, ...]]]] = []
        if self._rows:
            merged: dict[str, list[tuple[Any, ...]]] = {}  # one executemany per statement
            for insert, some in self._rows:
                merged.setdefault(insert, []).extend(some)
            rows, self._rows = list(merged.items()), []
        assert self._driver is not None
        writes = [
            Write(
                e.actor, e.base, e.version, e.data, e.events or [], e.prune_before, e.appends or []
            )
            for e in group.values()
        ]
        started = time.perf_counter()
        attempt = 0
        while True:
            fault = self._faults.pop(0) if self._faults else None
            try:
                steps = _ops.commit_group(writes, time.time(), fault, budget_rows, rows)
                with anyio.CancelScope(shield=True):
                    stale = cast(list[Stale], await self._driver.run(steps))
                break
            except Exception as exc:
                if is_transient(exc) and attempt < self.retries:
                    attempt += 1
                    self.stats.retries += 1
                    delay = self.retry_backoff * 2 ** (attempt - 1)
                    try:
                        await anyio.sleep(delay * (0.5 + random.random()))
                    except BaseException:
                        # The writer is cancelled (its task group is): nobody will retry.
                        self._fail_group(group, exc)
                        raise
                    budget_rows = [budget.stored_row() for budget in budgets.values()]
                    continue
                self.stats.failed_groups += 1
                logger.error(
                    "store %r: a group of %d actors' writes was not committed (after %d "
                    "attempts); their asks get PersistenceError and the actors fail; its "
                    "budget figures and %d rows are queued again for the next group",
                    self.path,
                    len(group),
                    attempt + 1,
                    sum(len(some) for _, some in rows),
                    exc_info=exc,
                    extra={"actor": None, "correlation_id": None},
                )
                self._fail_group(group, exc)
                for name, budget in budgets.items():  # figures, not deltas: write them later
                    self._budgets.setdefault(name, budget)
                self._rows[:0] = rows  # rows are kept too, in order, for the next group
                return
        if rows:
            self._rows_done = rows_upto
            self._rows_released()
        stats = self.stats
        took = time.perf_counter() - started
        stats.commit_seconds += took
        stats.commit_buckets[bisect_left(COMMIT_SECONDS_BUCKETS, took)] += 1
        stats.commits += 1
        stats.budget_writes += len(budget_rows)
        stale_actors = self._refuse(group, stale) if stale else ()
        written = len(group) - len(stale_actors)
        stats.snapshots += written
        if group:  # a group of budget figures only is no group of actors
            stats.group_buckets[bisect_left(GROUP_SIZE_BUCKETS, written)] += 1
        if written > stats.max_group:
            stats.max_group = written
        latest = self._latest
        snapshot_buckets = stats.snapshot_buckets
        for actor, entry in group.items():
            if actor in stale_actors:
                continue
            stats.bytes_written += entry.size
            if entry.data is not None:
                stats.snapshot_bytes += len(entry.data)
                snapshot_buckets[bisect_left(SNAPSHOT_BYTES_BUCKETS, len(entry.data))] += 1
            if entry.events:
                stats.events += len(entry.events)
            if entry.appends:
                stats.log_entries += len(entry.appends)
            if latest.get(actor) is entry:
                del latest[actor]
            entry.release()

    def _rows_released(self) -> None:
        event, self._rows_event = self._rows_event, None
        if event is not None:
            event.set()

    def _refuse(self, group: dict[str, _Entry], stale: list[Stale]) -> set[str]:
        self.stats.stale += len(stale)
        refused = set()
        for actor, expected, found in stale:
            refused.add(actor)
            entry = group[actor]

            def make_error(
                actor: str = actor, expected: int = expected, found: int | None = found
            ) -> PersistenceError:
                return StaleState(actor, expected, found)

            self._break_chain(actor, entry, make_error)
        return refused

    def _fail_group(self, group: dict[str, _Entry], cause: BaseException) -> None:
        count = len(group)
        for actor, entry in group.items():

            def make_error(entry: _Entry = entry) -> PersistenceError:
                error = PersistenceError(
                    f"snapshot {entry.version} of actor {entry.actor!r} was not committed "
                    f"(its group of {count} failed: {cause}); its effect is not acknowledged"
                )
                error.__cause__ = cause
                return error

            self._break_chain(actor, entry, make_error)

    def _break_chain(
        self, actor: str, entry: _Entry, make_error: Callable[[], PersistenceError]
    ) -> None:
        """Fail ``entry`` and the writes of the same actor queued after it (built on it)."""
        if self._latest.get(actor) is entry:
            del self._latest[actor]
        entry.fail(make_error)
        later = self._pending.get(actor)
        if later is not None:
            del self._pending[actor]
            if self._latest.get(actor) is later:
                del self._latest[actor]
            later.fail(make_error)

    async def _serve_loads(self) -> None:
        loads = self._loads
        self._loads = []
        assert self._driver is not None
        actors: Sequence[str] = list({load.actor: None for load in loads})
        journaled = list({load.actor: None for load in loads if load.journal})
        logs = {load.actor: load.logs for load in loads if load.logs}
        try:
            with anyio.CancelScope(shield=True):
                result = await self._driver.run(_ops.load(actors, journaled, logs))
            found, tails, last_events, entries = cast(
                tuple[_ops.Loaded, _ops.Journals, dict[str, int], _ops.Logs], result
            )
        except Exception as exc:
            for load in loads:
                error = PersistenceError(f"cannot load actor {load.actor!r}: {exc}")
                error.__cause__ = exc
                load.error = error
                load.event.set()
            return
        self.stats.loads += len(actors)
        for load in loads:
            load.result = found.get(load.actor)
            if load.journal:
                load.tail = tails[load.actor]
            else:
                load.last_event = last_events.get(load.actor, 0)
            if load.logs:
                load.entries = entries.get(load.actor, {})
            load.event.set()

    async def _serve_ops(self) -> None:
        ops = self._ops
        self._ops = []
        assert self._driver is not None
        for op in ops:
            try:
                with anyio.CancelScope(shield=True):
                    op.result = await self._driver.run(op.steps)
            except Exception as exc:
                error = PersistenceError(f"store operation failed: {exc}")
                error.__cause__ = exc
                op.error = error
            op.event.set()

    def _fail_everything(self, error: PersistenceError) -> None:
        pending = self._pending
        self._pending = {}
        for entry in pending.values():
            entry.fail(lambda: PersistenceError(str(error)))
        self._latest.clear()
        for load in self._loads:
            load.error = PersistenceError(str(error))
            load.event.set()
        self._loads = []
        for op in self._ops:
            op.steps.close()
            op.error = PersistenceError(str(error))
            op.event.set()
        self._ops = []


__all__ = [
    "COMMIT_SECONDS_BUCKETS",
    "GROUP_SIZE_BUCKETS",
    "SNAPSHOT_BYTES_BUCKETS",
    "InjectedWriteError",
    "Loaded",
    "Owner",
    "Store",
    "StoreStats",
    "Waiter",
]

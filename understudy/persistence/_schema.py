"""The store's on-disk layout: schema, migrations, connection settings and every SQL statement.

The schema version lives in ``PRAGMA user_version``. ``MIGRATIONS[i]`` upgrades a file from
version ``i`` to ``i + 1``; opening a store applies what is missing, in one ``BEGIN
IMMEDIATE`` transaction, so a file is never left half-migrated. A file written by a newer
understudy (a higher ``user_version``) is refused rather than guessed at.

Every statement that carries data is parameterised. The only values formatted into SQL are
the schema version and the pragma settings below, which are this module's own constants.

These are plain synchronous functions on :mod:`sqlite3` connections: they run on a worker
thread (opening, migrating) or inside the trio driver's one hop per group.
"""

from __future__ import annotations

import random
import sqlite3
import time
from typing import Literal, NamedTuple

from understudy.errors import PersistenceError

Synchronous = Literal["normal", "full"]
"""``PRAGMA synchronous`` for the store's connections (WAL mode).

``"normal"`` (default): a commit survives a crash or SIGKILL of the process, since it is in
the write-ahead log the moment COMMIT returns; an operating-system crash or a power loss may
roll back the last transactions (the file stays consistent). ``"full"``: the log is fsynced
at every commit, so a commit survives a power loss too (on a disk that honours fsync), at the
disk's fsync rate per group.
"""

SYNCHRONOUS: tuple[Synchronous, ...] = ("normal", "full")

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 0 -> 1: snapshots, one row per persistent actor.
    (
        """
        CREATE TABLE snapshots (
            actor   TEXT PRIMARY KEY,  -- the actor's name
            version INTEGER NOT NULL,  -- 1, 2, ...: moves forward only (compare-and-set)
            state   BLOB NOT NULL,     -- the actor's State, msgspec msgpack
            updated REAL NOT NULL      -- unix time of the commit that wrote it
        )
        """,
    ),
    # 1 -> 2: the journal of event-sourced actors. For them snapshots.version is the sequence
    # number of the last event the snapshot includes.
    (
        """
        CREATE TABLE journal (
            actor    TEXT NOT NULL,     -- the actor's name
            seq      INTEGER NOT NULL,  -- 1, 2, ... per actor, no gaps
            kind     TEXT NOT NULL,     -- the event type's name
            event    BLOB NOT NULL,     -- the event, msgspec msgpack
            recorded REAL NOT NULL,     -- unix time of the commit that appended it
            PRIMARY KEY (actor, seq)
        ) WITHOUT ROWID
        """,
    ),
    # 2 -> 3: the entries of Log fields (understudy.Log), one row each, appended in the
    # transaction that writes the snapshot holding the log's length.
    (
        """
        CREATE TABLE log_entries (
            actor    TEXT NOT NULL,     -- the actor's name
            field    TEXT NOT NULL,     -- the State field's name
            seq      INTEGER NOT NULL,  -- 1, 2, ... per (actor, field), no gaps
            entry    BLOB NOT NULL,     -- the entry, msgspec msgpack
            recorded REAL NOT NULL,     -- unix time of the commit that appended it
            PRIMARY KEY (actor, field, seq)
        ) WITHOUT ROWID
        """,
    ),
    # 3 -> 4: persistent budgets (rt.budget(name=..., persistent=True)), one row each,
    # written whole (absolute figures) with the next group after each change.
    (
        """
        CREATE TABLE budgets (
            name            TEXT PRIMARY KEY,
            tokens          INTEGER,           -- the limits; NULL: none
            usd             REAL,
            seconds         REAL,
            opened          REAL NOT NULL,     -- unix time first opened (seconds count from it)
            spent_tokens    INTEGER NOT NULL,  -- charged and settled
            spent_usd       REAL NOT NULL,
            reserved_tokens INTEGER NOT NULL,  -- held by reservations not settled yet
            reserved_usd    REAL NOT NULL,
            updated         REAL NOT NULL      -- unix time of the commit that wrote it
        )
        """,
    ),
    # 4 -> 5: one row per model call (understudy.llm.CallRecord's fields; written by
    # understudy.llm._records).
    (
        """
        CREATE TABLE llm_calls (
            id                    INTEGER PRIMARY KEY,
            time                  REAL NOT NULL,     -- unix time the call ended
            model                 TEXT NOT NULL,
            agent                 TEXT NOT NULL,     -- actor name ('' outside actors)
            agent_type            TEXT NOT NULL,     -- actor class
            conversation          TEXT NOT NULL,     -- budget name ('' without one)
            correlation_id        TEXT NOT NULL,
            input_tokens          INTEGER NOT NULL,  -- uncached input
            output_tokens         INTEGER NOT NULL,
            cache_read_tokens     INTEGER NOT NULL,
            cache_write_5m_tokens INTEGER NOT NULL,
            cache_write_1h_tokens INTEGER NOT NULL,
            usd                   REAL NOT NULL,
            price_version         TEXT NOT NULL,
            latency               REAL NOT NULL,
            ttft                  REAL,
            stop_reason           TEXT NOT NULL,
            outcome               TEXT NOT NULL,
            error_type            TEXT NOT NULL,
            attempts              INTEGER NOT NULL,
            request_id            TEXT NOT NULL
        )
        """,
        "CREATE INDEX llm_calls_time ON llm_calls (time)",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)
"""The ``user_version`` this understudy writes and understands."""

# -- statements ------------------------------------------------------------------------------

UPDATE_SNAPSHOT = (
    "UPDATE snapshots SET version = ?, state = ?, updated = ? WHERE actor = ? AND version = ?"
)
"""Compare-and-set: changes the row only if it still holds the version we built on."""

INSERT_SNAPSHOT = (
    "INSERT INTO snapshots (actor, version, state, updated) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (actor) DO NOTHING"
)
"""The first snapshot of an actor: refused (0 rows) if a row appeared meanwhile."""

SELECT_VERSION = "SELECT version FROM snapshots WHERE actor = ?"

INSERT_EVENT = (
    "INSERT INTO journal (actor, seq, kind, event, recorded) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (actor, seq) DO NOTHING"
)
"""Append one event: refused (0 rows) if that sequence number is taken (another writer)."""

SELECT_LAST_SEQ = "SELECT MAX(seq) FROM journal WHERE actor = ?"

SELECT_JOURNAL = (
    "SELECT seq, kind, event, recorded FROM journal WHERE actor = ? AND seq > ? ORDER BY seq"
)

PRUNE_BEFORE = "DELETE FROM journal WHERE actor = ? AND seq <= ?"
"""Retention in a group: drop an actor's events up to a sequence number."""

PRUNE_JOURNAL = (
    "DELETE FROM journal WHERE seq <= "
    "(SELECT version FROM snapshots WHERE snapshots.actor = journal.actor) - ?"
)
"""Retention on demand: drop the events every actor's snapshot already includes, but the
last ``?`` of them (parameter: how many to keep)."""

INSERT_LOG_ENTRY = (
    "INSERT INTO log_entries (actor, field, seq, entry, recorded) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (actor, field, seq) DO NOTHING"
)
"""Append one log entry: refused (0 rows) if that position is taken (another writer)."""

SELECT_LOG = "SELECT seq, entry FROM log_entries WHERE actor = ? AND field = ? ORDER BY seq"

SELECT_LOG_TAIL = (
    "SELECT seq, entry FROM log_entries WHERE actor = ? AND field = ? AND seq > "
    "(SELECT COALESCE(MAX(seq), 0) FROM log_entries WHERE actor = ? AND field = ?) - ? "
    "ORDER BY seq"
)
"""The last ``?`` entries of one log (parameters: actor, field, actor, field, count)."""

SELECT_LOGS = (
    "SELECT field, seq, entry, recorded FROM log_entries WHERE actor = ? ORDER BY field, seq"
)

UPSERT_BUDGET = (
    "INSERT INTO budgets (name, tokens, usd, seconds, opened, spent_tokens, spent_usd, "
    "reserved_tokens, reserved_usd, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET spent_tokens = excluded.spent_tokens, "
    "spent_usd = excluded.spent_usd, reserved_tokens = excluded.reserved_tokens, "
    "reserved_usd = excluded.reserved_usd, updated = excluded.updated"
)
"""Write a budget's figures (its limits and opening time are set by the first write)."""

BudgetRow = tuple[str, int | None, float | None, float | None, float, int, float, int, float]
"""A budget as stored, without ``updated``: name, limits (tokens, usd, seconds), opened,
spent (tokens, usd), reserved (tokens, usd)."""

SELECT_BUDGET = (
    "SELECT name, tokens, usd, seconds, opened, spent_tokens, spent_usd, reserved_tokens, "
    "reserved_usd FROM budgets WHERE name = ?"
)

LIST_BUDGETS = (
    "SELECT name, tokens, usd, seconds, opened, spent_tokens, spent_usd, reserved_tokens, "
    "reserved_usd, updated FROM budgets ORDER BY name"
)

LIST_SNAPSHOTS = "SELECT actor, version, updated, state FROM snapshots ORDER BY actor"

LOAD_CHUNK = 500
"""Names per ``SELECT ... IN (...)`` when loading (well under SQLite's parameter limit)."""


def select_last_events(count: int) -> str:
    """The last journal sequence number of each of ``count`` actors that has a journal."""
    return (
        "SELECT actor, MAX(seq) FROM journal WHERE actor IN ("
        + ", ".join("?" * count)
        + ") GROUP BY actor"
    )


def select_snapshots(count: int) -> str:
    """``SELECT`` of the snapshots of ``count`` actors (their names bound as parameters)."""
    return (
        "SELECT actor, version, state FROM snapshots WHERE actor IN ("
        + ", ".join("?" * count)
        + ")"
    )


Event = tuple[int, str, bytes]
"""A journal entry: sequence number, event type name, encoded event."""

Append = tuple[str, int, bytes]
"""A log entry: the State field's name, its position (1, 2, ...), the encoded entry."""


class Write(NamedTuple):
    """Everything one group writes for one actor; committed whole or not at all."""

    actor: str
    base: int
    """The snapshot version ``state`` was built on (0: the actor has no row yet)."""
    version: int
    """The new snapshot's version (for an event-sourced actor: its last event's seq)."""
    state: bytes | None
    """The new snapshot, or None when this write only appends events."""
    events: list[Event]
    """Events to append to the journal, in order."""
    prune_before: int
    """Drop this actor's journal entries up to this seq (retention); 0: keep them."""
    appends: list[Append]
    """Entries to append to the actor's logs (``Log`` fields), in order."""


Stale = tuple[str, int, int | None]
"""A refused write: actor, the version it was built on, the version found (None: no row)."""


def write_params(
    writes: list[Write], updated: float
) -> tuple[
    list[tuple[int, bytes, float, str, int]],
    list[tuple[str, int, bytes, float]],
    list[tuple[str, int, str, bytes, float]],
    list[tuple[str, int]],
    list[tuple[str, str, int, bytes, float]],
]:
    """The parameters of a group's statements: updates, inserts, events, prunes, appends."""
    updates: list[tuple[int, bytes, float, str, int]] = []
    inserts: list[tuple[str, int, bytes, float]] = []
    events: list[tuple[str, int, str, bytes, float]] = []
    prunes: list[tuple[str, int]] = []
    appends: list[tuple[str, str, int, bytes, float]] = []
    for write in writes:
        actor = write.actor
        if write.events:
            events.extend((actor, seq, kind, data, updated) for seq, kind, data in write.events)
        if write.appends:
            appends.extend((actor, name, seq, data, updated) for name, seq, data in write.appends)
        if write.state is not None:
            if write.base:
                updates.append((write.version, write.state, updated, actor, write.base))
            else:
                inserts.append((actor, write.version, write.state, updated))
        if write.prune_before:
            prunes.append((actor, write.prune_before))
    return updates, inserts, events, prunes, appends


# -- connections -----------------------------------------------------------------------------


def pragmas(synchronous: Synchronous, busy_timeout: float) -> list[str]:
    """Per-connection settings (journal_mode=WAL is a property of the file, set by
    :func:`prepare`)."""
    return [
        f"PRAGMA synchronous = {'FULL' if synchronous == 'full' else 'NORMAL'}",
        f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}",
    ]


def connect(path: str, synchronous: Synchronous, busy_timeout: float) -> sqlite3.Connection:
    """A connection for the trio driver: usable from any worker thread (the store's writer
    task serialises its use), implicit ``BEGIN IMMEDIATE`` before the first write."""
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level="IMMEDIATE", check_same_thread=False
    )
    try:
        for pragma in pragmas(synchronous, busy_timeout):
            conn.execute(pragma)
    except BaseException:
        conn.close()
        raise
    return conn


def prepare(path: str, busy_timeout: float) -> int:
    """Create the file if needed, switch it to WAL, bring its schema up to date.

    Blocking; run it on a worker thread. Returns the schema version found before migrating.
    Safe when several processes create the same new file at once: SQLite reports some of
    those collisions as busy without waiting (switching to WAL, upgrading a read lock), so a
    busy attempt is retried with backoff until ``busy_timeout`` has passed. Raises
    :class:`PersistenceError` if WAL cannot be enabled or the file is newer than this
    understudy.
    """
    give_up = time.monotonic() + busy_timeout
    delay = 0.002
    while True:
        try:
            return _prepare_once(path, busy_timeout)
        except sqlite3.OperationalError as exc:
            if not is_transient(exc) or time.monotonic() + delay > give_up:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.1)


def _prepare_once(path: str, busy_timeout: float) -> int:
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise PersistenceError(
                f"cannot use {path!r} as a store: SQLite refused WAL mode (journal_mode is "
                f"{mode!r}); use a file on a local disk (not ':memory:')"
            )
        return migrate(conn, path)
    finally:
        conn.close()


def migrate(conn: sqlite3.Connection, path: str, target: int = SCHEMA_VERSION) -> int:
    """Apply ``MIGRATIONS`` up to ``target`` in one transaction; the version found before.

    ``conn`` must be in autocommit mode (``isolation_level=None``).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if found > SCHEMA_VERSION:
            raise PersistenceError(
                f"the store {path!r} has schema version {found}, newer than this understudy "
                f"understands ({SCHEMA_VERSION}); upgrade understudy to open it"
            )
        for version in range(found, target):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
        if target > found:
            conn.execute(f"PRAGMA user_version = {int(target)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is worth retrying: the database was busy or locked."""
    if getattr(error, "transient", False):
        return True
    code = getattr(error, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or (
        code is None
        and isinstance(error, sqlite3.OperationalError)
        and ("locked" in str(error) or "busy" in str(error))
    )


__all__ = [
    "INSERT_EVENT",
    "LIST_BUDGETS",
    "SELECT_BUDGET",
    "UPSERT_BUDGET",
    "BudgetRow",
    "INSERT_LOG_ENTRY",
    "INSERT_SNAPSHOT",
    "LIST_SNAPSHOTS",
    "LOAD_CHUNK",
    "MIGRATIONS",
    "PRUNE_BEFORE",
    "PRUNE_JOURNAL",
    "SCHEMA_VERSION",
    "SELECT_JOURNAL",
    "SELECT_LAST_SEQ",
    "SELECT_LOG",
    "SELECT_LOGS",
    "SELECT_LOG_TAIL",
    "SELECT_VERSION",
    "SYNCHRONOUS",
    "UPDATE_SNAPSHOT",
    "Append",
    "Event",
    "Stale",
    "Synchronous",
    "Write",
    "connect",
    "is_transient",
    "migrate",
    "prepare",
    "pragmas",
    "select_last_events",
    "select_snapshots",
    "write_params",
]

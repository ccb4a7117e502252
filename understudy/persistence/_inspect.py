"""Reading a store from outside a runtime: for ``understudy inspect`` and for tests.

Opens the file read-only (``mode=ro``), so inspecting a live store never takes the write
lock; in WAL mode it sees the last committed state and never blocks the writer. The state
is decoded without its ``State`` type (plain msgpack) and shown as JSON.
"""

from __future__ import annotations

import datetime
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any

import msgspec

from understudy.persistence._schema import (
    LIST_BUDGETS,
    LIST_SNAPSHOTS,
    SCHEMA_VERSION,
    SELECT_JOURNAL,
    SELECT_LOGS,
)

COUNT_LOGS = "SELECT actor, field, MAX(seq) FROM log_entries GROUP BY actor, field"
JOURNAL_ONLY = (
    "SELECT actor, COUNT(*), MAX(recorded) FROM journal j WHERE NOT EXISTS "
    "(SELECT 1 FROM snapshots s WHERE s.actor = j.actor) GROUP BY actor ORDER BY actor"
)


def _connect_ro(path: str) -> sqlite3.Connection:
    if not Path(path).is_file():
        raise FileNotFoundError(f"no store at {path!r}")
    uri = "file:" + urllib.parse.quote(str(Path(path).resolve())) + "?mode=ro"
    return sqlite3.connect(uri, uri=True)


def schema_version(path: str) -> int:
    """The store's ``PRAGMA user_version``."""
    conn = _connect_ro(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def read_snapshots(path: str) -> list[tuple[str, int, float, bytes]]:
    """Every snapshot as ``(actor, version, updated, state)``, by actor. Blocking."""
    conn = _connect_ro(path)
    try:
        found = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if found == 0:
            return []
        if found > SCHEMA_VERSION:
            raise ValueError(
                f"{path!r} has schema version {found}; this understudy reads up to {SCHEMA_VERSION}"
            )
        return [
            (str(actor), int(version), float(updated), bytes(state))
            for actor, version, updated, state in conn.execute(LIST_SNAPSHOTS)
        ]
    finally:
        conn.close()


def read_journal(path: str, actor: str, after: int = 0) -> list[tuple[int, str, bytes, float]]:
    """``actor``'s journal entries after ``after``: ``(seq, kind, event, recorded)``. Blocking."""
    conn = _connect_ro(path)
    try:
        if int(conn.execute("PRAGMA user_version").fetchone()[0]) < 2:
            return []  # written before the journal existed
        return [
            (int(seq), str(kind), bytes(event), float(recorded))
            for seq, kind, event, recorded in conn.execute(SELECT_JOURNAL, (actor, after))
        ]
    finally:
        conn.close()


def journal_only(path: str) -> list[dict[str, Any]]:
    """The actors with a journal and no snapshot (agent conversations: their state is their
    journal), as JSON-ready records (``actor``, ``entries``, ``updated``). Blocking."""
    conn = _connect_ro(path)
    try:
        if int(conn.execute("PRAGMA user_version").fetchone()[0]) < 2:
            return []  # written before the journal existed
        return [
            {"actor": str(actor), "entries": int(count), "updated": _utc(float(last))}
            for actor, count, last in conn.execute(JOURNAL_ONLY)
        ]
    finally:
        conn.close()


def read_logs(path: str, actor: str) -> list[tuple[str, int, bytes, float]]:
    """``actor``'s log entries (``Log`` fields): ``(field, seq, entry, recorded)``. Blocking."""
    conn = _connect_ro(path)
    try:
        if int(conn.execute("PRAGMA user_version").fetchone()[0]) < 3:
            return []  # written before logs existed
        return [
            (str(field), int(seq), bytes(entry), float(recorded))
            for field, seq, entry, recorded in conn.execute(SELECT_LOGS, (actor,))
        ]
    finally:
        conn.close()


def log_lengths(path: str) -> dict[str, dict[str, int]]:
    """Each actor's stored log lengths, ``{actor: {field: entries}}``. Blocking."""
    conn = _connect_ro(path)
    try:
        if int(conn.execute("PRAGMA user_version").fetchone()[0]) < 3:
            return {}
        found: dict[str, dict[str, int]] = {}
        for actor, field, count in conn.execute(COUNT_LOGS):
            found.setdefault(str(actor), {})[str(field)] = int(count)
        return found
    finally:
        conn.close()


def log_records(path: str, actor: str) -> list[dict[str, Any]]:
    """``actor``'s log entries as JSON-ready records (``field``, ``seq``, ``recorded``,
    ``entry``), by field then position."""
    return [
        {"field": field, "seq": seq, "recorded": _utc(recorded), "entry": state_as_json(entry)}
        for field, seq, entry, recorded in read_logs(path, actor)
    ]


def budget_records(path: str) -> list[dict[str, Any]]:
    """The persistent budgets as JSON-ready records: ``name``, limits (``tokens``, ``usd``,
    ``seconds``; None: none), ``opened``, ``spent`` and ``reserved`` (``tokens``, ``usd``),
    ``updated``. Blocking."""
    conn = _connect_ro(path)
    try:
        if int(conn.execute("PRAGMA user_version").fetchone()[0]) < 4:
            return []  # written before persistent budgets existed
        rows = conn.execute(LIST_BUDGETS).fetchall()
    finally:
        conn.close()
    return [
        {
            "name": name,
            "tokens": tokens,
            "usd": usd,
            "seconds": seconds,
            "opened": _utc(opened),
            "spent": {"tokens": spent_tokens, "usd": spent_usd},
            "reserved": {"tokens": held_tokens, "usd": held_usd},
            "updated": _utc(updated),
        }
        for (
            name,
            tokens,
            usd,
            seconds,
            opened,
            spent_tokens,
            spent_usd,
            held_tokens,
            held_usd,
            updated,
        ) in rows
    ]


def _utc(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat()


def journal_records(path: str, actor: str) -> list[dict[str, Any]]:
    """``actor``'s journal as JSON-ready records (``seq``, ``recorded``, ``kind``, ``event``)."""
    return [
        {"seq": seq, "recorded": _utc(recorded), "kind": kind, "event": state_as_json(event)}
        for seq, kind, event, recorded in read_journal(path, actor)
    ]


def state_as_json(data: bytes) -> Any:
    """A snapshot's state as JSON-ready data, or a description of why it does not decode."""
    try:
        return msgspec.json.decode(msgspec.json.encode(msgspec.msgpack.decode(data)))
    except (msgspec.DecodeError, msgspec.EncodeError, TypeError) as exc:
        return {"undecodable": str(exc), "bytes": len(data)}


def snapshot_records(path: str, actors: list[str] | None = None) -> list[dict[str, Any]]:
    """The snapshots as JSON-ready records (``actor``, ``version``, ``updated``, ``state``,
    and ``logs``: the length of each of its ``Log`` fields, whose entries are rows of their
    own — :func:`log_records`)."""
    wanted = set(actors) if actors else None
    lengths = log_lengths(path)
    records = []
    for actor, version, updated, data in read_snapshots(path):
        if wanted is not None and actor not in wanted:
            continue
        records.append(
            {
                "actor": actor,
                "version": version,
                "updated": _utc(updated),
                "state": state_as_json(data),
                "logs": lengths.get(actor, {}),
            }
        )
    return records


__all__ = [
    "budget_records",
    "journal_only",
    "journal_records",
    "log_lengths",
    "log_records",
    "read_logs",
    "read_journal",
    "read_snapshots",
    "schema_version",
    "snapshot_records",
    "state_as_json",
]

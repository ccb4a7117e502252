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

from understudy.persistence._schema import LIST_SNAPSHOTS, SCHEMA_VERSION, SELECT_JOURNAL


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
    """The snapshots as JSON-ready records (``actor``, ``version``, ``updated``, ``state``)."""
    wanted = set(actors) if actors else None
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
            }
        )
    return records


__all__ = [
    "journal_records",
    "read_journal",
    "read_snapshots",
    "schema_version",
    "snapshot_records",
    "state_as_json",
]

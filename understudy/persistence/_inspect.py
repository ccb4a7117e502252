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

from understudy.persistence._schema import LIST_SNAPSHOTS, SCHEMA_VERSION


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
                "updated": datetime.datetime.fromtimestamp(updated, datetime.UTC).isoformat(),
                "state": state_as_json(data),
            }
        )
    return records


__all__ = ["read_snapshots", "schema_version", "snapshot_records", "state_as_json"]

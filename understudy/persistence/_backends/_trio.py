"""The trio driver: stdlib :mod:`sqlite3` on a worker thread, one hop per group.

A whole group — its writes, the check for refused rows, ``COMMIT`` or ``ROLLBACK`` — is one
synchronous function run through ``anyio.to_thread.run_sync``, so a group costs one thread
hop (about 100 µs here) however many snapshots it holds. The hop is not abandoned when the
writer is cancelled: a transaction is never left half-done on a thread nobody waits for.
Nothing here is trio-specific; it is the driver for any event loop aiosqlite does not serve.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import anyio.to_thread

from understudy.persistence._schema import (
    INSERT_SNAPSHOT,
    LOAD_CHUNK,
    SELECT_VERSION,
    UPDATE_SNAPSHOT,
    InsertRow,
    Stale,
    Synchronous,
    UpdateRow,
    connect,
    select_snapshots,
)


def _commit(
    conn: sqlite3.Connection,
    inserts: list[InsertRow],
    updates: list[UpdateRow],
    fault: BaseException | None,
) -> list[Stale]:
    try:
        written = 0
        if updates:
            written += conn.executemany(UPDATE_SNAPSHOT, updates).rowcount
        if inserts:
            written += conn.executemany(INSERT_SNAPSHOT, inserts).rowcount
        stale: list[Stale] = []
        if written != len(updates) + len(inserts):
            # Some version check failed: start again row by row to learn which.
            conn.rollback()
            for update in updates:
                if conn.execute(UPDATE_SNAPSHOT, update).rowcount == 0:
                    stale.append((update[3], update[4], _version(conn, update[3])))
            for insert in inserts:
                if conn.execute(INSERT_SNAPSHOT, insert).rowcount == 0:
                    stale.append((insert[0], 0, _version(conn, insert[0])))
        if fault is not None:
            raise fault
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return stale


def _version(conn: sqlite3.Connection, actor: str) -> int | None:
    row = conn.execute(SELECT_VERSION, (actor,)).fetchone()
    return int(row[0]) if row else None


def _load(conn: sqlite3.Connection, actors: Sequence[str]) -> dict[str, tuple[int, bytes]]:
    found: dict[str, tuple[int, bytes]] = {}
    for start in range(0, len(actors), LOAD_CHUNK):
        chunk = actors[start : start + LOAD_CHUNK]
        for actor, version, state in conn.execute(select_snapshots(len(chunk)), chunk):
            found[actor] = (version, state)
    return found


class ThreadDriver:
    name = "sqlite3-thread"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, path: str, synchronous: Synchronous, busy_timeout: float) -> ThreadDriver:
        conn = await anyio.to_thread.run_sync(connect, path, synchronous, busy_timeout)
        return cls(conn)

    async def commit(
        self, inserts: list[InsertRow], updates: list[UpdateRow], fault: BaseException | None
    ) -> list[Stale]:
        return await anyio.to_thread.run_sync(_commit, self._conn, inserts, updates, fault)

    async def load(self, actors: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        return await anyio.to_thread.run_sync(_load, self._conn, actors)

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self._conn.close)


__all__ = ["ThreadDriver"]

"""The asyncio driver: :mod:`aiosqlite`, whose own thread runs every statement.

A group costs two hops to that thread: the writes (one ``executemany`` per kind of write,
updates and inserts) and the ``COMMIT``; a conflict (rare) costs one more hop per row of its
group to find which rows were refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiosqlite

from understudy.persistence._schema import (
    INSERT_SNAPSHOT,
    LOAD_CHUNK,
    SELECT_VERSION,
    UPDATE_SNAPSHOT,
    InsertRow,
    Stale,
    Synchronous,
    UpdateRow,
    pragmas,
    select_snapshots,
)


class AiosqliteDriver:
    name = "aiosqlite"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    @classmethod
    async def open(
        cls, path: str, synchronous: Synchronous, busy_timeout: float
    ) -> AiosqliteDriver:
        conn = await aiosqlite.connect(path, timeout=busy_timeout, isolation_level="IMMEDIATE")
        try:
            for pragma in pragmas(synchronous, busy_timeout):
                await conn.execute(pragma)
        except BaseException:
            await conn.close()
            raise
        return cls(conn)

    async def commit(
        self, inserts: list[InsertRow], updates: list[UpdateRow], fault: BaseException | None
    ) -> list[Stale]:
        conn = self._conn
        try:
            written = 0
            if updates:
                written += (await conn.executemany(UPDATE_SNAPSHOT, updates)).rowcount
            if inserts:
                written += (await conn.executemany(INSERT_SNAPSHOT, inserts)).rowcount
            stale: list[Stale] = []
            if written != len(updates) + len(inserts):
                # Some version check failed: start again row by row to learn which.
                await conn.rollback()
                stale = await self._one_by_one(inserts, updates)
            if fault is not None:
                raise fault
            await conn.commit()
        except BaseException:
            await conn.rollback()
            raise
        return stale

    async def _one_by_one(self, inserts: list[InsertRow], updates: list[UpdateRow]) -> list[Stale]:
        conn = self._conn
        stale: list[Stale] = []
        for update in updates:
            if (await conn.execute(UPDATE_SNAPSHOT, update)).rowcount == 0:
                stale.append((update[3], update[4], await self._version(update[3])))
        for insert in inserts:
            if (await conn.execute(INSERT_SNAPSHOT, insert)).rowcount == 0:
                stale.append((insert[0], 0, await self._version(insert[0])))
        return stale

    async def _version(self, actor: str) -> int | None:
        rows = list(await self._conn.execute_fetchall(SELECT_VERSION, (actor,)))
        return int(rows[0][0]) if rows else None

    async def load(self, actors: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        found: dict[str, tuple[int, bytes]] = {}
        for start in range(0, len(actors), LOAD_CHUNK):
            chunk = actors[start : start + LOAD_CHUNK]
            for actor, version, state in await self._conn.execute_fetchall(
                select_snapshots(len(chunk)), chunk
            ):
                found[actor] = (version, state)
        return found

    async def close(self) -> None:
        await self._conn.close()


__all__ = ["AiosqliteDriver"]

"""The asyncio driver: :mod:`aiosqlite`, whose own thread runs every statement.

Each step of an operation is one hop to aiosqlite's thread: a group commit is two hops in
the common case (its ``executemany``\\ s, then ``COMMIT``), plus one per statement when a
compare-and-set conflict makes it redo the group actor by actor (rare).
"""

from __future__ import annotations

import aiosqlite

from understudy.persistence._ops import Steps
from understudy.persistence._schema import Synchronous, pragmas


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

    async def run(self, steps: Steps) -> object:
        conn = self._conn
        try:
            kind, sql, params = next(steps)
            while True:
                result: object = None
                if kind == "many":
                    result = (await conn.executemany(sql, params)).rowcount
                elif kind == "execute":
                    result = (await conn.execute(sql, params)).rowcount
                elif kind == "one":
                    rows = list(await conn.execute_fetchall(sql, params))
                    result = rows[0] if rows else None
                elif kind == "all":
                    result = await conn.execute_fetchall(sql, params)
                elif kind == "commit":
                    await conn.commit()
                elif kind == "rollback":
                    await conn.rollback()
                else:
                    raise AssertionError(f"unknown step {kind!r}")
                kind, sql, params = steps.send(result)
        except StopIteration as done:
            return done.value
        except BaseException:
            if conn.in_transaction:
                await conn.rollback()
            raise
        finally:
            steps.close()

    async def close(self) -> None:
        await self._conn.close()


__all__ = ["AiosqliteDriver"]

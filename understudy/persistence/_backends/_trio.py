"""The trio driver: stdlib :mod:`sqlite3` on a worker thread, one hop per operation.

A whole operation — a group commit with its writes, its conflict check and its ``COMMIT``
or ``ROLLBACK``; a batch of loads — runs as one synchronous function through
``anyio.to_thread.run_sync``, so a group costs one thread hop (about 100 µs here) however
many snapshots it holds. The hop is not abandoned when the writer is cancelled: a
transaction is never left half-done on a thread nobody waits for. Nothing here is
trio-specific; it is the driver for any event loop aiosqlite does not serve.
"""

from __future__ import annotations

import sqlite3

import anyio.to_thread

from understudy.persistence._ops import Steps
from understudy.persistence._schema import Synchronous, connect


def run_steps(conn: sqlite3.Connection, steps: Steps) -> object:
    """Run an operation's steps on ``conn`` (blocking; on the worker thread)."""
    try:
        kind, sql, params = next(steps)
        while True:
            result: object = None
            if kind == "many":
                result = conn.executemany(sql, params).rowcount
            elif kind == "execute":
                result = conn.execute(sql, params).rowcount
            elif kind == "one":
                result = conn.execute(sql, params).fetchone()
            elif kind == "all":
                result = conn.execute(sql, params).fetchall()
            elif kind == "commit":
                conn.commit()
            elif kind == "rollback":
                conn.rollback()
            else:
                raise AssertionError(f"unknown step {kind!r}")
            kind, sql, params = steps.send(result)
    except StopIteration as done:
        return done.value
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    finally:
        steps.close()


class ThreadDriver:
    name = "sqlite3-thread"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, path: str, synchronous: Synchronous, busy_timeout: float) -> ThreadDriver:
        conn = await anyio.to_thread.run_sync(connect, path, synchronous, busy_timeout)
        return cls(conn)

    async def run(self, steps: Steps) -> object:
        return await anyio.to_thread.run_sync(run_steps, self._conn, steps)

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self._conn.close)


__all__ = ["ThreadDriver", "run_steps"]

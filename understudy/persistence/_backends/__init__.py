"""The store's two SQLite drivers, behind one small interface (anyio's ``_backends`` habit).

This is the only backend-specific code in understudy. The driver is chosen once, when a store
opens, from the event loop it opens on:

* asyncio: :mod:`aiosqlite` (``_asyncio.py``), whose own thread runs each statement;
* trio: stdlib :mod:`sqlite3` on a worker thread through ``anyio.to_thread`` (``_trio.py``),
  one thread hop per group commit (aiosqlite does not run on trio).

Both run the same statements from :mod:`understudy.persistence._schema`, with the same
transaction shape: an implicit ``BEGIN IMMEDIATE`` before the first write of a group, all the
group's compare-and-set writes, then ``COMMIT`` — or ``ROLLBACK`` on any error, so a failed
group leaves nothing behind. A driver is used by one task at a time (the store's writer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import sniffio

from understudy.errors import PersistenceError
from understudy.persistence._schema import InsertRow, Stale, Synchronous, UpdateRow


class Driver(Protocol):
    """What the store needs from a driver. Each method is a checkpoint; none is safe to call
    from two tasks at once."""

    name: str
    """Which driver this is: ``"aiosqlite"`` or ``"sqlite3-thread"``."""

    async def commit(
        self, inserts: list[InsertRow], updates: list[UpdateRow], fault: BaseException | None
    ) -> list[Stale]:
        """Write one group in one transaction and commit it; return the refused writes.

        A write whose version check fails is left out (and returned); the others commit.
        ``fault`` (a test hook) is raised after the writes and before ``COMMIT``. Raises the
        driver's :class:`sqlite3.Error` after rolling back.
        """
        ...

    async def load(self, actors: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        """The committed (version, state) of each of ``actors`` that has a row."""
        ...

    async def close(self) -> None:
        """Close the connection (and its thread, if it has its own)."""
        ...


async def open_driver(path: str, synchronous: Synchronous, busy_timeout: float) -> Driver:
    """Open the driver that suits the running event loop."""
    library = sniffio.current_async_library()
    if library == "asyncio":
        from understudy.persistence._backends._asyncio import AiosqliteDriver

        return await AiosqliteDriver.open(path, synchronous, busy_timeout)
    if library == "trio":
        from understudy.persistence._backends._trio import ThreadDriver

        return await ThreadDriver.open(path, synchronous, busy_timeout)
    raise PersistenceError(f"no SQLite driver for the {library!r} event loop (asyncio or trio)")


__all__ = ["Driver", "open_driver"]

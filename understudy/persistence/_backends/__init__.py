"""The store's two SQLite drivers, behind one small interface (anyio's ``_backends`` habit).

Backend-specific code in understudy is kept to small bridges like this one (and
:mod:`understudy._wake`, the web server's startup). The driver is chosen once, when a store
opens, from the event loop it opens on:

* asyncio: :mod:`aiosqlite` (``_asyncio.py``), whose own thread runs each statement;
* trio: stdlib :mod:`sqlite3` on a worker thread through ``anyio.to_thread`` (``_trio.py``),
  one thread hop per operation however many statements it takes (aiosqlite does not run on
  trio).

A driver only *runs* operations: the operations themselves (group commit, load, prune) are
step generators in :mod:`understudy.persistence._ops`, written once for both. Both drivers
use connections with an implicit ``BEGIN IMMEDIATE`` before the first write, and roll back
whenever an operation raises, so a failed group leaves nothing behind. A driver is used by
one task at a time (the store's writer).
"""

from __future__ import annotations

from typing import Protocol

import sniffio

from understudy.errors import PersistenceError
from understudy.persistence._ops import Steps
from understudy.persistence._schema import Synchronous


class Driver(Protocol):
    """What the store needs from a driver. Each method is a checkpoint; none may be called
    from two tasks at once."""

    name: str
    """Which driver this is: ``"aiosqlite"`` or ``"sqlite3-thread"``."""

    async def run(self, steps: Steps) -> object:
        """Run the operation ``steps`` (see :mod:`~understudy.persistence._ops`) and return
        its result. Raises the driver's :class:`sqlite3.Error` (or what the operation
        raised) after rolling back any open transaction."""
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

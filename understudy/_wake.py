"""A one-shot wake-up for the ask path: set once, awaited by the tasks it wakes.

:class:`Wake` has the shape of :class:`anyio.Event` (``set``, ``is_set``, ``wait``) and its
semantics on both backends (``wait`` is a checkpoint; a cancelled waiter is withdrawn), but
it is built on each backend's own primitive: an asyncio ``Future`` or a ``trio.Event``,
made only when a task actually waits. Every ask makes one (its reply) and every actor one
each time it parks for mail, so what ``anyio.Event`` adds on top of those primitives
(a backend lookup per event, an ``asyncio.Event`` with its deque of futures, two coroutine
frames per wait) was a measurable share of an ask's CPU and of the objects the garbage
collector rescans while thousands of asks are in flight (see ``docs/decisions.md``).

A bridge like the store's drivers (:mod:`understudy.persistence._backends`): it picks the
backend from the running event loop when a task first waits, so one process can run asyncio
and trio one after the other. Not thread-safe: set and awaited from the event loop's thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio.lowlevel

_running_loop = asyncio._get_running_loop  # None, and no exception, outside asyncio
_trio_event: Any = None  # trio.Event, imported when a trio task first waits


class Wake:
    """A one-shot event (see the module docstring). ``set`` never blocks and may be called
    more than once; ``wait`` returns once it is set, at once (after a checkpoint) if it is
    already, and raises the backend's cancellation if the waiter is cancelled first."""

    __slots__ = ("_flag", "_waiter")

    def __init__(self) -> None:
        self._flag = False
        self._waiter: Any = None
        """None until a task waits; then that wait's asyncio Future or trio Event, or a
        list of them when more than one task waits."""

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        if self._flag:
            return
        self._flag = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if type(waiter) is list:
                for one in waiter:
                    _release(one)
            else:
                _release(waiter)

    async def wait(self) -> None:
        if self._flag:
            await anyio.lowlevel.checkpoint()
            return
        loop = _running_loop()
        one: Any = (
            loop.create_future() if loop is not None else (_trio_event or _import_trio_event())()
        )
        waiter = self._waiter
        if waiter is None:
            self._waiter = one
        elif type(waiter) is list:
            waiter.append(one)
        else:
            self._waiter = [waiter, one]
        try:
            await (one if loop is not None else one.wait())
        except BaseException:
            self._withdraw(one)
            raise

    def _withdraw(self, one: Any) -> None:
        waiter = self._waiter
        if waiter is one:
            self._waiter = None
        elif type(waiter) is list and one in waiter:
            waiter.remove(one)


def _import_trio_event() -> Any:
    global _trio_event
    import trio  # not asyncio: the other backend understudy runs on

    _trio_event = trio.Event
    return _trio_event


def _release(one: Any) -> None:
    if isinstance(one, asyncio.Future):
        if not one.done():  # a cancelled waiter's future is done already
            one.set_result(None)
    else:
        one.set()


__all__ = ["Wake"]

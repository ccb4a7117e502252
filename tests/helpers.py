"""Small test doubles shared by the suite: a probe actors record into and tests wait on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

GUARD = 5.0
"""Seconds after which a wait fails instead of hanging (no test should come near it)."""


class Probe:
    """A list that actors append to and tests wait on, without sleeping or polling."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed: anyio.Event | None = None

    def record(self, item: Any) -> None:
        self.items.append(item)
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()

    async def wait_until(self, predicate: Callable[[list[Any]], bool]) -> list[Any]:
        """Wait until ``predicate(items)`` holds; fail after :data:`GUARD` seconds."""
        with anyio.fail_after(GUARD):
            while not predicate(self.items):
                if self._changed is None:
                    self._changed = anyio.Event()
                await self._changed.wait()
        return self.items

    async def wait_for(self, count: int = 1) -> list[Any]:
        """Wait until at least ``count`` items were recorded."""
        return await self.wait_until(lambda items: len(items) >= count)


def running_task_ids() -> set[int]:
    """Ids of every task alive in this event loop (backend-neutral)."""
    return {task.id for task in anyio.get_running_tasks()}

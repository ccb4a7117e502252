"""The mailbox: a bounded FIFO of user messages plus a system lane served first.

The user lane is a :class:`collections.deque` bounded by ``capacity``; putting never yields
to the scheduler while there is room, and the owning actor drains what is queued in batches,
so a message costs an append and a pop rather than a scheduler round trip (the lesson of
``asyncio.Queue`` versus a bare memory stream). The owner parks on a
:class:`~understudy._wake.Wake` and a blocked sender on an :class:`anyio.Event`, each made
only when it actually has to park.

The system lane (stop requests, watch notifications, child failures) is unbounded and always
served before the next user message, so an actor with a full mailbox can still be stopped.

What happens when the user lane is full is the actor's *overflow policy*:

* ``"block"`` (default): the sender awaits until there is room (backpressure);
* ``"fail"``: the sender gets :class:`~understudy.MailboxFull` at once;
* ``"drop_oldest"``: the oldest queued message is evicted (it becomes a dead letter).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Generic, Literal, TypeVar

import anyio

from understudy._wake import Wake

Overflow = Literal["block", "fail", "drop_oldest"]
OVERFLOW_POLICIES: tuple[Overflow, ...] = ("block", "fail", "drop_oldest")
DEFAULT_CAPACITY = 1000
"""Default bound of an actor's user lane (``capacity=`` on spawn overrides it)."""

T = TypeVar("T")


def check_capacity(capacity: object, where: str) -> int:
    """Return ``capacity`` if it is a positive int, else raise a ``ValueError``/``TypeError``."""
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise TypeError(f"{where}: capacity must be a positive int, not {capacity!r}")
    if capacity <= 0:
        raise ValueError(f"{where}: capacity must be positive, not {capacity}")
    return capacity


def check_overflow(overflow: object, where: str) -> Overflow:
    """Return ``overflow`` if it names a policy, else raise ``ValueError``."""
    if overflow not in OVERFLOW_POLICIES:
        raise ValueError(f"{where}: overflow must be one of {OVERFLOW_POLICIES}, not {overflow!r}")
    return overflow


class Mailbox(Generic[T]):
    """One actor identity's mailbox. Not thread-safe: used from the runtime's event loop only.

    The owner reads ``queue`` and ``system`` directly on its hot path; senders use
    :meth:`put_nowait` and, when it returns False, the overflow policy.
    """

    __slots__ = ("baton", "capacity", "overflow", "queue", "senders", "system", "waiter")

    def __init__(self, capacity: int, overflow: Overflow) -> None:
        self.capacity = capacity
        self.overflow = overflow
        self.queue: deque[T] = deque()
        self.system: list[Any] = []
        self.waiter: Wake | None = None
        self.senders: deque[anyio.Event] | None = None
        # At most one blocked sender is woken at a time (it holds the baton); it passes the
        # baton on if room remains. Waking one per message taken would wake a crowd that
        # mostly finds the lane full again and parks once more.
        self.baton = False

    def __len__(self) -> int:
        return len(self.queue)

    def put_nowait(self, item: T) -> bool:
        """Append ``item`` if there is room and wake the owner; False if the lane is full."""
        queue = self.queue
        if len(queue) < self.capacity:
            queue.append(item)
            waiter = self.waiter
            if waiter is not None:
                self.waiter = None
                waiter.set()
            return True
        return False

    def evict_oldest(self) -> T:
        """Remove and return the oldest queued item (``drop_oldest`` makes room with it)."""
        return self.queue.popleft()

    def put_system(self, item: Any) -> None:
        """Append to the system lane (unbounded) and wake the owner. Never blocks."""
        self.system.append(item)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            waiter.set()

    def wake_sender(self) -> None:
        """Wake the longest-blocked sender, unless one woken earlier has not run yet."""
        if not self.baton and self.senders:
            self.baton = True
            self.senders.popleft().set()

    def pass_baton(self) -> None:
        """Called by a woken sender once it has put: wake the next one if room remains."""
        if len(self.queue) < self.capacity:
            self.wake_sender()

    async def wait(self) -> None:
        """Park the owner until something is put in either lane. A checkpoint."""
        event = Wake()
        self.waiter = event
        try:
            await event.wait()
        finally:
            self.waiter = None

    async def wait_for_space(self, event: anyio.Event | None = None) -> bool:
        """Park a sender until the owner takes a message (or :meth:`release_senders`).

        ``event``: the sender's own wake-up, which something else (a deadline's timer) may
        also set; then this returns False if that is what woke it (it has withdrawn), and
        True when the owner did."""
        timed = event is not None
        if event is None:
            event = anyio.Event()
        if self.senders is None:
            self.senders = deque()
        self.senders.append(event)
        try:
            await event.wait()
        except BaseException:
            # Cancelled: withdraw, and if the baton already came to us, pass it on so the
            # room it announced is not lost to the senders still waiting.
            if event.is_set():
                self.baton = False
                self.pass_baton()
            else:
                self.senders.remove(event)
            raise
        if timed and event in self.senders:  # set by its timer: the owner never picked it
            self.senders.remove(event)
            return False
        self.baton = False
        return True

    def release_senders(self) -> None:
        """Wake every blocked sender (the owner stopped; they will find it closed)."""
        senders = self.senders
        while senders:
            senders.popleft().set()
        self.baton = False

    def drain(self) -> list[T]:
        """Remove and return everything still queued in the user lane, oldest first."""
        items = list(self.queue)
        self.queue.clear()
        self.release_senders()
        return items


__all__ = ["DEFAULT_CAPACITY", "OVERFLOW_POLICIES", "Mailbox", "Overflow"]

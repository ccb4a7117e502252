"""The watchdog that ends asks and blocked tells at their deadline (internal).

Deadlines themselves live in the envelope (:data:`understudy.actors.Limits`): every message
carries the deadline of the request it belongs to, and the actor checks it before handling
the message. What needs a timer is the *waiting* side: an asker waiting for its reply, a
sender waiting for mailbox room. A cancel scope per wait costs about as much as the rest of
an ask, so one task per runtime keeps those waits in a heap by deadline instead.
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING, Any

import anyio

from understudy.actors import ALARM, Reply
from understudy.errors import DeadlineExceeded
from understudy.messages import Message

if TYPE_CHECKING:
    from understudy.actors import ActorSystem, Cell
    from understudy.budgets import Budget


class Watchdog:
    """Fails the asks whose deadline passes before their reply (internal; one per runtime).

    An ask bounded by a timeout or an inherited deadline registers its reply slot here
    instead of opening a cancel scope of its own (which would cost about as much as the rest
    of the ask): one task, started on first use, sleeps until the earliest deadline and
    fails the slots still empty then with :class:`DeadlineExceeded`. Answered entries are
    dropped when their deadline comes, or all at once when they make up most of the heap;
    the task wakes only for the earliest deadline. Deadlines are in the runtime's clock;
    the task sleeps in the event loop's.
    """

    __slots__ = (
        "answered",
        "heap",
        "offset",
        "running",
        "scope",
        "seq",
        "system",
        "wake_at",
        "wakeup",
    )

    def __init__(self, system: ActorSystem) -> None:
        self.system = system
        self.offset: float | None = None
        """The event loop's clock minus the runtime's, when that is a constant (the
        runtime's default clock); None: convert each deadline by reading both clocks."""
        self.heap: list[list[Any]] = []
        """Entries ``[deadline, tie-breaker, reply or None once done, cell, message,
        timeout, budget]``, a heap by deadline."""
        self.seq = 0  # tie-breaker: entries never compare beyond it
        self.answered = 0
        """Entries done (answered, or their asker gone) but still in the heap."""
        self.running = False
        self.scope: anyio.CancelScope | None = None
        self.wake_at = math.inf  # the scope's deadline (reading it back costs more)
        self.wakeup: anyio.Event | None = None

    def watch(
        self,
        deadline: float,
        reply: Reply | anyio.Event | Any,
        cell: Cell | None = None,
        msg: Message | None = None,
        timeout: float | None = None,
        budget: Budget | None = None,
    ) -> list[Any]:
        """Fail ``reply`` at ``deadline`` unless :meth:`done` is called first with the entry
        returned (or, given an :class:`anyio.Event`, set it then). Never blocks.

        ``timeout`` is the ask's own timeout when that is what binds (None: an inherited
        deadline); ``budget`` is the budget whose own deadline it is, if any (it then counts
        a time exhaustion)."""
        if self.offset is not None:
            deadline += self.offset
        else:
            deadline = anyio.current_time() + (deadline - self.system.clock())
        heap = self.heap
        if self.answered > 64 and self.answered * 2 > len(heap):
            heap[:] = [entry for entry in heap if entry[2] is not None]
            heapq.heapify(heap)
            self.answered = 0
        self.seq = seq = self.seq + 1
        entry = [deadline, seq, reply, cell, msg, timeout, budget]
        heapq.heappush(heap, entry)
        if not self.running:
            self.running = True
            self.system.task_group.start_soon(self._run, name="understudy ask deadlines")
        elif self.wakeup is not None:
            self.wakeup.set()
            self.wakeup = None
        elif deadline < self.wake_at and self.scope is not None:
            self.scope.deadline = self.wake_at = deadline
        return entry

    def done(self, entry: list[Any]) -> None:
        """The ask of ``entry`` is over (answered, failed, or its asker cancelled)."""
        if entry[2] is not None:
            entry[2] = None
            self.answered += 1

    async def _run(self) -> None:
        heap = self.heap
        while True:
            # Answered entries stay until their deadline (or a compaction): dropping them
            # here would wake this task once per ask.
            if not heap:
                self.wakeup = anyio.Event()
                await self.wakeup.wait()
                continue
            self.wake_at = heap[0][0]
            with anyio.CancelScope(deadline=self.wake_at) as scope:
                self.scope = scope
                await anyio.sleep_forever()
            self.scope = None
            self.wake_at = math.inf
            now = anyio.current_time()
            while heap and heap[0][0] <= now:
                self._expire(heapq.heappop(heap))
            # No local may keep an expired entry's reply (and so a late reply) alive here.

    def _expire(self, entry: list[Any]) -> None:
        _, _, reply, cell, msg, timeout, budget = entry
        if reply is None:
            self.answered -= 1
            return
        entry[2] = None  # its asker's done() will not count it
        if reply is ALARM:
            cell.alarm_rang()  # a handler deadline: the cell cuts the handler if it still runs
            return
        if not isinstance(reply, Reply):
            reply.set()  # a sender waiting for room: it gives up
            return
        cell.meter.ask_timeouts += 1
        what = f"ask({type(msg).__qualname__}) to actor {cell.label!r}"
        if budget is not None:
            budget.ran_out(cell.label, None)
        reply.fail(
            DeadlineExceeded(
                f"{what} got no reply within {timeout} s"
                if timeout is not None
                else f"{what} got no reply before the deadline it inherited",
                cell.label,
            )
        )


__all__ = ["Watchdog"]

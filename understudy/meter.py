"""Per-actor counters kept on the hot path: the half of metrics that runs with every message.

Each actor cell owns one :class:`Meter` of plain integers and floats. The actor's own loop
updates it (no lock, no prometheus_client call); the metrics collector
(:mod:`understudy.metrics`) reads it at scrape time. Nothing here blocks or allocates per
message.

Handler durations, and what it costs to measure them
----------------------------------------------------
Reading the clock (``time.perf_counter``) costs about 40 ns here, about 7 % of a whole
tell-and-handle of a trivial handler (about 580 ns). Timing every message, and stamping every
message with its enqueue time, cost 13 % each in the tell benchmark, more than the 10 % this
layer may add. So the clock is read once per *group* of messages handled back to back rather
than once per message:

* Handlers that took about 70 µs or more on average are timed one by one (the clock is then
  noise).
* Faster handlers are timed in groups whose expected total is about 100 µs (at most
  :data:`MAX_GROUP` messages, never across a batch). A group that took at most 1 ms, the
  first bucket's bound, puts
  every one of its messages in that bucket, which is exact: none of them can have taken
  longer than the whole group. A group that took longer (a usually fast handler was slow) is
  recorded as one observation of the group's total and the rest at "1 ms or less", and
  timing falls back to one message at a time.

So ``_count`` (every handled message) and ``_sum`` (the time spent) are exact, and a message
is put in a bucket above 1 ms only by its own duration, over-stated by at most the other
messages of its group (typically well under 100 µs). A group is published when it closes: at
most :data:`MAX_GROUP` fast messages can be handled but not yet counted while a handler of
their group is in progress.

Mailbox wait
------------
Stamping every message with its enqueue time would cost another 13 % of the fast path, so
messages are stamped *by sample*: every message sent to an actor that is timed one message at
a time (slow handlers, where the wait matters and the clock is noise), and the first message
sent after each group closes for fast actors. ``understudy_mailbox_wait_seconds`` observes the
stamped messages, from the send (including any time the sender was held back by a full
mailbox) to the handler's start; its ``_count`` is at most the number of messages handled.
"""

from __future__ import annotations

from bisect import bisect_left
from time import perf_counter as clock
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from understudy.actors import Cell

BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)
"""Upper bounds (seconds) of the duration histograms' buckets: 1 ms to 10 minutes, so an LLM
call is still inside a bucket. ``+Inf`` follows."""

FIRST = BUCKETS[0]
GROUP_SECONDS = 0.0001
"""Expected duration of a timed group of fast messages (a tenth of the first bucket)."""

MAX_GROUP = 64
"""Most messages timed as one group."""


def bucket_index(seconds: float) -> int:
    """Index of the bucket ``seconds`` falls in (``len(BUCKETS)`` for ``+Inf``)."""
    return bisect_left(BUCKETS, seconds)


class Meter:
    """One actor identity's counters (it outlives restarts, like the cell).

    The meter also paces the actor's batches, so that its loop keeps one countdown per
    message, as it would without metrics: :meth:`open` (a batch starts) and :meth:`resume`
    (handling resumes after a system message) return how many messages to handle until the
    meter's next turn; :meth:`tally` is that turn (a group ends) and returns the next
    countdown, or 0 when the batch of ``batch`` messages is over and the actor should yield.
    :meth:`close` records a group cut short before the actor awaits anything but a handler.
    With metrics off the countdowns are whole batches and nothing reads the clock.
    ``stamp`` tells senders to stamp the next message with its enqueue time
    (:meth:`take_stamp`).

    Histograms are kept as plain bucket counts: ``*_fast`` for the first bucket (the common
    case), ``*_slow`` (made on first use) for the others, non-cumulative.
    """

    __slots__ = (
        "ask_timeouts",
        "backoff_seconds",
        "backoff_until",
        "backoff_waits",
        "batch",
        "crashes",
        "errors",
        "give_ups",
        "handled_fast",
        "handled_seconds",
        "handled_slow",
        "mark",
        "next",
        "on",
        "rejected",
        "restarts",
        "since",
        "size",
        "stamp",
        "timeouts",
        "wait_fast",
        "wait_seconds",
        "wait_slow",
    )

    def __init__(self, on: bool, batch: int) -> None:
        self.on = on
        """Whether per-message accounting is on (``Runtime(metrics=False)`` turns it off)."""
        self.batch = batch
        self.since = 0  # messages handled in this batch, before the open group
        self.stamp = on
        self.mark = 0.0
        self.size = 0  # messages in the open group (0: closed)
        self.next = 1  # size of the next group
        self.handled_fast = 0
        self.handled_slow: list[int] | None = None
        self.handled_seconds = 0.0
        self.wait_fast = 0
        self.wait_slow: list[int] | None = None
        self.wait_seconds = 0.0
        self.errors = 0
        """Messages whose handler raised or was cut (they are also counted as handled)."""
        self.crashes = 0
        """Of those, the ones that crashed the actor (not answers, not cut at a deadline)."""
        self.rejected = 0
        """Messages refused by the mailbox (full under ``fail``, evicted under ``drop_oldest``)."""
        self.ask_timeouts = 0
        """Asks to this actor whose caller's timeout ran out before the reply."""
        self.restarts: dict[str, int] | None = None
        """Restarts by reason (kept by :func:`count_restart`)."""
        self.timeouts: dict[str, int] | None = None
        """Messages to this actor a time limit stopped, by dead-letter reason (``expired``,
        ``timeout``, ``queue_timeout``, ``idle_timeout``); see :meth:`count_timeout`."""
        self.give_ups: int | None = None
        """Times this supervisor gave up (None: not a supervisor; see :func:`count_give_up`)."""
        self.backoff_waits: list[int] | None = None
        """Backoff delays before restarts, by bucket including the first and ``+Inf``."""
        self.backoff_seconds = 0.0
        self.backoff_until = 0.0
        """When the current backoff ends (``clock()`` time); the actor is backing off until."""

    @property
    def handled(self) -> int:
        """Messages whose handler returned or raised (published when their group closed)."""
        slow = self.handled_slow
        return self.handled_fast + (sum(slow) if slow is not None else 0)

    @property
    def waits(self) -> int:
        """Stamped messages whose mailbox wait was observed."""
        slow = self.wait_slow
        return self.wait_fast + (sum(slow) if slow is not None else 0)

    # -- the actor loop's side --

    def open(self) -> int:
        """A batch starts now: open a group; the countdown to the next :meth:`tally`."""
        self.since = 0
        return self._group(clock() if self.on else 0.0)

    def resume(self) -> int:
        """Handling resumes now, within the batch: open a group; the countdown."""
        return self._group(clock() if self.on else 0.0)

    def tally(self) -> int:
        """The countdown reached zero: record the group; the next countdown, or 0 when the
        batch is over (the actor yields, then calls :meth:`open`)."""
        size = self.size
        self.since += size
        if not self.on:
            self.size = 0
            return 0  # off: a countdown is always the rest of the batch
        now = clock()
        self._record(size, now - self.mark)
        if self.since >= self.batch:
            self.size = 0
            return 0
        return self._group(now)

    def close(self, left: int) -> None:
        """Record the ``size - left`` handled messages of the open group and close it."""
        size = self.size
        if size:
            handled = size - left
            self.since += handled
            if handled > 0 and self.on:
                self._record(handled, clock() - self.mark)
            self.size = 0

    def waited(self, stamp: float, left: int) -> int:
        """A stamped message is about to be handled: close the open group, observe how long
        the message waited, and open a new group starting now; the countdown."""
        now = clock()
        handled = self.size - left
        if handled > 0:
            self.since += handled
            self._record(handled, now - self.mark)
        waited = now - stamp
        if waited <= FIRST:
            self.wait_fast += 1
        else:
            if self.wait_slow is None:
                self.wait_slow = [0] * len(BUCKETS)
            self.wait_slow[bucket_index(waited) - 1] += 1
        self.wait_seconds += waited
        return self._group(now)

    def _group(self, now: float) -> int:
        self.mark = now
        room = self.batch - self.since
        size = self.next if self.on and self.next < room else room
        self.size = size
        return size

    def _record(self, handled: int, seconds: float) -> None:
        self.handled_seconds += seconds
        self.stamp = True  # sample the enqueue time of the next message sent
        if seconds <= FIRST:
            self.handled_fast += handled
            if seconds > 0.0:
                size = int(GROUP_SECONDS * handled / seconds + 0.5)
                self.next = 1 if size < 1 else MAX_GROUP if size > MAX_GROUP else size
            else:
                self.next = MAX_GROUP
        else:
            self.handled_fast += handled - 1
            if self.handled_slow is None:
                self.handled_slow = [0] * len(BUCKETS)
            self.handled_slow[bucket_index(seconds) - 1] += 1
            self.next = 1

    def count_timeout(self, reason: str) -> None:
        """A time limit stopped a message to this actor (``reason``: its dead-letter
        reason). Never blocks."""
        timeouts = self.timeouts
        if timeouts is None:
            self.timeouts = {reason: 1}
        else:
            timeouts[reason] = timeouts.get(reason, 0) + 1

    # -- the senders' side --

    def take_stamp(self) -> float:
        """The enqueue time for a message being sent (only called when ``stamp`` is set)."""
        self.stamp = self.next == 1  # slow actors: every message; fast ones: one per group
        return clock()


def mark_supervisor(cell: Cell) -> None:
    """``cell`` runs a supervisor: export its give-ups (from 0, so the first one shows up
    in ``increase()``). Never blocks."""
    if cell.meter.give_ups is None:
        cell.meter.give_ups = 0


def count_give_up(cell: Cell) -> None:
    """The supervisor ``cell`` exceeded its restart intensity and gave up. Never blocks."""
    cell.meter.give_ups = (cell.meter.give_ups or 0) + 1


def count_backoff(cell: Cell, delay: float) -> None:
    """``cell`` will wait ``delay`` seconds, backing off, before its restart. Never blocks."""
    meter = cell.meter
    if meter.backoff_waits is None:
        meter.backoff_waits = [0] * (len(BUCKETS) + 1)
    meter.backoff_waits[bucket_index(delay)] += 1
    meter.backoff_seconds += delay
    meter.backoff_until = clock() + delay


def count_restart(cell: Cell, reason: str) -> None:
    """Count one restart of an actor identity, by why its previous instance ended.

    Supervision calls this each time it starts a new instance of a cell: it increments
    ``cell.restarts`` (shown by ``rt.tree()``) and the ``understudy_restarts_total{reason}``
    counter. ``reason`` is an :data:`~understudy.ExitReason`. Never blocks.
    """
    cell.restarts += 1
    meter = cell.meter
    restarts = meter.restarts
    if restarts is None:
        meter.restarts = {reason: 1}
    else:
        restarts[reason] = restarts.get(reason, 0) + 1


__all__ = [
    "BUCKETS",
    "MAX_GROUP",
    "Meter",
    "bucket_index",
    "clock",
    "count_backoff",
    "count_give_up",
    "count_restart",
    "mark_supervisor",
]

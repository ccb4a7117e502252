"""Typed lifecycle events, the event stream that publishes them, and the dead-letter office.

Every event is a frozen :class:`msgspec.Struct` with the actor's display name and a wall-clock
``time``. Publishing never blocks and never slows the runtime: each subscriber has a bounded
buffer, and what does not fit is dropped and counted on that subscription (``dropped``) and
on the stream (``EventStream.dropped``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import anyio
import msgspec

from understudy.errors import RuntimeClosed
from understudy.messages import ExitReason


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Base class of runtime events. ``actor`` is the actor's name (or id for unnamed ones)."""

    actor: str
    time: float = msgspec.field(default_factory=time.time)


class ActorStarted(Event, frozen=True, kw_only=True):
    """An actor instance finished ``on_start`` and serves its mailbox."""

    actor_class: str


class ActorFailed(Event, frozen=True, kw_only=True):
    """An actor instance failed: a handler or hook raised, or it was killed."""

    actor_class: str
    error: BaseException


class ActorTerminated(Event, frozen=True, kw_only=True):
    """An actor identity stopped for good (a restart is not a stop)."""

    actor_class: str
    reason: ExitReason
    error: BaseException | None = None


DEAD_LETTER_REASONS = (
    "stopped",
    "shutdown",
    "mailbox_full",
    "dropped",
    "crashed",
    "circuit_open",
    "expired",
    "timeout",
    "queue_timeout",
    "idle_timeout",
    # core (wave 2)
    "error",
    "deadline",
    "cancelled",
    "unknown_actor",
)
"""Why a message could not be delivered or processed.

``stopped``: the target had stopped (or stopped with the message still queued);
``shutdown``: the runtime exited with the message still queued; ``mailbox_full``: refused
under the ``fail`` policy; ``dropped``: evicted under ``drop_oldest``; ``crashed``: its
handler raised (it is never redelivered); ``circuit_open``: refused by the actor's open
circuit breaker; ``expired``: its deadline passed before it could be handled;
``timeout`` / ``idle_timeout``: its handler was cancelled by the actor's ``timeout`` /
``idle_timeout``; ``queue_timeout``: it waited in the mailbox longer than the actor's
``queue_timeout``; ``error``: a ``tell`` whose handler raised one of the actor's answers
(the actor went on); ``deadline``: its handler was cancelled when the message's deadline
passed; ``cancelled``: its asker was cancelled (before the handler started: skipped;
during it: the handler was cancelled); ``unknown_actor``: sent through a name ref to a name
no live actor took within the wait."""


class ErrorAnswered(Event, frozen=True, kw_only=True):
    """A handler of ``actor`` raised ``error``, one of the actor's *answers*
    (``Actor.answers``): the asker got it, the actor kept its state and goes on; no
    restart. ``message`` is the message's type name."""

    actor_class: str
    message: str
    error: BaseException


class DeadLetter(Event, frozen=True, kw_only=True):
    """A message that could not be delivered or processed, and why."""

    message: Any
    reason: str
    correlation_id: str | None = None


class Subscription:
    """One subscriber's bounded view of the event stream: an async iterator of events.

    Iteration ends when the subscription is closed or the runtime exits. Use it as a context
    manager so it is closed when you are done::

        with rt.events.subscribe(us.ActorFailed) as events:
            async for event in events:
                ...
    """

    def __init__(self, stream: EventStream, types: tuple[type[Event], ...], buffer: int) -> None:
        self._stream = stream
        self._types = types or (Event,)
        self._buffer: deque[Event] = deque()
        self._limit = buffer
        self._waiter: anyio.Event | None = None
        self.closed = False
        self.dropped = 0
        """Events that arrived while this subscription's buffer was full."""

    def _offer(self, event: Event) -> None:
        if not isinstance(event, self._types):
            return
        if len(self._buffer) >= self._limit:
            self.dropped += 1
            self._stream.dropped += 1
            return
        self._buffer.append(event)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    def close(self) -> None:
        """Stop receiving; iteration ends once the buffered events are read."""
        if not self.closed:
            self.closed = True
            self._stream._remove(self)
            self._wake()

    def get_nowait(self) -> Event | None:
        """The next buffered event, or None. Never blocks."""
        return self._buffer.popleft() if self._buffer else None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while not self._buffer:
            if self.closed:
                raise StopAsyncIteration
            waiter = self._waiter = anyio.Event()
            await waiter.wait()
        return self._buffer.popleft()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventStream:
    """The runtime's event stream. Publishing costs nothing when nobody subscribes."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self._closed = False
        self.dropped = 0
        """Events dropped across all subscriptions because a buffer was full."""

    @property
    def active(self) -> bool:
        """Whether anyone subscribes (publishers skip building events when not)."""
        return bool(self._subscriptions)

    def subscribe(self, *types: type[Event], buffer: int = 1000) -> Subscription:
        """Subscribe to events of the given types (all events when none is given).

        ``buffer`` bounds what is held for this subscriber; beyond it, events are dropped and
        counted, never waited for. Never blocks. Raises :class:`RuntimeClosed` after the
        runtime exited (such a subscription would never receive anything nor end).
        """
        if self._closed:
            raise RuntimeClosed("cannot subscribe to events: the runtime has exited")
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer <= 0:
            raise ValueError(f"subscribe: buffer must be a positive int, not {buffer!r}")
        for tp in types:
            if not (isinstance(tp, type) and issubclass(tp, Event)):
                raise TypeError(f"subscribe: {tp!r} is not an event type (a us.Event subclass)")
        subscription = Subscription(self, types, buffer)
        self._subscriptions.append(subscription)
        return subscription

    def publish(self, event: Event) -> None:
        """Offer ``event`` to every subscriber. Never blocks."""
        for subscription in self._subscriptions:
            subscription._offer(event)

    def _remove(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def close(self) -> None:
        """End every subscription (the runtime exited)."""
        self._closed = True
        for subscription in list(self._subscriptions):
            subscription.close()


class DeadLetters:
    """The dead-letter office: counts by reason, and the most recent letters for inspection.

    Iterating yields the kept letters, oldest first. ``counts`` covers every dead letter
    since the runtime started, including those no longer kept.
    """

    def __init__(self, capacity: int) -> None:
        self._recent: deque[DeadLetter] = deque(maxlen=capacity)
        self.counts: dict[str, int] = {}
        """Dead letters by reason since the runtime started."""

    def record(self, letter: DeadLetter) -> None:
        """Count and keep ``letter``. Never blocks."""
        self._recent.append(letter)
        self.counts[letter.reason] = self.counts.get(letter.reason, 0) + 1

    @property
    def total(self) -> int:
        """Every dead letter since the runtime started."""
        return sum(self.counts.values())

    def __iter__(self) -> Iterator[DeadLetter]:
        return iter(list(self._recent))

    def __len__(self) -> int:
        return len(self._recent)


__all__ = [
    "DEAD_LETTER_REASONS",
    "ActorFailed",
    "ActorStarted",
    "ActorTerminated",
    "DeadLetter",
    "DeadLetters",
    "ErrorAnswered",
    "Event",
    "EventStream",
    "Subscription",
]

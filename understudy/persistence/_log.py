"""``Log[T]``: an append-only field of a persistent ``State``, persisted by delta.

A persistent actor's snapshot is rewritten after every message that changes it, so a field
that only grows (a conversation's turns, an account's transfer ids) makes each message cost
more than the last. A ``Log`` field is stored apart: each entry once, as its own row, in the
same transaction as the snapshot of the other fields (which holds only the log's length).
Restoring reads the snapshot and the log's rows. So the cost of a message does not grow
with the length of its logs::

    class Conversation(us.Actor):
        persistent = True

        class State(msgspec.Struct):
            title: str = ""
            turns: us.Log[Turn] = us.Log.field()            # every turn, in memory too
            audit: us.Log[str] = us.Log.field(keep=100)     # the last 100 in memory

A log only grows: ``append``/``extend``, read by index (absolute, from 0), slice, iteration
and ``len`` (the total count, in the store). ``keep=n`` keeps only the last ``n`` entries in
the actor's memory once they are committed (all of them stay in the store; ``understudy
inspect --log ACTOR`` shows them); an index older than that raises ``IndexError``.
Entries are msgspec values (Structs, str, int, tuples, ...): checked when the actor starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar, overload

import msgspec

T = TypeVar("T")


class Log(Generic[T]):
    """An append-only sequence of msgspec values, persisted one row per entry."""

    __slots__ = ("_items", "_queued", "_start", "keep")

    def __init__(self, items: Iterable[T] = (), *, keep: int | None = None) -> None:
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
            raise ValueError(f"Log: keep must be None or a positive int, not {keep!r}")
        self.keep = keep
        """How many committed entries stay in memory (None: all)."""
        self._items: list[T] = list(items)
        self._start = 0
        """The absolute index of ``_items[0]`` (entries before it are in the store only)."""
        self._queued = 0
        """The absolute index up to which entries were handed to the store."""

    @classmethod
    def field(cls, *, keep: int | None = None) -> Any:
        """A ``State`` field default: an empty log (one per instance) with ``keep``."""
        Log(keep=keep)  # check keep now, at class creation

        def fresh() -> Log[Any]:
            return Log(keep=keep)

        return msgspec.field(default_factory=fresh)

    # -- growing --

    def append(self, item: T) -> None:
        """Add ``item`` at the end (committed with the rest of the message's effects)."""
        self._items.append(item)

    def extend(self, items: Iterable[T]) -> None:
        """Add ``items`` at the end, in order."""
        self._items.extend(items)

    # -- reading --

    @property
    def first(self) -> int:
        """The absolute index of the oldest entry held in memory."""
        return self._start

    def __len__(self) -> int:
        return self._start + len(self._items)

    def __iter__(self) -> Iterator[T]:
        """The entries held in memory, oldest first."""
        return iter(self._items)

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            if start < self._start and start < stop:
                raise IndexError(self._evicted(start))
            return self._items[start - self._start : stop - self._start]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"Log index {index} out of range (length {len(self)})")
        if index < self._start:
            raise IndexError(self._evicted(index))
        return self._items[index - self._start]

    def _evicted(self, index: int) -> str:
        return (
            f"Log entry {index} is kept only in the store (this log keeps the last {self.keep} "
            f"entries in memory, from {self._start}); read it with `understudy inspect --log`"
        )

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Log):
            return (
                len(self) == len(other)
                and self._start == other._start
                and (self._items == other._items)
            )
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        keep = "" if self.keep is None else f", keep={self.keep}"
        held = "" if not self._start else f", {self._start} in the store only"
        return f"Log({self._items!r}{keep}{held})"

    # -- persistence (internal) --

    def _take(self) -> tuple[int, list[T]]:
        """The entries not yet handed to the store and the absolute index of the first;
        marks them handed, then drops from memory what ``keep`` lets go of."""
        end = len(self)
        first = self._queued
        new = self._items[first - self._start :] if end > first else []
        self._queued = end
        keep = self.keep
        if keep is not None and len(self._items) > 2 * keep:  # amortised: trim in batches
            drop = len(self._items) - keep
            del self._items[:drop]
            self._start += drop
        return first, new

    def _truncate(self, length: int) -> None:
        """Forget the entries from ``length`` on (a rolled-back message's appends)."""
        if length < len(self):
            del self._items[max(length - self._start, 0) :]

    def _restored(self, count: int, entries: list[T]) -> None:
        """Become the committed log of ``count`` entries whose last ``entries`` are given."""
        self._items = entries
        self._start = count - len(entries)
        self._queued = count


__all__ = ["Log"]

"""A conversation's persisted state: an append-only log of entries, committed by delta.

Each entry is a msgspec Struct (a tagged union, encoded as msgpack) appended to the store's
journal under the conversation id with the next sequence number. :meth:`ConversationLog.append`
queues the entries with the store's group-committing writer and waits for that commit, so
an entry is durable when ``append`` returns, in the middle of a handler: that is what lets
an effect's intent be durable *before* the tool runs (``ctx.persist`` commits only when the
message completes). Concurrent conversations share group commits.

A conversation is rebuilt by replaying its entries (:func:`replay`): the messages of the
Messages API, the open tool calls of the last model turn, the intents and results of the
effect journal, the answers given. Nothing is stored twice: the user message that carries
tool results is made from the :class:`ToolDone` entries, not stored.

Switching to ``us.Log[T]`` (the store engineer's append-only State field) changes only
:class:`ConversationLog`: its ``append`` must stay commit-now.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec

from understudy.errors import CorruptState, PersistenceError
from understudy.refs import Reply

if TYPE_CHECKING:
    from understudy.persistence import Store


class Tokens(msgspec.Struct, frozen=True):
    """A model call's usage in the API's buckets (``input`` excludes cache reads and writes)."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_read + self.cache_write

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(
            self.input + other.input,
            self.output + other.output,
            self.cache_read + other.cache_read,
            self.cache_write + other.cache_write,
        )


class Started(msgspec.Struct, frozen=True, tag=True):
    """The deployment a conversation started on: agent class, model, system prompt and the
    tools' schemas (``{name: input_schema}``)."""

    agent: str
    model: str
    system: str
    tools: dict[str, Any]
    at: float


class UserTurn(msgspec.Struct, frozen=True, tag=True):
    """A prompt: ``content`` blocks appended after the results of open tool calls."""

    prompt: str
    """The prompt's id (``Prompt.id``; generated when the caller gave none)."""
    content: list[Any]
    at: float
    force: str = ""
    """For a nudge within the prompt: how the next call must end ("none": no tools, or the
    output tool's name)."""
    correction: bool = False
    """A corrective nudge for structured output (counts against ``output_retries``)."""


class ModelTurn(msgspec.Struct, frozen=True, tag=True):
    """One model call's committed response."""

    turn: int
    agent: str
    model: str
    content: list[Any]
    stop_reason: str
    usage: Tokens
    seconds: float
    tokens_before: int
    """Estimated input tokens of the history before the ``prepare`` hook."""
    tokens_after: int
    """... and after it (what was sent)."""
    request_id: str = ""
    stop_details: Any = None


class Intent(msgspec.Struct, frozen=True, tag=True):
    """A side-effecting tool call about to run, committed before it runs."""

    turn: int
    tool_use_id: str
    tool: str
    key: str


class ToolDone(msgspec.Struct, frozen=True, tag=True):
    """A tool call's result as the model sees it (``content``), committed after it ran.

    ``agent`` and ``conversation`` are set for a handoff (an agent called as a tool), with
    ``usage`` the callee's tokens; ``how`` says where the result came from: ``ran``,
    ``reconciled`` (a tool's reconcile said it had happened), ``refused`` (never ran:
    unknown tool, bad input, open breaker), ``failed`` (it ran and raised), ``interrupted``
    (never ran: the prompt was abandoned), ``resolved`` (recorded by a human)."""

    turn: int
    tool_use_id: str
    tool: str
    content: str
    is_error: bool
    how: str
    seconds: float = 0.0
    agent: str = ""
    conversation: str = ""
    usage: Tokens = Tokens()


class Finished(msgspec.Struct, frozen=True, tag=True):
    """How a prompt ended: ``outcome`` is ``answer`` or the error's kind, ``text`` the
    final text, ``output`` the structured output's JSON (b"" without one)."""

    prompt: str
    outcome: str
    text: str
    output: bytes = b""
    turns: int = 0
    usage: Tokens = Tokens()
    """The prompt's tokens, its handoffs' included."""


Entry = Started | UserTurn | ModelTurn | Intent | ToolDone | Finished

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Entry)


class ConversationLog:
    """The journal of one conversation in a store (key: the conversation id)."""

    __slots__ = ("broken", "bytes", "deferred", "key", "seq", "store")

    def __init__(self, store: Store, key: str) -> None:
        self.store = store
        self.key = key
        self.seq = 0
        self.bytes = 0
        self.broken: PersistenceError | None = None
        self.deferred: list[Entry] = []

    async def load(self) -> list[Entry]:
        """Every committed entry, in order. Raises :class:`CorruptState` for one that does
        not decode, :class:`PersistenceError` when the store cannot be read."""
        _, rows = await self.store.load_journaled(self.key)
        entries: list[Entry] = []
        for seq, kind, data, _ in rows:
            try:
                entries.append(_DECODER.decode(data))
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise CorruptState(self.key, seq, f"{kind}: {exc}", row="journal entry") from exc
            self.seq = seq
            self.bytes += len(data)
        return entries

    def defer(self, *entries: Entry) -> None:
        """Queue ``entries`` to be committed with the next :meth:`append`, not now: for what
        may be lost in a crash without harm (the results of read-only tools, which a resumed
        conversation runs again). Never blocks."""
        self.deferred.extend(entries)

    async def append(self, *entries: Entry) -> None:
        """Append the deferred entries and ``entries`` and return once they are committed
        (group-committed with other conversations' appends). Raises
        :class:`PersistenceError` if they are not; then nothing after them may be appended
        by this instance."""
        if self.broken is not None:
            raise PersistenceError(f"conversation {self.key!r} cannot persist: {self.broken}")
        if self.deferred:
            entries = (*self.deferred, *entries)
            self.deferred = []
        events = []
        for entry in entries:
            self.seq += 1
            data = _ENCODER.encode(entry)
            self.bytes += len(data)
            events.append((self.seq, type(entry).__name__, data))
        store = self.store
        store.write(self.key, 0, 0, None, self, events)
        waiter = Reply()  # released by the store when the append commits
        if store.wait_for_commit(self.key, waiter, None):
            await waiter.event.wait()
        if waiter.error is not None:
            raise waiter.error
        if self.broken is not None:
            raise self.broken

    def persistence_failed(self, error: PersistenceError, letters: list[Any]) -> None:
        """Called by the store when an append failed (the store's ``Owner``)."""
        if self.broken is None:
            self.broken = error


def now() -> float:
    return time.time()


def decode_entries(rows: list[tuple[int, str, bytes, float]]) -> list[tuple[int, Entry]]:
    """Decode journal rows (for inspection); raises ``msgspec.DecodeError``."""
    return [(seq, _DECODER.decode(data)) for seq, _, data, _ in rows]


__all__ = [
    "ConversationLog",
    "Entry",
    "Finished",
    "Intent",
    "ModelTurn",
    "Started",
    "ToolDone",
    "Tokens",
    "UserTurn",
    "decode_entries",
]

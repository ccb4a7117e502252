"""``understudy inspect DB --conversation NAME``: a conversation turn by turn, with its usage.

Read-only (the store's read-only connection: safe on a live store). Blocking; for the CLI.
"""

from __future__ import annotations

import datetime
from typing import Any

import msgspec

from understudy.agents._log import (
    Entry,
    Finished,
    Intent,
    ModelTurn,
    Started,
    Tokens,
    ToolDone,
    UserTurn,
    decode_entries,
)
from understudy.persistence._inspect import read_journal

_KINDS = frozenset(("Started", "UserTurn", "ModelTurn", "Intent", "ToolDone", "Finished"))


def conversation_entries(path: str, name: str) -> list[tuple[int, float, Entry]]:
    """The committed entries of conversation ``name``: ``(seq, recorded, entry)``.

    Raises ``ValueError`` when ``name``'s journal holds rows that are not a conversation's."""
    rows = read_journal(path, name)
    if any(kind not in _KINDS for _, kind, _, _ in rows):
        raise ValueError(f"{name!r} is not a conversation (its journal has other entries)")
    decoded = decode_entries(rows)
    return [(seq, row[3], entry) for (seq, entry), row in zip(decoded, rows, strict=True)]


def conversation_json(path: str, name: str) -> dict[str, Any]:
    """The conversation as one JSON-ready document."""
    entries = []
    for seq, recorded, entry in conversation_entries(path, name):
        record = msgspec.to_builtins(entry)
        record["seq"] = seq
        record["recorded"] = _utc(recorded)
        entries.append(record)
    return {"conversation": name, "entries": entries, "totals": _totals(path, name)}


def _utc(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat()


def _clip(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _tokens(usage: Tokens) -> str:
    return f"in {usage.input} out {usage.output} cache r/w {usage.cache_read}/{usage.cache_write}"


def _totals(path: str, name: str) -> dict[str, Any]:
    own = Tokens()
    callees = Tokens()
    calls = 0
    for _, _, entry in conversation_entries(path, name):
        if isinstance(entry, ModelTurn):
            own = own + entry.usage
            calls += 1
        elif isinstance(entry, ToolDone) and entry.conversation:
            callees = callees + entry.usage
    return {
        "model_calls": calls,
        "tokens": msgspec.to_builtins(own),
        "handoff_tokens": msgspec.to_builtins(callees),
    }


def conversation_text(path: str, name: str) -> str:
    """The conversation as a readable table, one line per entry, and its totals."""
    entries = conversation_entries(path, name)
    if not entries:
        return f"no conversation {name!r} in {path}\n"
    lines: list[str] = []
    for _, recorded, entry in entries:
        if isinstance(entry, Started):
            tools = ", ".join(entry.tools) or "no tools"
            lines.append(
                f"conversation {name!r}: agent {entry.agent}, model {entry.model or '?'}, "
                f"tools {tools}; started {_utc(entry.at)}"
            )
            lines.append(f"{'TURN':>4}  {'WHO':<22}  WHAT")
        elif isinstance(entry, UserTurn):
            text = " ".join(b.get("text", "") for b in entry.content if isinstance(b, dict))
            who = "user" if not entry.force else "nudge"
            lines.append(f"{'':>4}  {who:<22}  [{entry.prompt}] {_clip(text)}")
        elif isinstance(entry, ModelTurn):
            uses = [f"{b['name']}({b['id']})" for b in entry.content if b.get("type") == "tool_use"]
            text = "".join(b.get("text", "") for b in entry.content if b.get("type") == "text")
            what = f"{entry.stop_reason}: " + (", ".join(uses) if uses else _clip(text, 50))
            lines.append(
                f"{entry.turn:>4}  {entry.agent[:22]:<22}  {what}  [{entry.model}, "
                f"{_tokens(entry.usage)}, {entry.seconds:.3f} s, context "
                f"{entry.tokens_before}->{entry.tokens_after}]"
            )
        elif isinstance(entry, Intent):
            lines.append(f"{entry.turn:>4}  {'intent ' + entry.tool:<22}  key {entry.key}")
        elif isinstance(entry, ToolDone):
            who = f"handoff {entry.agent}" if entry.conversation else f"tool {entry.tool}"
            status = "error" if entry.is_error else "ok"
            extra = (
                f" [conversation {entry.conversation}, {_tokens(entry.usage)}]"
                if entry.conversation
                else ""
            )
            lines.append(
                f"{entry.turn:>4}  {who[:22]:<22}  {entry.how} ({status}, {entry.seconds:.3f} s):"
                f" {_clip(entry.content, 50)}{extra}"
            )
        elif isinstance(entry, Finished):
            lines.append(
                f"{'':>4}  {'finished':<22}  [{entry.prompt}] {entry.outcome} after "
                f"{entry.turns} model calls: {_clip(entry.text, 50)}"
            )
        del recorded
    totals = _totals(path, name)
    own = Tokens(**totals["tokens"])
    callees = Tokens(**totals["handoff_tokens"])
    lines.append(
        f"totals: {totals['model_calls']} model calls, {_tokens(own)}; handoffs {_tokens(callees)}"
    )
    return "\n".join(lines) + "\n"


__all__ = ["conversation_entries", "conversation_json", "conversation_text"]

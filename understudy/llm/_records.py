"""Call records: one per model call, kept in memory and written to the runtime's store."""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import msgspec.structs

if TYPE_CHECKING:
    from understudy.persistence import Store


class CallRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One call to a model (its retries included), as recorded in the ``llm_calls`` table.

    ``agent`` is the calling actor's name ("" outside actors), ``agent_type`` its class,
    ``conversation`` the name of the budget it was charged to, ``correlation_id`` the
    message's. Tokens are by bucket (``input_tokens`` is uncached input). ``usd`` is what
    was settled on the budget, at ``price_version``. ``latency`` and ``ttft`` (time to first
    token, streams only) are seconds. ``outcome`` is ``ok``, ``error``, ``refused`` (budget,
    breaker or limiter said no before sending) or ``timeout`` (the deadline);
    ``error_type`` the API's ``error.type`` or ours. ``attempts`` counts requests sent.
    Untracked by the garbage collector (``gc=False``: only scalars and strings), so the
    records a log keeps do not make every full collection slower.
    """

    time: float
    model: str
    agent: str
    agent_type: str
    conversation: str
    correlation_id: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    usd: float
    price_version: str
    latency: float
    ttft: float | None
    stop_reason: str
    outcome: str
    error_type: str
    attempts: int
    request_id: str


FIELDS = tuple(CallRecord.__struct_fields__)

INSERT = f"INSERT INTO llm_calls ({', '.join(FIELDS)}) VALUES ({', '.join('?' * len(FIELDS))})"
SELECT = f"SELECT {', '.join(FIELDS)} FROM llm_calls ORDER BY id"


class CallLog:
    """The records of one runtime's calls (or of a Model used outside any runtime).

    ``records`` keeps the last ``keep`` in memory; with a store every record is also
    written to its ``llm_calls`` table with the store's next group commit: in the same
    transaction as the budget figures its settlement changed, and no later than any actor
    write queued after it (an agent's turn that follows the call commits its record too).
    """

    def __init__(self, store: Store | None = None, keep: int = 100_000) -> None:
        self.records: deque[CallRecord] = deque(maxlen=keep)
        self.store = store

    def add(self, record: CallRecord) -> None:
        """Keep ``record`` and queue it for the store (synchronously: at the moment its
        charge was settled; never blocks)."""
        self.records.append(record)
        if self.store is not None:
            self.store.queue_rows(INSERT, [msgspec.structs.astuple(record)])

    async def flush(self) -> None:
        """Return when the records added before the call are committed (or the store has
        stopped)."""
        if self.store is not None:
            await self.store.flush()


def read_records(path: str) -> list[CallRecord]:
    """Every call record in the SQLite file at ``path`` (read-only; blocking)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(SELECT).fetchall()
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return []
        raise
    finally:
        conn.close()
    return [CallRecord(**dict(zip(FIELDS, row, strict=True))) for row in rows]


GROUPINGS = ("call", "agent", "model", "conversation", "day")


def summarize(records: Iterable[CallRecord], by: str = "call") -> list[dict[str, Any]]:
    """The cost allocation of ``records``: per call (``by="call"``), or totals per
    ``agent``, ``model``, ``conversation`` or ``day`` (UTC), dearest first.

    Raises ``ValueError`` for another ``by``."""
    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {', '.join(GROUPINGS)}, not {by!r}")
    import datetime

    if by == "call":
        return [
            {
                "time": datetime.datetime.fromtimestamp(r.time, datetime.UTC).isoformat(),
                "model": r.model,
                "agent": r.agent,
                "conversation": r.conversation,
                "correlation_id": r.correlation_id,
                "input_tokens": r.input_tokens,
                "output_tokens": r.output_tokens,
                "cache_read_tokens": r.cache_read_tokens,
                "cache_write_5m_tokens": r.cache_write_5m_tokens,
                "cache_write_1h_tokens": r.cache_write_1h_tokens,
                "usd": r.usd,
                "outcome": r.outcome,
                "attempts": r.attempts,
                "request_id": r.request_id,
            }
            for r in records
        ]
    groups: dict[str, dict[str, Any]] = {}
    for r in records:
        if by == "day":
            key = datetime.datetime.fromtimestamp(r.time, datetime.UTC).date().isoformat()
        else:
            key = getattr(r, by)
        row = groups.get(key)
        if row is None:
            row = groups[key] = {
                by: key,
                "calls": 0,
                "errors": 0,
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_read_tokens": 0,
                "cache_write_5m_tokens": 0,
                "cache_write_1h_tokens": 0,
                "usd": 0.0,
            }
        row["calls"] += 1
        row["errors"] += r.outcome != "ok"
        row["input_tokens"] += r.input_tokens
        row["output_tokens"] += r.output_tokens
        row["cache_read_tokens"] += r.cache_read_tokens
        row["cache_write_5m_tokens"] += r.cache_write_5m_tokens
        row["cache_write_1h_tokens"] += r.cache_write_1h_tokens
        row["usd"] += r.usd
    return sorted(groups.values(), key=lambda row: (-row["usd"], str(row[by])))


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """``rows`` as an aligned text table (dollars with 6 decimals)."""
    if not rows:
        return "no calls recorded"
    columns = list(rows[0])

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.6f}"
        return str(value)

    cells = [[cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    for r in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)

"""The store's operations, written once for both drivers as step generators.

Each operation is a generator that yields the database steps it needs — ``(kind, sql,
params)`` — and is sent each step's result; its return value is the operation's result.
A driver runs the generator: the trio driver runs all of it in one worker-thread hop, the
aiosqlite driver awaits one hop per step. So the transaction logic (compare-and-set, finding
which actor was refused, rolling back) exists once, and the two drivers cannot drift apart.

Step kinds: ``"many"`` (``executemany``; result: rows changed), ``"execute"`` (result: rows
changed), ``"one"`` (result: the first row or None), ``"all"`` (result: every row),
``"commit"``, ``"rollback"`` (result: None). If the generator raises, the driver rolls back
and re-raises.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

from understudy.persistence._schema import (
    INSERT_EVENT,
    INSERT_LOG_ENTRY,
    INSERT_SNAPSHOT,
    LOAD_CHUNK,
    PRUNE_BEFORE,
    PRUNE_JOURNAL,
    SELECT_BUDGET,
    SELECT_JOURNAL,
    SELECT_LAST_SEQ,
    SELECT_LOG,
    SELECT_LOG_TAIL,
    SELECT_LOGS,
    SELECT_VERSION,
    UPDATE_SNAPSHOT,
    UPSERT_BUDGET,
    BudgetRow,
    Event,
    Stale,
    Write,
    select_last_events,
    select_snapshots,
    write_params,
)

Step = tuple[str, str, Any]
Steps = Generator[Step, Any, Any]


def commit_group(
    writes: list[Write],
    updated: float,
    fault: BaseException | None,
    budgets: Sequence[BudgetRow] = (),
    rows: Sequence[tuple[str, list[tuple[Any, ...]]]] = (),
) -> Steps:
    """Write one group in one transaction and commit it; returns the refused writes.

    The fast path is one ``executemany`` per kind of row. If any compare-and-set failed
    (fewer rows changed than written), the transaction is rolled back and redone one actor
    at a time, each in a savepoint, so a refused actor leaves none of its rows while the
    others commit. ``budgets`` (persistent budgets' figures) are written in the same
    transaction, and so are ``rows`` (``Store.queue_rows``: INSERT statement, rows). ``fault``
    (a test hook) is raised after the writes, before ``COMMIT``.
    """
    updates, inserts, events, prunes, appends = write_params(writes, updated)
    written = 0
    if events:
        written += yield ("many", INSERT_EVENT, events)
    if appends:
        written += yield ("many", INSERT_LOG_ENTRY, appends)
    if updates:
        written += yield ("many", UPDATE_SNAPSHOT, updates)
    if inserts:
        written += yield ("many", INSERT_SNAPSHOT, inserts)
    stale: list[Stale] = []
    if written != len(events) + len(updates) + len(inserts) + len(appends):
        yield ("rollback", "", None)
        yield ("execute", "BEGIN IMMEDIATE", ())
        for write in writes:
            refused = yield from _write_one(write, updated)
            if refused is not None:
                stale.append(refused)
    elif prunes:
        yield ("many", PRUNE_BEFORE, prunes)
    if budgets:
        yield ("many", UPSERT_BUDGET, [(*row, updated) for row in budgets])
    for insert, params in rows:
        yield ("many", insert, params)
    if fault is not None:
        raise fault
    yield ("commit", "", None)
    return stale


def _write_one(write: Write, updated: float) -> Generator[Step, Any, Stale | None]:
    actor = write.actor
    yield ("execute", "SAVEPOINT one_actor", ())
    refused: Stale | None = None
    if write.events:
        rows = [(actor, seq, kind, data, updated) for seq, kind, data in write.events]
        if (yield ("many", INSERT_EVENT, rows)) != len(rows):
            last = yield ("one", SELECT_LAST_SEQ, (actor,))
            found = last[0] if last is not None else None
            refused = (actor, write.events[0][0] - 1, found)
    if refused is None and write.appends:
        entries = [(actor, name, seq, data, updated) for name, seq, data in write.appends]
        if (yield ("many", INSERT_LOG_ENTRY, entries)) != len(entries):
            row = yield ("one", SELECT_VERSION, (actor,))
            refused = (actor, write.base, row[0] if row is not None else None)
    if refused is None and write.state is not None:
        if write.base:
            params: tuple[Any, ...] = (write.version, write.state, updated, actor, write.base)
            changed = yield ("execute", UPDATE_SNAPSHOT, params)
        else:
            changed = yield (
                "execute",
                INSERT_SNAPSHOT,
                (actor, write.version, write.state, updated),
            )
        if changed != 1:
            row = yield ("one", SELECT_VERSION, (actor,))
            refused = (actor, write.base, row[0] if row is not None else None)
    if refused is None and write.prune_before:
        yield ("execute", PRUNE_BEFORE, (actor, write.prune_before))
    if refused is not None:
        yield ("execute", "ROLLBACK TO one_actor", ())
    yield ("execute", "RELEASE one_actor", ())
    return refused


Loaded = dict[str, tuple[int, bytes]]
Journals = dict[str, list[tuple[int, str, bytes, float]]]
LogRequest = tuple[str, int | None]
"""A log to read when loading: the field's name, how many of its last entries (None: all)."""
Logs = dict[str, dict[str, list[tuple[int, bytes]]]]


def load(
    actors: Sequence[str],
    journaled: Sequence[str],
    logs: dict[str, Sequence[LogRequest]] | None = None,
) -> Steps:
    """What ``actors`` restart from. Returns ``(snapshots, journals, last_events, logs)``:

    * ``snapshots``: the latest snapshot of each actor that has one, ``{actor: (version,
      state)}``;
    * ``journals``: for each of ``journaled``, its journal after that snapshot, ``{actor:
      [(seq, kind, event, recorded), ...]}``;
    * ``last_events``: for each of the *other* actors that has a journal, its last sequence
      number (a plain actor with events after its snapshot must not restore: it would drop
      them);
    * ``logs``: for each actor in ``logs``, each requested field's entries ``{actor:
      {field: [(seq, entry), ...]}}``.
    """
    found: Loaded = {}
    last_events: dict[str, int] = {}
    journaled_set = set(journaled)
    for start in range(0, len(actors), LOAD_CHUNK):
        chunk = list(actors[start : start + LOAD_CHUNK])
        for actor, version, state in (yield ("all", select_snapshots(len(chunk)), chunk)):
            found[actor] = (version, state)
        plain = [actor for actor in chunk if actor not in journaled_set]
        if plain:
            for actor, last in (yield ("all", select_last_events(len(plain)), plain)):
                last_events[actor] = int(last)
    journals: Journals = {}
    for actor in journaled:
        after = found[actor][0] if actor in found else 0
        journals[actor] = list((yield ("all", SELECT_JOURNAL, (actor, after))))
    entries: Logs = {}
    for actor, fields in (logs or {}).items():
        if actor not in found:
            continue  # no snapshot: the logs are empty (they are written together)
        mine = entries[actor] = {}
        for name, keep in fields:
            if keep is None:
                rows = yield ("all", SELECT_LOG, (actor, name))
            else:
                rows = yield ("all", SELECT_LOG_TAIL, (actor, name, actor, name, keep))
            mine[name] = list(rows)
    return found, journals, last_events, entries


def load_budget(name: str) -> Steps:
    """The stored figures of budget ``name`` (a :data:`BudgetRow`), or None."""
    row = yield ("one", SELECT_BUDGET, (name,))
    return None if row is None else tuple(row)


def read_logs(actor: str) -> Steps:
    """Every entry of ``actor``'s logs: ``[(field, seq, entry, recorded), ...]``."""
    rows: list[tuple[str, int, bytes, float]] = list((yield ("all", SELECT_LOGS, (actor,))))
    return rows


def prune(keep: int) -> Steps:
    """Drop the journal entries each actor's snapshot already includes, but the last
    ``keep`` of them; returns how many were dropped."""
    dropped = yield ("execute", PRUNE_JOURNAL, (keep,))
    yield ("commit", "", None)
    return dropped


def journal(actor: str, after: int) -> Steps:
    """``actor``'s journal entries after ``after``, in order."""
    rows: list[tuple[int, str, bytes, float]] = list(
        (yield ("all", SELECT_JOURNAL, (actor, after)))
    )
    return rows


__all__ = [
    "Event",
    "Journals",
    "LogRequest",
    "Loaded",
    "Logs",
    "Step",
    "Steps",
    "commit_group",
    "journal",
    "load",
    "load_budget",
    "prune",
    "read_logs",
]

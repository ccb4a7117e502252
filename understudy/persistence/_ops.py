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
    INSERT_SNAPSHOT,
    LOAD_CHUNK,
    PRUNE_BEFORE,
    PRUNE_JOURNAL,
    SELECT_JOURNAL,
    SELECT_LAST_SEQ,
    SELECT_VERSION,
    UPDATE_SNAPSHOT,
    Event,
    Stale,
    Write,
    select_snapshots,
    write_params,
)

Step = tuple[str, str, Any]
Steps = Generator[Step, Any, Any]


def commit_group(writes: list[Write], updated: float, fault: BaseException | None) -> Steps:
    """Write one group in one transaction and commit it; returns the refused writes.

    The fast path is one ``executemany`` per kind of row. If any compare-and-set failed
    (fewer rows changed than written), the transaction is rolled back and redone one actor
    at a time, each in a savepoint, so a refused actor leaves none of its rows while the
    others commit. ``fault`` (a test hook) is raised after the writes, before ``COMMIT``.
    """
    updates, inserts, events, prunes = write_params(writes, updated)
    written = 0
    if events:
        written += yield ("many", INSERT_EVENT, events)
    if updates:
        written += yield ("many", UPDATE_SNAPSHOT, updates)
    if inserts:
        written += yield ("many", INSERT_SNAPSHOT, inserts)
    stale: list[Stale] = []
    if written != len(events) + len(updates) + len(inserts):
        yield ("rollback", "", None)
        yield ("execute", "BEGIN IMMEDIATE", ())
        for write in writes:
            refused = yield from _write_one(write, updated)
            if refused is not None:
                stale.append(refused)
    elif prunes:
        yield ("many", PRUNE_BEFORE, prunes)
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


def load(actors: Sequence[str], journaled: Sequence[str]) -> Steps:
    """The latest snapshot of each of ``actors`` that has one, as ``{actor: (version,
    state)}``, and for each of ``journaled`` its journal after that snapshot, as ``{actor:
    [(seq, kind, event, recorded), ...]}``. Returns ``(snapshots, journals)``."""
    found: Loaded = {}
    for start in range(0, len(actors), LOAD_CHUNK):
        chunk = list(actors[start : start + LOAD_CHUNK])
        for actor, version, state in (yield ("all", select_snapshots(len(chunk)), chunk)):
            found[actor] = (version, state)
    journals: Journals = {}
    for actor in journaled:
        after = found[actor][0] if actor in found else 0
        journals[actor] = list((yield ("all", SELECT_JOURNAL, (actor, after))))
    return found, journals


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
    "Loaded",
    "Step",
    "Steps",
    "commit_group",
    "journal",
    "load",
    "prune",
]

"""Cost allocation from the call records: per call, or totals per agent, model,
conversation or day (the code side of ``understudy costs``)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import anyio

from understudy.llm._model import hub_of
from understudy.llm._records import CallLog, read_records, summarize

if TYPE_CHECKING:
    from understudy.runtime import Runtime


def call_log(runtime: Runtime) -> CallLog:
    """``runtime``'s call log (``.records``: the recent :class:`CallRecord` s in memory)."""
    return hub_of(runtime).log


async def costs(source: Runtime | str | os.PathLike[str], by: str = "call") -> list[dict[str, Any]]:
    """The cost allocation of a runtime's calls (from its store when it has one, else from
    memory) or of a store file's ``llm_calls``: rows of dicts, see :func:`summarize`.
    Raises ``ValueError`` for a bad ``by``, ``FileNotFoundError`` for a missing file."""
    from understudy.llm._records import GROUPINGS

    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {', '.join(GROUPINGS)}, not {by!r}")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not await anyio.to_thread.run_sync(os.path.isfile, path):
            raise FileNotFoundError(f"no database file at {path!r}")
        records = await anyio.to_thread.run_sync(read_records, path)
        return summarize(records, by)
    log = call_log(source)
    if log.store is not None and log.store.is_open:
        await log.flush()
        records = await anyio.to_thread.run_sync(read_records, log.store.path)
        return summarize(records, by)
    return summarize(log.records, by)

"""Opening a store: every option checked, errors that name the file, and no
``database is locked`` when several runtimes create the same new file at once."""

from __future__ import annotations

import math
import sqlite3
import threading
from pathlib import Path

import pytest

import understudy as us

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"busy_timeout": math.inf}, ValueError, "busy_timeout"),
        ({"busy_timeout": math.nan}, ValueError, "busy_timeout"),
        ({"busy_timeout": -1}, ValueError, "busy_timeout"),
        ({"busy_timeout": 10**9}, ValueError, "busy_timeout"),
        ({"busy_timeout": "5"}, TypeError, "busy_timeout"),
        ({"busy_timeout": True}, TypeError, "busy_timeout"),
        ({"retry_backoff": math.inf}, ValueError, "retry_backoff"),
        ({"retry_backoff": math.nan}, ValueError, "retry_backoff"),
        ({"retry_backoff": -0.1}, ValueError, "retry_backoff"),
        ({"retry_backoff": None}, TypeError, "retry_backoff"),
        ({"retries": -1}, ValueError, "retries"),
        ({"retries": 2.0}, ValueError, "retries"),
        ({"retries": 10**6}, ValueError, "retries"),
        ({"synchronous": ["full"]}, ValueError, "synchronous"),
    ],
)
def test_every_store_option_is_checked(
    options: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        us.Store("x.db", **options)  # type: ignore[arg-type]


def test_a_store_path_must_be_a_path() -> None:
    with pytest.raises(TypeError, match="path"):
        us.Store(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NUL"):
        us.Store("a\x00b.db")


async def test_an_open_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "app.db"
    with pytest.raises(us.PersistenceError, match=r"missing/app\.db") as caught:
        async with us.Runtime(store=path):
            pass
    assert isinstance(caught.value.__cause__, sqlite3.Error)


async def test_a_runtime_opens_a_new_store_another_process_is_creating(tmp_path: Path) -> None:
    """Another connection holds the write lock of the brand-new file while this runtime
    opens it (what two runtimes creating one store at once do to each other): switching to
    WAL is then refused at once without SQLite's busy wait, and the open must ride it out."""
    path = tmp_path / "app.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE unrelated (x)")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    try:
        async with us.Runtime(store=us.Store(path, busy_timeout=5.0)) as rt:
            assert rt.store is not None and rt.store.schema_found == 0
    finally:
        release.join()
        other.close()


async def test_queued_rows_are_checked_before_they_can_fail_a_group(tmp_path: Path) -> None:
    """``Store.queue_rows`` refuses what would fail in the group commit (and so fail every
    actor's write in it): a statement that is not an INSERT, a row of the wrong width, a
    value SQLite cannot store. A good row is committed by the next group."""
    from understudy.llm._records import INSERT, read_records

    width = INSERT.count("?")
    async with us.Runtime(store=tmp_path / "s.db") as rt:
        store = rt.store
        assert store is not None
        with pytest.raises(ValueError, match="must be an INSERT statement"):
            store.queue_rows("DELETE FROM llm_calls", [])
        with pytest.raises(ValueError, match=rf"rows\[0\] must be a tuple of {width} values"):
            store.queue_rows(INSERT, [(1.0, "m")])
        row = [0.0] + [""] * 5 + [0] * 5 + [0.0, "v", 0.0, None, "", "ok", "", 1, "req"]
        with pytest.raises(TypeError, match=r"rows\[1\] holds a list"):
            store.queue_rows(INSERT, [tuple(row), tuple([*row[:-1], ["req"]])])
        assert store.queue_rows(INSERT, [tuple(row)])
        await store.flush()
        assert store.stats.failed_groups == 0
    assert [r.request_id for r in read_records(str(tmp_path / "s.db"))] == ["req"]

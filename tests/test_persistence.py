"""Persistent actors: state that survives restarts and crashes, committed in groups.

Every test here runs on asyncio (aiosqlite driver) and on trio (sqlite3 on a worker thread).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

import understudy as us
from understudy.actors import Cell, start_instance
from understudy.messages import ExitReason
from understudy.persistence import SCHEMA_VERSION, Snapshots

pytestmark = pytest.mark.anyio


# -- the actors under test ---------------------------------------------------------------------


class Deposit(us.Request[int], frozen=True):
    """Add ``amount``; the reply is the new balance."""

    amount: int


class Add(us.Message, frozen=True):
    amount: int


class Balance(us.Request[int], frozen=True):
    pass


class DepositThenFail(us.Request[int], frozen=True):
    """Mutates the state, then raises: nothing of it may be committed."""

    amount: int


class Account(us.Actor):
    persistent = True

    class State(msgspec.Struct):
        balance: int = 0

    async def deposit(self, msg: Deposit) -> int:
        self.state.balance += msg.amount
        return int(self.state.balance)

    async def add(self, msg: Add) -> None:
        self.state.balance += msg.amount

    async def get(self, msg: Balance) -> int:
        return int(self.state.balance)

    async def deposit_then_fail(self, msg: DepositThenFail) -> int:
        self.state.balance += msg.amount
        raise RuntimeError("crashed after mutating")


class AsyncAccount(Account):
    durability = "async"


class Plain(us.Actor):
    class State(msgspec.Struct):
        n: int = 0

    async def get(self, msg: Balance) -> int:
        return int(self.state.n)


class Stateless(us.Actor):
    async def get(self, msg: Balance) -> int:
        return 0


def committed_balance(path: Path, actor: str) -> tuple[int, int] | None:
    """(version, balance) of ``actor`` as committed on disk, read outside the runtime."""
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT version, state FROM snapshots WHERE actor = ?", (actor,)
        ).fetchone()
    finally:
        conn.close()
    if row is None:
        return None
    return int(row[0]), msgspec.msgpack.decode(row[1], type=Account.State).balance


class Restarter:
    """A minimal stand-in for a supervisor: restarts a failed instance through ``Cell.run``
    (as supervision does), so a restart's restore can be tested on its own."""

    def __init__(self) -> None:
        self.restarted = anyio.Event()

    def child_exited(self, cell: Cell, reason: ExitReason, error: BaseException | None) -> bool:
        if reason != "failed":
            return False
        cell.system.task_group.start_soon(self._restart, cell, error)
        return True

    async def _restart(self, cell: Cell, error: BaseException | None) -> None:
        start_error = await start_instance(cell, cell.new_instance(), error)
        assert start_error is None, start_error
        self.restarted.set()


def supervise(ref: us.Ref) -> Restarter:
    restarter = Restarter()
    ref._cell.supervisor = restarter
    return restarter


# -- restore -------------------------------------------------------------------------------------


async def test_state_survives_a_runtime_restart(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        alice = await rt.spawn(Account, name="alice")
        assert await alice.ask(Deposit(10)) == 10
        assert await alice.ask(Deposit(5)) == 15
    async with us.Runtime(store=db) as rt:
        alice = await rt.spawn(Account, name="alice")
        assert await alice.ask(Balance()) == 15
        assert await alice.ask(Deposit(1)) == 16
    assert committed_balance(db, "alice") == (3, 16)


async def test_a_new_actor_starts_from_a_fresh_state(tmp_path: Path) -> None:
    async with us.Runtime(store=tmp_path / "app.db") as rt:
        bob = await rt.spawn(Account, name="bob")
        assert await bob.ask(Balance()) == 0
    assert committed_balance(tmp_path / "app.db", "bob") is None  # nothing changed, no row


async def test_persistent_can_be_given_on_spawn(tmp_path: Path) -> None:
    async with us.Runtime(store=tmp_path / "app.db") as rt:
        ref = await rt.spawn(Plain, name="p", persistent=True)
        assert await ref.ask(Balance()) == 0
        assert ref._cell.persistence is not None
        off = await rt.spawn(Account, name="off", persistent=False)
        assert off._cell.persistence is None


async def test_tells_are_persisted_and_a_later_ask_waits_for_them(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        alice = await rt.spawn(Account, name="alice")
        for _ in range(100):
            await alice.tell(Add(1))
        assert await alice.ask(Balance()) == 100
        # The reply to a read is released only once what it read is committed.
        assert committed_balance(db, "alice") == (100, 100)


# -- crashes ---------------------------------------------------------------------------------


async def test_a_crash_after_mutating_leaves_the_committed_state_unchanged(
    tmp_path: Path,
) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        alice = await rt.spawn(Account, name="alice")
        assert await alice.ask(Deposit(10)) == 10
        with pytest.raises(RuntimeError, match="crashed after mutating"):
            await alice.ask(DepositThenFail(1000))
        assert committed_balance(db, "alice") == (1, 10)
        # Unsupervised, the failure stopped it; the snapshot waits for the next spawn.
        assert "alice" not in rt
        alice = await rt.spawn(Account, name="alice")
        assert await alice.ask(Balance()) == 10


async def test_a_restart_restores_the_last_committed_snapshot(tmp_path: Path) -> None:
    async with us.Runtime(store=tmp_path / "app.db") as rt:
        alice = await rt.spawn(Account, name="alice")
        restarter = supervise(alice)
        await alice.tell(Add(5))  # queued for commit, maybe not committed yet
        with pytest.raises(RuntimeError):
            await alice.ask(DepositThenFail(1000))
        await restarter.restarted.wait()
        assert await alice.ask(Balance()) == 5  # the same ref, a new instance


async def test_restart_after_many_pipelined_messages_keeps_all_of_them(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        alice = await rt.spawn(Account, name="alice")
        restarter = supervise(alice)
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(alice.ask, Deposit(1))
        await alice.tell(Add(1))
        with pytest.raises(RuntimeError):
            await alice.ask(DepositThenFail(1000))
        await restarter.restarted.wait()
        assert await alice.ask(Deposit(1)) == 52
    assert committed_balance(db, "alice") == (52, 52)


# -- durability ------------------------------------------------------------------------------


async def test_every_reply_is_released_after_its_commit(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    reader = sqlite3.connect(db)  # WAL reader: sees committed data only

    def on_disk(actor: str) -> int:
        row = reader.execute("SELECT state FROM snapshots WHERE actor = ?", (actor,)).fetchone()
        return msgspec.msgpack.decode(row[0], type=Account.State).balance if row else 0

    seen: list[tuple[str, int, int]] = []
    async with us.Runtime(store=db) as rt:
        refs = [await rt.spawn(Account, name=f"a{i}") for i in range(10)]

        async def caller(i: int) -> None:
            ref = refs[i % 10]
            for _ in range(10):
                balance = await ref.ask(Deposit(1))
                seen.append((ref.name, balance, on_disk(ref.name)))

        async with anyio.create_task_group() as tg:
            for i in range(30):
                tg.start_soon(caller, i)
    reader.close()
    assert len(seen) == 300
    assert all(disk >= balance for _, balance, disk in seen)


async def test_async_durability_replies_at_once_and_commits_soon_after(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        alice = await rt.spawn(AsyncAccount, name="alice")
        for _ in range(20):
            await alice.ask(Deposit(1))
        await rt.store.flush()  # type: ignore[union-attr]
        assert committed_balance(db, "alice") is not None
        assert await alice.ask(Deposit(1)) == 21
    assert committed_balance(db, "alice") == (21, 21)  # closing commits what was queued


async def test_an_actor_that_waits_for_each_commit_behaves_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Snapshots, "pipeline", False)
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        alice = await rt.spawn(Account, name="alice")
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(alice.ask, Deposit(1))
        assert await alice.ask(Balance()) == 20
    assert committed_balance(db, "alice") == (20, 20)


# -- group commit ------------------------------------------------------------------------------


async def test_concurrent_askers_share_transactions(tmp_path: Path) -> None:
    async with us.Runtime(store=tmp_path / "app.db") as rt:
        refs = [await rt.spawn(Account, name=f"a{i}") for i in range(100)]
        store = rt.store
        assert store is not None

        async def caller(ref: us.Ref) -> None:
            for _ in range(10):
                await ref.ask(Deposit(1))

        async with anyio.create_task_group() as tg:
            for ref in refs:
                tg.start_soon(caller, ref)
        messages = 100 * 10
        assert store.stats.snapshots <= messages
        assert store.stats.commits * 10 <= messages, store.stats
        assert store.stats.max_group > 10
        for ref in refs:
            assert await ref.ask(Balance()) == 10


async def test_snapshots_of_one_actor_collapse_within_a_group(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        alice = await rt.spawn(Account, name="alice")
        store = rt.store
        assert store is not None
        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(alice.ask, Deposit(1))
        assert store.stats.collapsed > 0
        assert store.stats.snapshots + store.stats.collapsed == 200
    assert committed_balance(db, "alice") == (200, 200)


async def test_a_failed_commit_fails_all_its_waiters_and_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        refs = [await rt.spawn(Account, name=f"a{i}") for i in range(20)]
        for ref in refs:
            assert await ref.ask(Deposit(100)) == 100
        store = rt.store
        assert store is not None
        store.fail_next_commits(1)
        outcomes: dict[str, int | BaseException] = {}

        async def caller(ref: us.Ref) -> None:
            try:
                outcomes[ref.name] = await ref.ask(Deposit(1))
            except us.UnderstudyError as exc:
                outcomes[ref.name] = exc

        async with anyio.create_task_group() as tg:
            for ref in refs:
                tg.start_soon(caller, ref)
        assert store.stats.failed_groups == 1
    failed = {n for n, o in outcomes.items() if isinstance(o, BaseException)}
    assert failed
    for name, outcome in outcomes.items():
        if isinstance(outcome, BaseException):
            assert isinstance(outcome, us.PersistenceError)
            assert "not committed" in str(outcome)
            assert committed_balance(db, name) == (1, 100)  # rolled back: not acknowledged
        else:
            assert outcome == 101
            assert committed_balance(db, name) == (2, 101)  # acknowledged: on disk


async def test_a_write_failure_fails_the_actor_and_a_restart_resumes_from_disk(
    tmp_path: Path,
) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        alice = await rt.spawn(Account, name="alice")
        restarter = supervise(alice)
        assert await alice.ask(Deposit(10)) == 10
        assert rt.store is not None
        rt.store.fail_next_commits(1)
        with pytest.raises(us.PersistenceError):
            await alice.ask(Deposit(5))
        await restarter.restarted.wait()
        assert await alice.ask(Balance()) == 10
        assert await alice.ask(Deposit(1)) == 11
    assert committed_balance(db, "alice") == (2, 11)


async def test_a_busy_database_is_retried_before_giving_up(tmp_path: Path) -> None:
    async with us.Runtime(store=us.Store(tmp_path / "app.db", retry_backoff=0.001)) as rt:
        alice = await rt.spawn(Account, name="alice")
        assert rt.store is not None
        rt.store.fail_next_commits(2, transient=True)
        assert await alice.ask(Deposit(1)) == 1
        assert rt.store.stats.retries == 2
        rt.store.fail_next_commits(4, transient=True)  # retries=3: the fourth attempt fails
        with pytest.raises(us.PersistenceError, match="database is locked"):
            await alice.ask(Deposit(1))
        assert rt.store.stats.retries == 5


async def test_a_lock_held_by_another_connection_is_waited_out(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    store = us.Store(db, busy_timeout=0.01, retries=50, retry_backoff=0.01)
    async with us.Runtime(store=store) as rt:
        alice = await rt.spawn(Account, name="alice")
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # holds the write lock
        result: list[int] = []

        async def ask() -> None:
            result.append(await alice.ask(Deposit(1)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            while store.stats.retries == 0:
                await anyio.sleep(0.01)
            other.execute("ROLLBACK")
        other.close()
        assert result == [1]


async def test_a_lock_never_released_fails_the_ask_with_persistence_error(
    tmp_path: Path,
) -> None:
    db = tmp_path / "app.db"
    store = us.Store(db, busy_timeout=0.01, retries=2, retry_backoff=0.001)
    async with us.Runtime(store=store) as rt:
        alice = await rt.spawn(Account, name="alice")
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(us.PersistenceError, match="locked"):
                await alice.ask(Deposit(1))
        finally:
            other.execute("ROLLBACK")
            other.close()
    assert committed_balance(db, "alice") is None


# -- two runtimes on one file ------------------------------------------------------------


async def test_two_runtimes_on_one_file_conflict_with_stale_state(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as first, us.Runtime(store=db) as second:
        a = await first.spawn(Account, name="alice")
        assert await a.ask(Deposit(10)) == 10
        b = await second.spawn(Account, name="alice")  # loads version 1
        assert await b.ask(Deposit(1)) == 11  # writes version 2
        with pytest.raises(us.StaleState) as caught:
            await a.ask(Deposit(100))  # built on version 1: refused
        assert caught.value.actor == "alice"
        assert caught.value.expected == 1
        assert caught.value.found == 2
        await a._cell.wait_terminated()  # the actor failed, at its next message boundary
        assert a._cell.exit_reason == "failed"
        assert isinstance(a._cell.exit_error, us.StaleState)
        assert first.store is not None
        assert first.store.stats.stale == 1
    assert committed_balance(db, "alice") == (2, 11)  # nothing overwritten


async def test_two_runtimes_creating_the_same_actor_conflict(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as first, us.Runtime(store=db) as second:
        a = await first.spawn(Account, name="alice")  # both see no row
        b = await second.spawn(Account, name="alice")
        assert await b.ask(Deposit(1)) == 1
        with pytest.raises(us.StaleState) as caught:
            await a.ask(Deposit(7))
        assert (caught.value.expected, caught.value.found) == (0, 1)
    assert committed_balance(db, "alice") == (1, 1)


async def test_a_stale_write_does_not_hold_back_the_rest_of_its_group(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as first, us.Runtime(store=db) as second:
        refs = [await first.spawn(Account, name=f"a{i}") for i in range(10)]
        b = await second.spawn(Account, name="a0")
        assert await b.ask(Deposit(1)) == 1
        results: dict[str, Any] = {}

        async def caller(ref: us.Ref) -> None:
            try:
                results[ref.name] = await ref.ask(Deposit(5))
            except us.StaleState as exc:
                results[ref.name] = exc

        async with anyio.create_task_group() as tg:
            for ref in refs:
                tg.start_soon(caller, ref)
        assert isinstance(results.pop("a0"), us.StaleState)
        assert all(v == 5 for v in results.values())
    for i in range(1, 10):
        assert committed_balance(db, f"a{i}") == (1, 5)


# -- schema and rows -------------------------------------------------------------------------


async def test_an_older_schema_is_migrated_forward(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE unrelated (x)")  # an existing file at user_version 0
    conn.commit()
    conn.close()
    async with us.Runtime(store=db) as rt:
        assert rt.store is not None
        assert rt.store.schema_found == 0
        alice = await rt.spawn(Account, name="alice")
        assert await alice.ask(Deposit(3)) == 3
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_a_version_1_store_gains_the_journal_and_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    conn = sqlite3.connect(db)
    conn.execute(  # the layout understudy wrote at schema version 1
        "CREATE TABLE snapshots (actor TEXT PRIMARY KEY, version INTEGER NOT NULL, "
        "state BLOB NOT NULL, updated REAL NOT NULL)"
    )
    conn.execute(
        "INSERT INTO snapshots VALUES ('alice', 4, ?, 0)",
        (msgspec.msgpack.encode(Account.State(balance=40)),),
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    async with us.Runtime(store=db) as rt:
        assert rt.store is not None
        assert rt.store.schema_found == 1
        alice = await rt.spawn(Account, name="alice")
        assert await alice.ask(Deposit(2)) == 42
        assert await rt.store.journal("alice") == []
    assert committed_balance(db, "alice") == (5, 42)
    conn = sqlite3.connect(db)
    # llm area: later migrations (llm_calls) follow version 2
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 2
    conn.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(us.PersistenceError, match="newer than this understudy"):
        async with us.Runtime(store=db):
            pass


async def test_a_corrupted_row_fails_only_that_actor(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        await (await rt.spawn(Account, name="alice")).ask(Deposit(1))
        await (await rt.spawn(Account, name="bob")).ask(Deposit(2))
    conn = sqlite3.connect(db)
    conn.execute("UPDATE snapshots SET state = ? WHERE actor = 'bob'", (b"\xc1garbage",))
    conn.commit()
    conn.close()
    async with us.Runtime(store=db) as rt:
        with pytest.raises(us.CorruptState) as caught:
            await rt.spawn(Account, name="bob")
        assert caught.value.actor == "bob"
        assert caught.value.version == 1
        assert "'bob'" in str(caught.value)
        assert "version 1" in str(caught.value)
        assert "bob" not in rt
        alice = await rt.spawn(Account, name="alice")
        assert await alice.ask(Balance()) == 1


async def test_an_incompatible_state_names_the_field(tmp_path: Path) -> None:
    class Old(msgspec.Struct):
        balance: str

    db = tmp_path / "app.db"
    async with us.Store(db) as store:
        store.write("carol", 0, 7, msgspec.msgpack.encode(Old("lots")), _NoOwner())
        await store.flush()
    async with us.Runtime(store=db) as rt:
        with pytest.raises(us.CorruptState, match=r"\$\.balance") as caught:
            await rt.spawn(Account, name="carol")
        assert caught.value.version == 7


class _NoOwner:
    def persistence_failed(self, error: us.PersistenceError) -> None:
        raise AssertionError(error)


class WalletV1(us.Actor):
    persistent = True

    class State(msgspec.Struct):
        balance: int = 0

    async def deposit(self, msg: Deposit) -> int:
        self.state.balance += msg.amount
        return int(self.state.balance)


class WalletV2(us.Actor):
    persistent = True

    class State(msgspec.Struct):
        balance: int = 0
        currency: str = "EUR"
        history: list[int] = msgspec.field(default_factory=list)

    async def deposit(self, msg: Deposit) -> int:
        self.state.balance += msg.amount
        self.state.history.append(msg.amount)
        return int(self.state.balance)

    async def get(self, msg: Balance) -> int:
        assert self.state.currency == "EUR"
        return int(self.state.balance)


async def test_a_state_that_gained_fields_with_defaults_loads_old_rows(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        assert await (await rt.spawn(WalletV1, name="w")).ask(Deposit(4)) == 4
    async with us.Runtime(store=db) as rt:
        w = await rt.spawn(WalletV2, name="w")
        assert await w.ask(Balance()) == 4
        assert await w.ask(Deposit(1)) == 5


# -- the store on its own ------------------------------------------------------------------


async def test_the_store_refuses_a_write_built_on_an_old_version(tmp_path: Path) -> None:
    failures: list[us.PersistenceError] = []

    class Owner:
        def persistence_failed(self, error: us.PersistenceError) -> None:
            failures.append(error)

    async with us.Store(tmp_path / "s.db") as store:
        store.write("x", 0, 1, b"\x01", Owner())
        await store.flush()
        store.write("x", 0, 1, b"\x02", Owner())  # built on 0 again
        await store.flush()
        assert await store.load("x") == (1, b"\x01")
        store.write("x", 1, 2, b"\x03", Owner())
        await store.flush()
        assert await store.load("x") == (2, b"\x03")
        assert await store.load("nobody") is None
    assert len(failures) == 1
    assert isinstance(failures[0], us.StaleState)
    assert store.stats.commits == 3
    assert store.stats.snapshots == 2
    assert store.stats.stale == 1


async def test_store_options_are_checked() -> None:
    with pytest.raises(ValueError, match="synchronous"):
        us.Store("x.db", synchronous="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="database file"):
        us.Store(":memory:")
    with pytest.raises(ValueError, match="busy_timeout"):
        us.Store("x.db", busy_timeout=0)


async def test_the_store_uses_the_driver_of_its_event_loop(
    tmp_path: Path, anyio_backend: str
) -> None:
    async with us.Store(tmp_path / "s.db", synchronous="full") as store:
        expected = "aiosqlite" if anyio_backend == "asyncio" else "sqlite3-thread"
        assert store.driver == expected


# -- bad options -----------------------------------------------------------------------------


async def test_an_unnamed_actor_cannot_be_persistent(tmp_path: Path) -> None:
    async with us.Runtime(store=tmp_path / "app.db") as rt:
        with pytest.raises(ValueError, match="no name"):
            await rt.spawn(Account)


async def test_an_actor_without_state_cannot_be_persistent(tmp_path: Path) -> None:
    async with us.Runtime(store=tmp_path / "app.db") as rt:
        with pytest.raises(TypeError, match="declares no State"):
            await rt.spawn(Stateless, name="s", persistent=True)
        assert "s" not in rt


async def test_a_persistent_actor_needs_a_store() -> None:
    async with us.Runtime() as rt:
        with pytest.raises(ValueError, match=r"Runtime\(store="):
            await rt.spawn(Account, name="alice")


async def test_durability_is_checked(tmp_path: Path) -> None:
    async with us.Runtime(store=tmp_path / "app.db") as rt:
        with pytest.raises(ValueError, match="durability"):
            await rt.spawn(Account, name="a", durability="never")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="persistent actors only"):
            await rt.spawn(Plain, name="p", durability="async")


async def test_a_child_can_be_persistent(tmp_path: Path) -> None:
    class Parent(us.Actor):
        async def on_start(self) -> None:
            self.child = await self.ctx.spawn(Account, name="kid")

        async def get(self, msg: Balance) -> int:
            return await self.child.ask(Deposit(2))

    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        parent = await rt.spawn(Parent)
        assert await parent.ask(Balance()) == 2
    async with us.Runtime(store=db) as rt:
        parent = await rt.spawn(Parent)
        assert await parent.ask(Balance()) == 4

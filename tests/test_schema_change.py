"""A stored state that does not fit the current ``State`` is refused or migrated, never
silently trimmed; an event-sourced actor re-declared as a plain one never drops events."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pytest

import understudy as us

pytestmark = pytest.mark.anyio


class Get(us.Request[Any], frozen=True):
    pass


class Touch(us.Request[int], frozen=True):
    pass


class V1(us.Actor):
    persistent = True

    class State(msgspec.Struct):
        balance: int = 0
        owner: str = ""

    async def touch(self, msg: Touch) -> int:
        self.state.balance += 10
        self.state.owner = "ada"
        return int(self.state.balance)


class Renamed(us.Actor):
    persistent = True

    class State(msgspec.Struct):
        balance: int = 0
        holder: str = ""  # was `owner`

    async def get(self, msg: Get) -> Any:
        return (self.state.balance, self.state.holder)


class Retyped(us.Actor):
    persistent = True

    class State(msgspec.Struct):
        balance: str = ""  # was an int
        owner: str = ""

    async def get(self, msg: Get) -> Any:
        return self.state.balance


class Added(us.Actor):
    persistent = True

    class State(msgspec.Struct):
        balance: int = 0
        owner: str = ""
        currency: str = "EUR"

    async def get(self, msg: Get) -> Any:
        return (self.state.balance, self.state.owner, self.state.currency)


class Migrated(us.Actor):
    persistent = True
    State = Renamed.State
    calls = 0

    @staticmethod
    def migrate_state(stored: dict[str, Any]) -> dict[str, Any]:
        Migrated.calls += 1
        stored["holder"] = stored.pop("owner")
        return stored

    async def get(self, msg: Get) -> Any:
        return (self.state.balance, self.state.holder)


class BadMigration(us.Actor):
    persistent = True
    State = Renamed.State

    @staticmethod
    def migrate_state(stored: dict[str, Any]) -> Any:
        return 42

    async def get(self, msg: Get) -> Any:
        return None


def stored_row(db: Path, actor: str) -> tuple[int, dict[str, Any]]:
    conn = sqlite3.connect(db)
    try:
        version, state = conn.execute(
            "SELECT version, state FROM snapshots WHERE actor = ?", (actor,)
        ).fetchone()
    finally:
        conn.close()
    return int(version), msgspec.msgpack.decode(state)


async def write_v1(db: Path) -> None:
    async with us.Runtime(store=db) as rt:
        assert await (await rt.spawn(V1, name="acct")).ask(Touch()) == 10


async def test_a_renamed_field_is_refused_naming_actor_field_and_stored_schema(
    tmp_path: Path,
) -> None:
    db = tmp_path / "app.db"
    await write_v1(db)
    async with us.Runtime(store=db) as rt:
        with pytest.raises(us.StateSchemaChanged) as caught:
            await rt.spawn(Renamed, name="acct")
    error = caught.value
    assert error.actor == "acct" and error.field == "owner"
    assert error.stored == "{balance: int, owner: str}"
    assert "'acct'" in str(error) and "'owner'" in str(error) and "migrate_state" in str(error)
    assert isinstance(error, us.CorruptState)
    assert stored_row(db, "acct") == (1, {"balance": 10, "owner": "ada"})  # untouched


async def test_a_changed_type_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    await write_v1(db)
    async with us.Runtime(store=db) as rt:
        with pytest.raises(us.StateSchemaChanged, match="'balance'") as caught:
            await rt.spawn(Retyped, name="acct")
    assert caught.value.field == "balance"
    assert stored_row(db, "acct") == (1, {"balance": 10, "owner": "ada"})


async def test_an_added_field_with_a_default_needs_no_migration(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    await write_v1(db)
    async with us.Runtime(store=db) as rt:
        assert await (await rt.spawn(Added, name="acct")).ask(Get()) == (10, "ada", "EUR")


async def test_a_declared_migration_is_applied_once_and_committed(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    await write_v1(db)
    Migrated.calls = 0
    async with us.Runtime(store=db) as rt:
        assert await (await rt.spawn(Migrated, name="acct")).ask(Get()) == (10, "ada")
    assert stored_row(db, "acct") == (2, {"balance": 10, "holder": "ada"})
    async with us.Runtime(store=db) as rt:  # a restart: already migrated
        assert await (await rt.spawn(Renamed, name="acct")).ask(Get()) == (10, "ada")
        assert await (await rt.spawn(Migrated, name="other")).ask(Get()) == (0, "")
    assert Migrated.calls == 1


async def test_a_failed_migration_commit_keeps_the_old_row(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    await write_v1(db)
    async with us.Runtime(store=db) as rt:
        assert rt.store is not None
        rt.store.fail_next_commits(1)
        with pytest.raises(us.PersistenceError, match="not committed"):
            await rt.spawn(Migrated, name="acct")
    assert stored_row(db, "acct") == (1, {"balance": 10, "owner": "ada"})


async def test_a_migration_that_returns_garbage_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    await write_v1(db)
    async with us.Runtime(store=db) as rt:
        with pytest.raises(us.CorruptState, match="migrate_state failed"):
            await rt.spawn(BadMigration, name="acct")
    assert stored_row(db, "acct")[0] == 1


# -- switching kinds ----------------------------------------------------------------------------


class Deposited(msgspec.Struct):
    amount: int


class Deposit(us.Request[int], frozen=True):
    amount: int


class Ledger(us.EventSourced):
    events = (Deposited,)
    snapshot_every = 10

    class State(msgspec.Struct):
        balance: int = 0

    def apply(self, event: Deposited) -> None:
        self.state.balance += event.amount

    async def deposit(self, msg: Deposit) -> int:
        await self.ctx.persist(Deposited(msg.amount))
        return int(self.state.balance)

    async def get(self, msg: Get) -> Any:
        return self.state.balance


class PlainLedger(us.Actor):
    persistent = True
    State = Ledger.State

    async def get(self, msg: Get) -> Any:
        return self.state.balance


async def test_an_event_sourced_actor_redeclared_plain_is_refused_not_truncated(
    tmp_path: Path,
) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        ledger = await rt.spawn(Ledger, name="ledger")
        for _ in range(15):  # a snapshot at 10, five events after it
            await ledger.ask(Deposit(1))
    async with us.Runtime(store=db) as rt:
        with pytest.raises(us.KindChanged, match=r"events 11\.\.\.15") as caught:
            await rt.spawn(PlainLedger, name="ledger")
    assert caught.value.actor == "ledger" and caught.value.last_event == 15
    async with us.Runtime(store=db) as rt:  # nothing was dropped: event-sourced again, all 15
        assert await (await rt.spawn(Ledger, name="ledger")).ask(Get()) == 15


async def test_a_plain_actor_may_take_over_a_snapshot_that_holds_every_event(
    tmp_path: Path,
) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        ledger = await rt.spawn(Ledger, name="ledger")
        for _ in range(10):  # the snapshot at 10 includes them all
            await ledger.ask(Deposit(1))
    async with us.Runtime(store=db) as rt:
        assert await (await rt.spawn(PlainLedger, name="ledger")).ask(Get()) == 10


# -- migrations and logs ------------------------------------------------------------------------


class Say(us.Request[int], frozen=True):
    text: str


class ChatV1(us.Actor):
    persistent = True

    class State(msgspec.Struct):
        subject: str = ""
        turns: us.Log[str] = us.Log.field()

    async def say(self, msg: Say) -> int:
        self.state.subject = "parcel"
        self.state.turns.append(msg.text)
        return len(self.state.turns)


class ChatV2(us.Actor):
    persistent = True

    class State(msgspec.Struct):
        title: str = ""  # was `subject`
        turns: us.Log[str] = us.Log.field()

    @staticmethod
    def migrate_state(stored: dict[str, Any]) -> ChatV2.State:
        return ChatV2.State(title=stored["subject"])  # a fresh Log: the stored one is kept

    async def say(self, msg: Say) -> int:
        self.state.turns.append(msg.text)
        return len(self.state.turns)

    async def get(self, msg: Get) -> Any:
        return (self.state.title, list(self.state.turns))


async def test_a_migration_keeps_the_stored_log(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        chat = await rt.spawn(ChatV1, name="chat")
        assert await chat.ask(Say("hello")) == 1
        assert await chat.ask(Say("where is it?")) == 2
    async with us.Runtime(store=db) as rt:
        chat = await rt.spawn(ChatV2, name="chat")
        assert await chat.ask(Get()) == ("parcel", ["hello", "where is it?"])
        assert await chat.ask(Say("thanks")) == 3
    async with us.Runtime(store=db) as rt:
        assert await (await rt.spawn(ChatV2, name="chat")).ask(Get()) == (
            "parcel",
            ["hello", "where is it?", "thanks"],
        )

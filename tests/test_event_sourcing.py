"""Event-sourced actors: a journal of events, snapshots every N, replay, retention."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import anyio
import msgspec
import pytest

import understudy as us

pytestmark = pytest.mark.anyio


class Deposited(msgspec.Struct):
    amount: int


class Withdrew(msgspec.Struct):
    amount: int


class Op(us.Request[int], frozen=True):
    """Deposit (positive) or withdraw (negative); the reply is the new balance."""

    amount: int


class OpThenFail(us.Request[int], frozen=True):
    amount: int


class Balance(us.Request[int], frozen=True):
    pass


class Ledger(us.EventSourced):
    events = (Deposited, Withdrew)
    snapshot_every = 7

    class State(msgspec.Struct):
        balance: int = 0
        history: list[int] = msgspec.field(default_factory=list)

    def apply(self, event: Deposited | Withdrew) -> None:
        delta = event.amount if isinstance(event, Deposited) else -event.amount
        self.state.balance += delta
        self.state.history.append(delta)

    async def op(self, msg: Op) -> int:
        if msg.amount >= 0:
            await self.ctx.persist(Deposited(msg.amount))
        else:
            await self.ctx.persist(Withdrew(-msg.amount))
        return int(self.state.balance)

    async def op_then_fail(self, msg: OpThenFail) -> int:
        await self.ctx.persist(Deposited(msg.amount))
        await self.ctx.persist(Deposited(msg.amount))
        raise RuntimeError("crashed after persisting")

    async def balance(self, msg: Balance) -> int:
        return int(self.state.balance)


class NoSnapshots(Ledger):
    snapshot_every = 1_000_000


class Retaining(Ledger):
    snapshot_every = 10
    retain_events = 3


def full_replay(rows: list[tuple[int, str, bytes, float]]) -> Ledger.State:
    """The state the whole journal adds up to, replayed outside any runtime."""
    state = Ledger.State()
    types = {"Deposited": Deposited, "Withdrew": Withdrew}
    for _, kind, data, _ in rows:
        event = msgspec.msgpack.decode(data, type=types[kind])
        delta = event.amount if isinstance(event, Deposited) else -event.amount
        state.balance += delta
        state.history.append(delta)
    return state


async def live_state(ref: us.Ref) -> Ledger.State:
    instance = ref._cell.instance
    assert instance is not None
    state: Ledger.State = msgspec.structs.replace(instance.state)
    return state


async def test_replaying_the_journal_rebuilds_the_live_state(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    rng = random.Random(7)
    async with us.Runtime(store=db) as rt:
        ledger = await rt.spawn(NoSnapshots, name="l")
        for _ in range(50):
            await ledger.ask(Op(rng.randint(-5, 10)))
        live = await live_state(ledger)
    async with us.Runtime(store=db) as rt:
        ledger = await rt.spawn(NoSnapshots, name="l")
        assert await live_state(ledger) == live
        assert rt.store is not None
        assert rt.store.stats.loads == 1


async def test_snapshot_plus_tail_equals_full_replay(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    rng = random.Random(11)
    async with us.Runtime(store=db) as rt:
        ledger = await rt.spawn(Ledger, name="l")  # a snapshot every 7 events
        for _ in range(52):
            await ledger.ask(Op(rng.randint(-5, 10)))
        live = await live_state(ledger)
        assert rt.store is not None
        journal = await rt.store.journal("l")
    assert [row[0] for row in journal] == list(range(1, 53))  # the audit trail, in order
    assert full_replay(journal) == live
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT version FROM snapshots WHERE actor = 'l'").fetchone() == (49,)
    conn.close()
    async with us.Runtime(store=db) as rt:
        ledger = await rt.spawn(Ledger, name="l")  # snapshot 49 + events 50..52
        assert await live_state(ledger) == live
        assert await ledger.ask(Op(1)) == live.balance + 1


async def test_events_of_a_crashed_message_are_not_committed(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        ledger = await rt.spawn(Ledger, name="l")
        assert await ledger.ask(Op(5)) == 5
        with pytest.raises(RuntimeError, match="crashed after persisting"):
            await ledger.ask(OpThenFail(100))
        ledger = await rt.spawn(Ledger, name="l")
        assert await ledger.ask(Balance()) == 5
        assert await ledger.ask(Op(1)) == 6
        assert rt.store is not None
        journal = await rt.store.journal("l")
    assert [(seq, kind) for seq, kind, _, _ in journal] == [(1, "Deposited"), (2, "Deposited")]


async def test_replies_wait_for_the_commit_of_their_events(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    reader = sqlite3.connect(db)
    checks: list[tuple[int, int]] = []
    async with us.Runtime(store=db) as rt:
        ledgers = [await rt.spawn(Ledger, name=f"l{i}") for i in range(10)]

        async def caller(ref: us.Ref) -> None:
            for _ in range(20):
                balance = await ref.ask(Op(1))
                (count,) = reader.execute(
                    "SELECT COUNT(*) FROM journal WHERE actor = ?", (ref.name,)
                ).fetchone()
                checks.append((balance, count))

        async with anyio.create_task_group() as tg:
            for ref in ledgers:
                tg.start_soon(caller, ref)
        assert rt.store is not None
        assert rt.store.stats.events == 200
        assert rt.store.stats.commits * 5 <= 200
    reader.close()
    assert all(count >= balance for balance, count in checks)


async def test_retention_keeps_what_a_restart_needs(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        ledger = await rt.spawn(Retaining, name="l")  # snapshot every 10, retain 3
        for _ in range(25):
            await ledger.ask(Op(2))
        assert rt.store is not None
        journal = await rt.store.journal("l")
        assert [row[0] for row in journal] == list(range(18, 26))  # 20 - 3 + 1 .. 25
    async with us.Runtime(store=db) as rt:
        ledger = await rt.spawn(Retaining, name="l")
        assert await ledger.ask(Balance()) == 50


async def test_prune_journal_drops_what_snapshots_include(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        ledger = await rt.spawn(Ledger, name="l")  # snapshot every 7
        for _ in range(16):
            await ledger.ask(Op(1))
        assert rt.store is not None
        assert await rt.store.prune_journal(keep=2) == 12  # snapshot at 14; keep 13, 14
        assert [row[0] for row in await rt.store.journal("l")] == [13, 14, 15, 16]
        assert await rt.store.prune_journal() == 2
    async with us.Runtime(store=db) as rt:
        ledger = await rt.spawn(Ledger, name="l")
        assert await ledger.ask(Balance()) == 16


async def test_two_runtimes_appending_to_one_journal_conflict(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as first, us.Runtime(store=db) as second:
        a = await first.spawn(Ledger, name="l")
        b = await second.spawn(Ledger, name="l")
        assert await b.ask(Op(1)) == 1  # takes seq 1
        with pytest.raises(us.StaleState) as caught:
            await a.ask(Op(100))  # seq 1 again: refused
        assert (caught.value.expected, caught.value.found) == (0, 1)
        assert second.store is not None
        assert [row[0] for row in await second.store.journal("l")] == [1]


async def test_a_corrupted_journal_entry_fails_that_actors_start(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        ledger = await rt.spawn(NoSnapshots, name="l")
        for _ in range(3):
            await ledger.ask(Op(1))
    conn = sqlite3.connect(db)
    conn.execute("UPDATE journal SET event = ? WHERE actor = 'l' AND seq = 2", (b"\xc1",))
    conn.commit()
    conn.close()
    async with us.Runtime(store=db) as rt:
        with pytest.raises(us.CorruptState, match=r"actor 'l'.*journal entry \(version 2\)"):
            await rt.spawn(NoSnapshots, name="l")


class Wrong(us.Request[int], frozen=True):
    pass


class Sloppy(Ledger):
    async def wrong(self, msg: Wrong) -> int:
        await self.ctx.persist(Op(1))
        return 0


async def test_persist_refuses_what_the_actor_does_not_journal(tmp_path: Path) -> None:
    async with us.Runtime(store=tmp_path / "app.db") as rt:
        ref = await rt.spawn(Sloppy, name="s")
        with pytest.raises(TypeError, match="cannot persist Op: its events are"):
            await ref.ask(Wrong())


async def test_an_event_sourced_actor_must_declare_its_events(tmp_path: Path) -> None:
    class Empty(us.EventSourced):
        class State(msgspec.Struct):
            n: int = 0

    async with us.Runtime(store=tmp_path / "app.db") as rt:
        with pytest.raises(TypeError, match="declares no events"):
            await rt.spawn(Empty, name="e")


class Snap(us.Actor):
    persistent = True

    class State(msgspec.Struct):
        n: int = 0

    async def op(self, msg: Op) -> int:
        await self.ctx.persist(Deposited(1))
        return 0


async def test_a_snapshot_actor_cannot_persist_events(tmp_path: Path) -> None:
    async with us.Runtime(store=tmp_path / "app.db") as rt:
        ref = await rt.spawn(Snap, name="s")
        with pytest.raises(TypeError, match="not event-sourced"):
            await ref.ask(Op(1))

"""``us.Log[T]``: an append-only State field persisted as appended rows beside the snapshot."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

import understudy as us

pytestmark = pytest.mark.anyio


class Turn(msgspec.Struct, frozen=True):
    role: str
    text: str


class Say(us.Request[int], frozen=True):
    text: str


class SayThenFail(us.Request[int], frozen=True):
    text: str


class History(us.Request[list[Turn]], frozen=True):
    pass


class Length(us.Request[int], frozen=True):
    pass


class Entry(us.Request[Turn], frozen=True):
    index: int


class Conversation(us.Actor):
    persistent = True

    class State(msgspec.Struct):
        title: str = ""
        turns: us.Log[Turn] = us.Log.field()

    async def say(self, msg: Say) -> int:
        self.state.turns.append(Turn("user", msg.text))
        self.state.turns.append(Turn("assistant", msg.text.upper()))
        return len(self.state.turns)

    async def say_then_fail(self, msg: SayThenFail) -> int:
        self.state.turns.append(Turn("user", msg.text))
        raise RuntimeError("the model fell over")

    async def history(self, msg: History) -> list[Turn]:
        return list(self.state.turns)

    async def length(self, msg: Length) -> int:
        return len(self.state.turns)

    async def entry(self, msg: Entry) -> Turn:
        return self.state.turns[msg.index]


class Recent(us.Actor):
    persistent = True

    class State(msgspec.Struct):
        turns: us.Log[Turn] = us.Log.field(keep=3)

    async def say(self, msg: Say) -> int:
        self.state.turns.append(Turn("user", msg.text))
        return len(self.state.turns)

    async def history(self, msg: History) -> list[Turn]:
        return list(self.state.turns)

    async def entry(self, msg: Entry) -> Turn:
        return self.state.turns[msg.index]


def rows(db: Path, actor: str) -> tuple[dict[str, Any], list[tuple[str, int, Turn]]]:
    conn = sqlite3.connect(db)
    try:
        (state,) = conn.execute("SELECT state FROM snapshots WHERE actor = ?", (actor,)).fetchone()
        entries = conn.execute(
            "SELECT field, seq, entry FROM log_entries WHERE actor = ? ORDER BY field, seq",
            (actor,),
        ).fetchall()
    finally:
        conn.close()
    decoded = [(f, s, msgspec.msgpack.decode(e, type=Turn)) for f, s, e in entries]
    return msgspec.msgpack.decode(state), decoded


async def test_appends_are_rows_beside_a_snapshot_holding_the_length(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        chat = await rt.spawn(Conversation, name="conv-1")
        assert await chat.ask(Say("hi")) == 2
        snapshot, entries = rows(db, "conv-1")  # acknowledged: committed already
        assert snapshot == {"title": "", "turns": 2}
        assert entries == [("turns", 1, Turn("user", "hi")), ("turns", 2, Turn("assistant", "HI"))]
        assert await chat.ask(Say("bye")) == 4
        assert len(rows(db, "conv-1")[1]) == 4
        assert rt.store is not None and rt.store.stats.log_entries == 4
    async with us.Runtime(store=db) as rt:
        chat = await rt.spawn(Conversation, name="conv-1")
        assert [t.text for t in await chat.ask(History())] == ["hi", "HI", "bye", "BYE"]
        assert await chat.ask(Say("again")) == 6
    assert [s for _, s, _ in rows(db, "conv-1")[1]] == [1, 2, 3, 4, 5, 6]


async def test_a_failed_message_appends_nothing(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        spec = us.Child(Conversation, name="conv-1")
        await rt.start(us.Supervisor(strategy=us.OneForOne(), children=[spec]))
        chat = rt.ref("conv-1")
        assert await chat.ask(Say("one")) == 2
        with pytest.raises(RuntimeError, match="fell over"):
            await chat.ask(SayThenFail("lost"))
        for _ in range(100):
            try:
                assert await chat.ask(Length()) == 2
                break
            except (us.UnknownActor, us.ActorStopped):
                await anyio.sleep(0.01)
        assert await chat.ask(Say("two")) == 4
    assert [t.text for _, _, t in rows(db, "conv-1")[1]] == ["one", "ONE", "two", "TWO"]


async def test_a_failed_commit_rolls_back_the_appends(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        spec = us.Child(Conversation, name="conv-1")
        await rt.start(us.Supervisor(strategy=us.OneForOne(), children=[spec]))
        chat = rt.ref("conv-1")
        assert await chat.ask(Say("one")) == 2
        assert rt.store is not None
        rt.store.fail_next_commits(1)
        with pytest.raises(us.PersistenceError):
            await chat.ask(Say("lost"))
        for _ in range(100):
            try:
                assert await chat.ask(Say("two")) == 4
                break
            except (us.UnknownActor, us.ActorStopped, us.PersistenceError):
                await anyio.sleep(0.01)
    assert [t.text for _, _, t in rows(db, "conv-1")[1]] == ["one", "ONE", "two", "TWO"]


async def test_keep_holds_the_last_entries_in_memory_and_all_in_the_store(
    tmp_path: Path,
) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        recent = await rt.spawn(Recent, name="r")
        for i in range(10):
            assert await recent.ask(Say(str(i))) == i + 1
        held = [t.text for t in await recent.ask(History())]
        assert held[-3:] == ["7", "8", "9"] and len(held) <= 6  # trimmed in batches
        with pytest.raises(IndexError, match="kept only in the store"):
            await recent.ask(Entry(0))
        assert rt.store is not None
        assert len(await rt.store.log("r")) == 10
    async with us.Runtime(store=db) as rt:  # a restart reads only the last 3 rows
        recent = await rt.spawn(Recent, name="r")
        assert [t.text for t in await recent.ask(History())] == ["7", "8", "9"]
        assert (await recent.ask(Entry(-1))).text == "9"
        assert await recent.ask(Say("10")) == 11
    assert [s for _, s, _ in rows(db, "r")[1]] == list(range(1, 12))


async def test_two_runtimes_on_one_file_cannot_both_append(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as first, us.Runtime(store=db) as second:
        a = await first.spawn(Conversation, name="conv-1")
        assert await a.ask(Say("first")) == 2
        b = await second.spawn(Conversation, name="conv-1")
        assert await b.ask(Say("second")) == 4
        with pytest.raises(us.StaleState):
            await a.ask(Say("stale"))
    assert [t.text for _, _, t in rows(db, "conv-1")[1]] == ["first", "FIRST", "second", "SECOND"]


async def test_inspect_shows_the_log(tmp_path: Path) -> None:
    from understudy.persistence._inspect import log_records, snapshot_records

    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        await (await rt.spawn(Conversation, name="conv-1")).ask(Say("hi"))
    [record] = snapshot_records(str(db))
    assert record["state"] == {"title": "", "turns": 2}
    assert record["logs"] == {"turns": 2}
    entries = log_records(str(db), "conv-1")
    assert [(e["field"], e["seq"], e["entry"]) for e in entries] == [
        ("turns", 1, {"role": "user", "text": "hi"}),
        ("turns", 2, {"role": "assistant", "text": "HI"}),
    ]


# -- bad input ----------------------------------------------------------------------------------


class NotMsgspec:
    pass


async def test_a_log_of_a_type_msgspec_cannot_encode_is_refused(tmp_path: Path) -> None:
    class Bad(us.Actor):
        persistent = True

        class State(msgspec.Struct):
            items: us.Log[NotMsgspec] = us.Log.field()

    async with us.Runtime(store=tmp_path / "app.db") as rt:
        with pytest.raises(TypeError, match=r"'items'.*NotMsgspec.*msgspec cannot encode"):
            await rt.spawn(Bad, name="bad")


async def test_a_log_without_a_fresh_default_is_refused(tmp_path: Path) -> None:
    class Shared(us.Actor):
        persistent = True

        class State(msgspec.Struct):
            items: us.Log[int] = us.Log()  # one log shared by every instance

    async with us.Runtime(store=tmp_path / "app.db") as rt:
        with pytest.raises(TypeError, match=r"us\.Log\.field\(\)"):
            await rt.spawn(Shared, name="shared")


async def test_a_log_keep_must_be_positive() -> None:
    with pytest.raises(ValueError, match="keep"):
        us.Log.field(keep=0)


async def test_replacing_a_log_fails_the_message(tmp_path: Path) -> None:
    class Replace(us.Request[int], frozen=True):
        pass

    class Replacer(us.Actor):
        persistent = True
        State = Conversation.State

        async def say(self, msg: Say) -> int:
            self.state.turns.append(Turn("user", msg.text))
            return len(self.state.turns)

        async def replace(self, msg: Replace) -> int:
            self.state.turns = us.Log([Turn("user", "forged")])
            return 0

    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        ref = await rt.spawn(Replacer, name="r")
        assert await ref.ask(Say("one")) == 1
        with pytest.raises(TypeError, match="append-only"):
            await ref.ask(Replace())
    assert [t.text for _, _, t in rows(db, "r")[1]] == ["one"]


def test_a_log_reads_like_a_sequence() -> None:
    log: us.Log[int] = us.Log([1, 2, 3])
    log.append(4)
    log.extend([5, 6])
    assert len(log) == 6 and list(log) == [1, 2, 3, 4, 5, 6]
    assert log[0] == 1 and log[-1] == 6 and log[1:3] == [2, 3]
    with pytest.raises(IndexError):
        log[6]
    assert log == us.Log([1, 2, 3, 4, 5, 6])


async def test_rollback_undoes_a_message_s_changes_and_appends(tmp_path: Path) -> None:
    """``Snapshots.rollback`` (what an answered handler error runs): the state of
    the last completed message, its log without what was appended since."""
    from understudy.persistence import Snapshots

    async with us.Runtime(store=tmp_path / "app.db") as rt:
        chat = await rt.spawn(Conversation, name="conv-1")
        assert await chat.ask(Say("kept")) == 2
        cell = chat._cell
        link = cell.persistence
        assert isinstance(link, Snapshots) and cell.instance is not None
        state = cell.instance.state
        state.title = "changed by a failing message"
        state.turns.append(Turn("user", "rolled back"))
        await link.rollback(cell.instance)
        assert cell.instance.state.title == ""
        assert [t.text for t in cell.instance.state.turns] == ["kept", "KEPT"]
        assert await chat.ask(Say("next")) == 4
        assert rt.store is not None
        assert [row[1] for row in await rt.store.log("conv-1")] == [1, 2, 3, 4]


async def test_the_cli_shows_logs_and_persistent_budgets(tmp_path: Path) -> None:
    import io
    import json

    from understudy.cli import main

    db = tmp_path / "app.db"
    async with us.Runtime(store=db) as rt:
        await (await rt.spawn(Conversation, name="conv-1")).ask(Say("hi"))
        async with rt.budget(name="conv-1", usd=0.5, tokens=100, persistent=True) as budget:
            budget.reserve(tokens=10).settle(tokens=7, usd=0.125)
    out = io.StringIO()
    assert main(["inspect", str(db), "--log", "conv-1"], out) == 0
    assert '{"role":"assistant","text":"HI"}' in out.getvalue()
    out = io.StringIO()
    assert main(["inspect", str(db), "--budgets"], out) == 0
    assert "conv-1  0.125/0/0.5" in out.getvalue() and "7/0/100" in out.getvalue()
    out = io.StringIO()
    assert main(["inspect", str(db), "--budgets", "--json"], out) == 0
    [record] = json.loads(out.getvalue())["budgets"]
    assert record["spent"] == {"tokens": 7, "usd": 0.125} and record["usd"] == 0.5

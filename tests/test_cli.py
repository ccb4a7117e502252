"""``understudy inspect``: what a persisted store holds, read-only."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_event_sourcing import Ledger, Op
from test_persistence import Account, Deposit

import understudy as us
from understudy.cli import main


async def _populate(db: Path) -> None:
    async with us.Runtime(store=db) as rt:
        alice = await rt.spawn(Account, name="alice")
        await alice.ask(Deposit(10))
        await alice.ask(Deposit(5))
        await (await rt.spawn(Account, name="bob")).ask(Deposit(1))


@pytest.fixture
def store(tmp_path: Path) -> Path:
    db = tmp_path / "app.db"
    us.run(_populate, db)
    return db


def test_inspect_lists_actors_with_version_and_state(store: Path) -> None:
    out = io.StringIO()
    assert main(["inspect", str(store)], out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:3] == ["ACTOR", "VERSION", "UPDATED"]
    assert lines[1].split()[0:2] == ["alice", "2"]
    assert lines[1].endswith('{"balance":15}')
    assert lines[2].split()[0:2] == ["bob", "1"]
    assert lines[2].endswith('{"balance":1}')


def test_inspect_json_for_one_actor(store: Path) -> None:
    out = io.StringIO()
    assert main(["inspect", str(store), "--json", "--actor", "bob"], out) == 0
    document = json.loads(out.getvalue())
    assert document["schema"] == us.persistence.SCHEMA_VERSION
    [bob] = document["actors"]
    assert bob["actor"] == "bob"
    assert bob["version"] == 1
    assert bob["state"] == {"balance": 1}
    assert bob["updated"].endswith("+00:00")


def test_inspect_of_a_missing_file_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(tmp_path / "nope.db")], io.StringIO()) == 1
    assert "no store at" in capsys.readouterr().err
    assert not (tmp_path / "nope.db").exists()  # inspecting never creates a file


def test_the_console_script_runs(store: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "understudy.cli", "inspect", str(store)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "alice" in done.stdout


async def _journal(db: Path) -> None:
    async with us.Runtime(store=db) as rt:
        ledger = await rt.spawn(Ledger, name="ledger")
        await ledger.ask(Op(5))
        await ledger.ask(Op(-2))


def test_inspect_prints_an_actors_journal_in_order(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    us.run(_journal, db, backend="trio")
    out = io.StringIO()
    assert main(["inspect", str(db), "--journal", "ledger"], out) == 0
    lines = out.getvalue().splitlines()
    assert lines[1].split()[0] == "1"
    assert lines[1].split()[2] == "Deposited"
    assert lines[1].endswith('{"amount":5}')
    assert lines[2].split()[2] == "Withdrew"
    out = io.StringIO()
    assert main(["inspect", str(db), "--journal", "ledger", "--json"], out) == 0
    entries = json.loads(out.getvalue())["journal"]
    assert [(e["seq"], e["kind"], e["event"]) for e in entries] == [
        (1, "Deposited", {"amount": 5}),
        (2, "Withdrew", {"amount": 2}),
    ]

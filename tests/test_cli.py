"""``understudy inspect``: what a persisted store holds, read-only."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_event_sourcing import Ledger, Op
from test_persistence import Account, Deposit

import understudy as us
from understudy.cli import format_tree, main
from understudy.metrics import ActorInfo


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


# ------------------------------------------------------- bad arguments and hostile names


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.mark.parametrize("timeout", ["abc", "-1", "0", "nan", "inf", ""])
def test_tree_refuses_a_bad_timeout_in_one_line(
    timeout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["tree", "http://127.0.0.1:9", "--timeout", timeout])
    assert exit_.value.code == 2
    assert "--timeout" in one_line_error(capsys)


@pytest.mark.parametrize(
    "url",
    ["http://[::1", "ftp://127.0.0.1:9464", "http://127.0.0.1:99999", "http://:9464", "http://a b"],
)
def test_tree_refuses_a_bad_url_in_one_line(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tree", url, "--timeout", "1"]) == 2
    assert "bad URL" in one_line_error(capsys)


def test_demo_refuses_a_db_in_a_missing_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope" / "bank.db"
    assert main(["demo", "--db", str(missing), "--duration", "1"]) == 2
    assert "does not exist" in one_line_error(capsys)
    assert not missing.parent.exists()
    assert main(["demo", "--db", str(tmp_path), "--duration", "1"]) == 2
    assert "is a directory" in one_line_error(capsys)


def test_the_console_script_fails_in_one_line_with_status_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "understudy.cli", "tree", "http://[::1", "--timeout", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


def test_inspect_escapes_control_characters_in_names(store: Path) -> None:
    evil = "mallory\n\x1b[31mforged    99  2020-01-01  {}"
    with sqlite3.connect(store) as conn:  # a name no runtime should accept, written directly
        conn.execute("UPDATE snapshots SET actor = ? WHERE actor = 'bob'", (evil,))
    out = io.StringIO()
    assert main(["inspect", str(store)], out) == 0
    text = out.getvalue()
    assert "\x1b" not in text
    lines = text.splitlines()
    assert len(lines) == 3  # the header, alice, and one row for the forged name
    assert lines[2].startswith("mallory\\n\\x1b[31mforged")
    document = io.StringIO()
    assert main(["inspect", str(store), "--json"], document) == 0
    assert evil in [actor["actor"] for actor in json.loads(document.getvalue())["actors"]]


def test_tree_output_escapes_control_characters() -> None:
    info = ActorInfo(
        name="a\x1b]0;owned\x07\nb",
        actor_class="X",
        state="running",
        mailbox_depth=0,
        mailbox_capacity=1,
    )
    text = format_tree([info])
    assert "\x1b" not in text
    assert "\n" not in text
    assert text.startswith("a\\x1b]0;owned\\x07\\nb (X) running")

"""Agent conversations survive a SIGKILL of their process: no committed model call repeated,
every side effect exactly once per idempotency key, every conversation answered."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

PROCESS = Path(__file__).with_name("agents_process.py")
CONVERSATIONS = 30


def committed_turns(db: Path) -> Counter[str]:
    """ModelTurn entries committed per conversation."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT actor FROM journal WHERE kind = 'ModelTurn'").fetchall()
    finally:
        conn.close()
    return Counter(actor for (actor,) in rows)


def lines(path: Path) -> list[str]:
    return path.read_text().split("\n")[:-1] if path.exists() else []


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sigkill_mid_conversations_then_resume(tmp_path: Path, backend: str) -> None:
    db, outside = tmp_path / "agents.db", tmp_path / "outside.log"
    first, second = tmp_path / "requests-1.log", tmp_path / "requests-2.log"
    args = [str(db), str(outside)]
    with (tmp_path / "err-1").open("w") as err:
        process = subprocess.Popen(
            [sys.executable, str(PROCESS), "run", *args, str(first), backend, str(CONVERSATIONS)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    bound = time.monotonic() + 30
    while len(lines(outside)) < CONVERSATIONS:  # about a third of the effects are done
        assert process.poll() is None, (tmp_path / "err-1").read_text()[-2000:]
        assert time.monotonic() < bound, "no progress"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    turns = committed_turns(db)
    assert sum(turns.values()) < CONVERSATIONS * 4  # it was killed mid-way
    done = subprocess.run(
        [sys.executable, str(PROCESS), "run", *args, str(second), backend, str(CONVERSATIONS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.splitlines()[-1])
    assert results == {f"c{i}": f"c{i} done" for i in range(CONVERSATIONS)}
    # Every effect ran exactly once per idempotency key, and all of them ran.
    keys = Counter(lines(outside))
    assert all(n == 1 for n in keys.values()), [k for k, n in keys.items() if n > 1]
    assert len(keys) == CONVERSATIONS * 3
    # No committed model call was made again: after the restart, each conversation made
    # only the calls it had not committed.
    again = Counter(line.split()[0] for line in lines(second))
    for i in range(CONVERSATIONS):
        name = f"c{i}"
        assert again[name] == 4 - turns[name], (name, again[name], turns[name])
    assert committed_turns(db) == {f"c{i}": 4 for i in range(CONVERSATIONS)}

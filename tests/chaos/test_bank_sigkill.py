"""The chaos suite, process level: the bank is SIGKILLed mid-load, restarted, and loses nothing.

The bank runs in a subprocess (``bank_process.py load``) on a SQLite file, under a chaos
monkey, with clients logging every acknowledged transfer to an ack log before their next
transfer. The test SIGKILLs it at random moments, each once the ack log has grown, and starts
it again on the same file, several times. A last incarnation (``bank_process.py check``)
recovers the bank without chaos and checks it against every acknowledgement ever logged:
money conserved, no acknowledged transfer lost, none applied twice, every actor serving, no
supervisor gave up. The seed is in every failure message, so a failure replays.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

PROCESS = Path(__file__).with_name("bank_process.py")
SEEDS = {"asyncio": 20261122, "trio": 20261123}
PROGRESS_BOUND = 90.0
"""Seconds an incarnation gets to log the acknowledgements awaited (a hang guard only)."""


def acks_logged(acks: Path) -> int:
    return acks.read_bytes().count(b"\n") if acks.exists() else 0


def last_status(out: Path) -> dict[str, Any]:
    """The last complete status line a killed incarnation printed ({} if none)."""
    lines = out.read_text().split("\n")[:-1]
    return json.loads(lines[-1]) if lines else {}


def run_until_killed(
    tmp_path: Path, backend: str, seed: int, incarnation: int, rng: random.Random, replay: str
) -> dict[str, Any]:
    """One life of the bank: load it, SIGKILL it once it has made progress; its last status."""
    db, acks = tmp_path / "bank.db", tmp_path / "acks.log"
    out, err = tmp_path / f"load-{incarnation}.out", tmp_path / f"load-{incarnation}.err"
    before = acks_logged(acks)
    progress = rng.randint(500, 5_000)  # acknowledgements to wait for: a random moment
    command = ["load", str(db), str(acks), backend, str(seed), str(incarnation)]
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(PROCESS), *command], stdout=stdout, stderr=stderr
        )
    try:
        bound = time.monotonic() + PROGRESS_BOUND
        while acks_logged(acks) < before + progress:
            assert process.poll() is None, (
                f"{replay}: incarnation {incarnation} exited with {process.returncode} before "
                f"it was killed: {err.read_text()[-2000:]}"
            )
            assert time.monotonic() < bound, (
                f"{replay}: incarnation {incarnation} logged {acks_logged(acks) - before} acks "
                f"in {PROGRESS_BOUND} s, waiting for {progress}: {err.read_text()[-2000:]}"
            )
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL, f"{replay}: {err.read_text()[-2000:]}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return last_status(out)


def check(tmp_path: Path, backend: str, replay: str) -> dict[str, Any]:
    """The last incarnation: no chaos, no transfers; the verdict against the whole ack log."""
    command = ["check", str(tmp_path / "bank.db"), str(tmp_path / "acks.log"), backend]
    done = subprocess.run(
        [sys.executable, str(PROCESS), *command], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"{replay}: check exited {done.returncode}: {done.stderr[-2000:]}"
    verdict: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return verdict


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_bank_loses_nothing_when_its_process_is_sigkilled(tmp_path: Path, backend: str) -> None:
    seed = SEEDS[backend]
    replay = f"seed={seed} backend={backend}"
    rng = random.Random(seed)
    statuses = [
        run_until_killed(tmp_path, backend, seed, incarnation, rng, replay)
        for incarnation in range(1, rng.randint(3, 4) + 1)
    ]
    verdict = check(tmp_path, backend, replay)
    summary = {key: verdict[key] for key in verdict if key not in ("lost", "duplicated")}
    replay += f" ({len(statuses)} SIGKILLs, last statuses {statuses}, verdict {summary})"

    assert sum(status.get("kill", 0) for status in statuses) > 0, replay
    assert sum(status.get("exception", 0) for status in statuses) > 0, replay
    assert sum(status.get("failed", 0) for status in statuses) > 0, replay  # the chaos was felt
    assert all(status.get("gave_up", 0) == 0 for status in statuses), replay
    assert verdict["acknowledged"] == acks_logged(tmp_path / "acks.log"), replay
    assert verdict["money_after"] == verdict["money_before"], replay
    assert verdict["lost"] == [], f"{replay}: lost {verdict['lost'][:20]}"
    assert verdict["duplicated"] == [], f"{replay}: applied twice {verdict['duplicated'][:20]}"
    assert verdict["dead_actors"] == [], replay
    assert verdict["unsettled"] == 0, replay
    assert verdict["gave_up"] == 0, replay

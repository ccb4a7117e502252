"""Process level: many persistent conversations (entities) are SIGKILLed mid-load and
restarted; every acknowledged ask's entry is in its conversation afterwards, none twice.

The load (``conversations_process.py load``) keeps 1,000 conversations asking at once, with
passivation and ``max_active`` evicting and restoring them all the time; the test kills it
twice at random moments, then a last incarnation checks the histories against the ack log.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROCESS = Path(__file__).with_name("conversations_process.py")
SEEDS = {"asyncio": 20261201, "trio": 20261202}
PROGRESS_BOUND = 30.0


def acks_logged(acks: Path) -> int:
    return acks.read_bytes().count(b"\n") if acks.exists() else 0


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_conversations_lose_nothing_when_their_process_is_sigkilled(
    tmp_path: Path, backend: str
) -> None:
    seed = SEEDS[backend]
    rng = random.Random(seed)
    replay = f"seed={seed} backend={backend}"
    db, acks = tmp_path / "conv.db", tmp_path / "acks.log"
    for incarnation in (1, 2):
        before = acks_logged(acks)
        progress = rng.randint(2_500, 5_000)
        err = tmp_path / f"load-{incarnation}.err"
        with err.open("w") as stderr:
            process = subprocess.Popen(
                [
                    sys.executable,
                    str(PROCESS),
                    "load",
                    str(db),
                    str(acks),
                    backend,
                    str(incarnation),
                ],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        try:
            bound = time.monotonic() + PROGRESS_BOUND
            while acks_logged(acks) < before + progress:
                assert process.poll() is None, f"{replay}: exited early: {err.read_text()[-2000:]}"
                assert time.monotonic() < bound, f"{replay}: no progress: {err.read_text()[-2000:]}"
                time.sleep(0.01)
            process.send_signal(signal.SIGKILL)
            assert process.wait() == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    done = subprocess.run(
        [sys.executable, str(PROCESS), "check", str(db), str(acks), backend],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"{replay}: check failed: {done.stderr[-2000:]}"
    verdict = json.loads(done.stdout.splitlines()[-1])
    assert verdict["acknowledged"] == acks_logged(acks), replay
    assert verdict["lost"] == [], f"{replay}: lost {verdict['lost'][:20]}"
    assert verdict["duplicated"] == [], f"{replay}: duplicated {verdict['duplicated'][:20]}"

"""`understudy demo` runs as a user runs it: a subprocess, briefly, then Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest

DEMO = [sys.executable, "-m", "understudy.cli", "demo", "--plain", "--accounts", "20"]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_demo_runs_chaos_and_reports_that_nothing_was_lost(backend: str, tmp_path) -> None:
    result = subprocess.run(
        [
            *DEMO,
            "--duration",
            "2",
            "--kill-rate",
            "40",
            "--seed",
            "3",
            "--backend",
            backend,
            "--db",
            str(tmp_path / "bank.db"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "metrics http://127.0.0.1:" in out
    # the live view refreshed (about a second in: a loaded machine wakes the view late)
    assert re.search(r"t=\s*1\.\ds", out), out
    assert "breakers    8 " in out  # every teller's breaker is shown
    summary = out[out.index("== summary ==") :]
    assert "kill " in summary  # the monkey did kill
    assert "money: 20,000 before, 20,000 after" in summary
    assert "lost: 0; applied twice: 0" in summary
    assert "verdict: nothing acknowledged was lost" in summary
    assert (tmp_path / "bank.db").exists()


def test_ctrl_c_stops_the_demo_gracefully_with_the_summary(tmp_path) -> None:
    with subprocess.Popen(
        [*DEMO, "--duration", "600", "--seed", "5", "--db", str(tmp_path / "bank.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as demo:
        assert demo.stdout is not None
        deadline = time.monotonic() + 60
        for line in demo.stdout:  # wait for the first live view
            if line.startswith("t=") or time.monotonic() > deadline:
                break
        demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=60)
    assert demo.returncode == 0, out + err
    assert "== summary ==" in out
    assert "verdict: nothing acknowledged was lost" in out

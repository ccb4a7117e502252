"""The examples run as a user would run them, on both backends."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TESTED = {"bank.py", "sensors.py", "tour.py", "llm_calls.py"}  # llm area: llm_calls.py


def test_every_example_is_run_by_a_test() -> None:
    assert {path.name for path in EXAMPLES.glob("*.py")} == TESTED


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_bank_example_runs_and_tells_its_story(backend: str) -> None:
    result = run_example("bank.py", backend)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "alice has 100",
        "alice after withdrawing 30: 70",
        "statement not ready in time; alice keeps serving",
        "alice still has 70",
        "bob's withdrawal refused: cannot withdraw 50, balance is 20",
        "auditor: bob ended (failed): cannot withdraw 50, balance is 20",
        "bob is closed",
        "dead letters: {'crashed': 1}",
    ]
    # The crash is logged once, with its traceback, and nothing else goes to stderr.
    assert result.stderr.count("ERROR understudy: actor 'bob' stopped") == 1
    assert "Traceback" in result.stderr
    assert result.stderr.count("Traceback") == 1


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sensors_example_polls_loses_a_sensor_and_stops_in_order(backend: str) -> None:
    result = run_example("sensors.py", backend)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line for line in lines if line.startswith("poll")] == [
        "poll 1: s1=11 s2=21 s3=31",
        "poll 2: s1=12 s2=22 s3=32",
        "poll 3: s1=13 s2=! (s2 returned garbage) s3=33",
        "poll 4: s1=14 s3=34",
        "poll 5: s1=15 s3=35",
    ]
    assert sorted(lines) == sorted(
        [line for line in lines if line.startswith("poll")]
        + ["s2 stopped", "monitor: s2 is gone (failed)"]
        + ["s3 stopped", "s1 stopped", "monitor stopped after 5 polls"]
    )
    # The broken sensor's Terminated is handled between two polls.
    gone = lines.index("monitor: s2 is gone (failed)")
    assert lines.index("poll 3: s1=13 s2=! (s2 returned garbage) s3=33") < gone
    assert gone < lines.index("poll 4: s1=14 s3=34")
    # Children stop newest first, before their parent.
    assert lines[-3:] == ["s3 stopped", "s1 stopped", "monitor stopped after 5 polls"]
    assert result.stderr.count("ERROR understudy: actor 's2' stopped") == 1


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_tour_example_restarts_the_account_after_a_failed_request(backend: str) -> None:
    result = run_example("tour.py", backend)
    assert result.returncode == 0, result.stderr
    metrics, *story = result.stdout.splitlines()
    assert metrics.startswith("metrics at http://127.0.0.1:")
    assert story == [
        "balance: 10",
        "withdraw 4 -> 6",
        "refused: insufficient funds: 6 < 50",
        "balance after restart: 0",
    ]


# llm area
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_llm_example_answers_offline_after_a_retry_and_accounts_for_it(backend: str) -> None:
    result = run_example("llm_calls.py", backend)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["answer: Paris.", "attempts: 2, outcome: ok, agent: assistant"]
    settled, recorded = lines[2].removeprefix("settled: ").split(", recorded: ")
    assert settled == recorded and settled != "$0.000000"
    assert lines[3] == f"conversation conv-1: 1 call(s), {settled}"

"""The examples run as a user would run them, on both backends."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TESTED = {
    "agent.py",
    "bank.py",
    "fastapi_service.py",
    "llm_calls.py",
    "migration.py",
    "sensors.py",
    "tour.py",
    "trio_service.py",
}


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
        "dead letters: {'crashed': 1, 'deadline': 1}",
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
        "balance after the refusal: 6",
        "crashed: 'alice'",
        "balance after the crash: 0",
    ]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_agent_example_answers_with_its_two_tools_offline(backend: str) -> None:
    result = run_example("agent.py", backend)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "It is sunny, 24 C in Paris; 20 EUR is 21.6 USD.",
        "2 model calls, 373 tokens",
    ]


def test_fastapi_service_serves_a_load_and_its_probes_follow_the_root() -> None:
    result = run_example("fastapi_service.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "ready: ready",
        "2000 requests, 2000 answered",
        f"sum of prices: {2000 * (100 + 5)}",  # "item0".."item9": 5 characters each
        'scraped: understudy_messages_total{actor="catalog",outcome="ok"} 2000.0',
        "after the root gave up: readyz 503 stopped",
        "healthz 503 price 503",
        "the server stopped with an error: True",
    ]


def test_trio_service_serves_on_hypercorn_trio_and_stops_when_the_root_gives_up() -> None:
    result = run_example("trio_service.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "ready: ready",
        "500 greetings, first: 'hello, user0'",
        "the server stopped with the root's error: True",
    ]


def test_a_host_test_client_can_start_the_fastapi_app_twice() -> None:
    import importlib.util

    from starlette.testclient import TestClient

    path = EXAMPLES / "fastapi_service.py"
    spec = importlib.util.spec_from_file_location("fastapi_service", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for _ in range(2):  # each `with` runs the lifespan: the runtime is entered again
        with TestClient(module.app) as client:
            assert client.get("/price/abc").json() == {"item": "abc", "price": 103}
            assert client.get("/runtime/readyz").json()["status"] == "ready"
        assert client.get("/runtime/readyz").status_code == 503  # the runtime exited


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_migration_example_refuses_then_migrates_once(backend: str) -> None:
    result = run_example("migration.py", backend)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "v1: Ada Lovelace <ada@example.org>",
        "refused: field 'name', stored schema {name: str, email: str}",
        "v2: Ada Lovelace <ada@example.org>, tier basic",
        "v2 again, without migrate_state: Ada Lovelace",
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

"""Retry backoff and fallback deadlines in trio's virtual time (``autojump_clock``). trio
only: no module-level anyio mark here."""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

import understudy as us


class Call(us.Request[str], frozen=True):
    pass


class Flaky(us.Actor):
    def __init__(self, failures: list[BaseException], times: list[float]) -> None:
        self.failures = failures
        self.times = times

    async def call(self, msg: Call) -> str:
        self.times.append(trio.current_time())
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


class Hung(us.Actor):
    async def call(self, msg: Call) -> str:
        await trio.sleep(3600)
        return "never"


@pytest.mark.trio
async def test_retries_back_off_exponentially(autojump_clock: trio.testing.MockClock) -> None:
    times: list[float] = []
    failures: list[BaseException] = [ConnectionError(), ConnectionError(), ConnectionError()]
    async with us.Runtime() as rt:
        await rt.start(
            us.Supervisor(
                strategy=us.OneForOne(max_restarts=10, within=60),
                children=[us.Child(lambda: Flaky(failures, times), name="flaky")],
            )
        )
        policy = us.Retry(
            attempts=4, backoff=us.Backoff(1.0, 30.0, factor=2, jitter=0), on=(ConnectionError,)
        )
        assert await rt.ref("flaky").ask(Call(), retry=policy) == "ok"
    gaps = [round(later - earlier, 6) for earlier, later in itertools.pairwise(times)]
    assert gaps == [1.0, 2.0, 4.0]


@pytest.mark.trio
async def test_each_target_of_a_chain_gets_its_slice(
    autojump_clock: trio.testing.MockClock,
) -> None:
    times: list[float] = []
    async with us.Runtime() as rt:
        hung = await rt.spawn(Hung, name="hung", shutdown="brutal_kill")
        backup = await rt.spawn(lambda: Flaky([], times), name="backup")
        start = trio.current_time()
        answer = await us.first_of(hung, backup, each=2.5).ask_with_source(Call(), timeout=60)
        assert answer.name == "backup"
        assert times[0] - start == pytest.approx(2.5)

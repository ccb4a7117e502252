"""Breakers and handler timeouts driven by trio's MockClock (``autojump_clock``): the
runtime's default clock is the event loop's, so virtual time drives them and nothing waits
in real time. trio only: no module-level anyio mark here."""

from __future__ import annotations

import pytest
import trio

import understudy as us


class Boom(Exception):
    pass


class Call(us.Request[str], frozen=True):
    pass


class Flaky(us.Actor):
    def __init__(self, switch: dict[str, bool], calls: list[float]) -> None:
        self.switch = switch
        self.calls = calls

    async def call(self, msg: Call) -> str:
        self.calls.append(trio.current_time())
        if self.switch["fail"]:
            raise Boom
        return "ok"


@pytest.mark.trio
async def test_the_reset_time_passes_in_virtual_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    switch, calls = {"fail": True}, []
    async with us.Runtime() as rt:
        await rt.start(
            us.Supervisor(
                strategy=us.OneForOne(max_restarts=100, within=1.0),
                children=[
                    us.Child(
                        lambda: Flaky(switch, calls),
                        name="svc",
                        breaker=us.Breaker(failures=2, reset_after=30, jitter=0, factor=2),
                    )
                ],
            )
        )
        svc = rt.ref("svc")
        for _ in range(2):
            with pytest.raises(Boom):
                await svc.ask(Call())
        opened = trio.current_time()
        with pytest.raises(us.CircuitOpen) as caught:
            await svc.ask(Call())
        assert caught.value.retry_after == pytest.approx(30.0)
        await trio.sleep(caught.value.retry_after)  # 30 virtual seconds
        assert rt.breaker("svc").state == "half_open"
        with pytest.raises(Boom):
            await svc.ask(Call())  # the trial fails: 60 s this time
        with pytest.raises(us.CircuitOpen) as caught:
            await svc.ask(Call())
        assert caught.value.retry_after == pytest.approx(60.0)
        await trio.sleep(60.0)
        switch["fail"] = False
        assert await svc.ask(Call()) == "ok"
        assert await svc.ask(Call()) == "ok"
        assert rt.breaker("svc").state == "closed"
        assert trio.current_time() - opened == pytest.approx(90.0)


@pytest.mark.trio
async def test_a_standalone_breaker_uses_the_mock_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker = us.Breaker(failures=1, reset_after=10, jitter=0)

    @breaker
    async def dependency() -> None:
        raise Boom

    with pytest.raises(Boom):
        await dependency()
    assert breaker.state == "open"
    await trio.sleep(9.9)
    assert breaker.state == "open"
    await trio.sleep(0.1)
    assert breaker.state == "half_open"

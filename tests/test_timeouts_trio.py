"""Time limits in trio's virtual time (``autojump_clock``): minutes pass in no time, and
the assertions can be exact. trio only: no module-level anyio mark here."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import understudy as us


class Stream(us.Request[int], frozen=True):
    chunks: int
    every: float
    stall_after: int = -1


class Llm(us.Actor):
    """Streams ``chunks`` chunks ``every`` seconds apart, beating after each; stalls for
    an hour after ``stall_after`` chunks."""

    async def stream(self, msg: Stream) -> int:
        for n in range(msg.chunks):
            if n == msg.stall_after:
                await trio.sleep(3600)
            await trio.sleep(msg.every)
            self.ctx.heartbeat()
        return msg.chunks


@pytest.mark.trio
async def test_a_streaming_call_runs_for_minutes_and_a_stall_is_stopped_in_seconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with us.Runtime() as rt:
        await rt.start(
            us.Supervisor(
                strategy=us.OneForOne(max_restarts=10, within=60),
                children=[us.Child(Llm, name="llm", idle_timeout=5.0, timeout=900.0)],
            )
        )
        llm = rt.ref("llm")
        start = trio.current_time()
        assert await llm.ask(Stream(chunks=300, every=1.0)) == 300  # five minutes
        assert trio.current_time() - start == pytest.approx(300.0)
        start = trio.current_time()
        with pytest.raises(us.IdleTimeout):
            await llm.ask(Stream(chunks=300, every=1.0, stall_after=10))
        # Ten chunks, then five seconds of silence.
        assert trio.current_time() - start == pytest.approx(15.0)


@pytest.mark.trio
async def test_the_run_timeout_bounds_even_a_beating_handler(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with us.Runtime() as rt:
        llm = await rt.spawn(Llm, idle_timeout=5.0, timeout=60.0)
        start = trio.current_time()
        with pytest.raises(us.HandlerTimeout):
            await llm.ask(Stream(chunks=300, every=1.0))
        assert trio.current_time() - start == pytest.approx(60.0)

"""Deadlines in trio's virtual time (``autojump_clock``). trio only: no module-level
anyio mark here."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import understudy as us


class Probe(us.Request[str], frozen=True):
    pass


class Hop(us.Actor):
    """Asks the next hop (no timeout of its own); the last one sleeps for a minute."""

    def __init__(self, next_hop: us.Ref | None, seen: list[tuple[str, float]]) -> None:
        self.next_hop = next_hop
        self.seen = seen

    async def probe(self, msg: Probe) -> str:
        self.seen.append((self.ctx.name, self.ctx.time_left()))
        if self.next_hop is None:
            await trio.sleep(60)
            return "too late"
        return await self.next_hop.ask(Probe())


@pytest.mark.trio
async def test_the_outer_deadline_ends_every_hop_of_the_chain(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[tuple[str, float]] = []
    async with us.Runtime() as rt:
        next_hop: us.Ref | None = None
        for n in reversed(range(4)):
            next_hop = await rt.spawn(lambda hop=next_hop: Hop(hop, seen), name=f"hop{n}")
        assert next_hop is not None
        start = trio.current_time()
        with pytest.raises(us.DeadlineExceeded):
            await next_hop.ask(Probe(), timeout=10.0)
        assert trio.current_time() - start == pytest.approx(10.0)
    assert [name for name, _ in seen] == ["hop0", "hop1", "hop2", "hop3"]
    assert all(left == pytest.approx(10.0) for _, left in seen)


class Hold(us.Request[str], frozen=True):
    seconds: float


class Job(us.Message, frozen=True):
    pass


class Busy(us.Actor):
    def __init__(self, ran: list[str]) -> None:
        self.ran = ran

    async def hold(self, msg: Hold) -> str:
        await trio.sleep(msg.seconds)
        return "held"

    async def job(self, msg: Job) -> None:
        self.ran.append("job")


@pytest.mark.trio
async def test_a_tell_inside_a_budget_expires_in_a_busy_mailbox(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ran: list[str] = []
    async with us.Runtime() as rt:
        busy = await rt.spawn(lambda: Busy(ran), name="busy")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(busy.ask, Hold(30))
            await trio.sleep(1)
            async with rt.budget(seconds=5):
                await busy.tell(Job())  # queued behind a 30 s handler, 5 s to live
            assert "busy" in rt
        assert ran == []
        assert rt.dead_letters.counts["expired"] == 1

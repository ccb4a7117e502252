"""Pools: N supervised workers behind one name, routed at the sender."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

import understudy as us
from tests.helpers import Probe


class Work(us.Request[int], frozen=True):
    seconds: float = 0.0
    key: str = ""


class Crash(us.Request[None], frozen=True):
    pass


class Note(us.Message, frozen=True):
    key: str
    n: int


class Worker(us.Actor):
    instances = 0

    def __init__(self, probe: Probe | None = None) -> None:
        Worker.instances += 1
        self.me = Worker.instances
        self.probe = probe

    async def work(self, msg: Work) -> int:
        if msg.seconds:
            await anyio.sleep(msg.seconds)
        return id(self.ctx._cell)

    async def crash(self, msg: Crash) -> None:
        raise RuntimeError("boom")

    async def note(self, msg: Note) -> None:
        assert self.probe is not None
        self.probe.record((msg.key, msg.n, id(self.ctx._cell)))


@pytest.mark.anyio
async def test_a_pool_spreads_concurrent_asks_over_its_workers() -> None:
    async with us.Runtime() as rt:
        pool = await rt.spawn_pool(Worker, name="work", size=4)
        assert rt.ref("work") == pool
        served: list[int] = []

        async def one() -> None:
            served.append(await pool.ask(Work(0.05)))

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(one)
        assert len(set(served)) == 4  # all four workers served (speed: bench/pools.py)


@pytest.mark.anyio
async def test_a_pool_is_a_child_spec_and_round_robin_visits_every_worker() -> None:
    async with us.Runtime() as rt:
        await rt.start(
            us.Supervisor(children=[us.Pool(Worker, name="rr", size=3, routing="round_robin")])
        )
        pool = rt.ref("rr")
        assert isinstance(pool, us.PoolRef) and pool.size == 3
        seen = [await pool.ask(Work()) for _ in range(6)]
        assert seen[:3] == seen[3:] and len(set(seen)) == 3


@pytest.mark.anyio
async def test_by_key_sends_one_key_to_one_worker_in_order() -> None:
    probe = Probe()
    async with us.Runtime() as rt:
        pool = await rt.spawn_pool(
            lambda: Worker(probe), name="keyed", size=4, routing="by_key", key=lambda m: m.key
        )
        for n in range(20):
            for key in ("a", "b", "c", "d", "e"):
                await pool.tell(Note(key, n))
        items = await probe.wait_for(100)
    for key in "abcde":
        mine = [(n, cell) for k, n, cell in items if k == key]
        assert [n for n, _ in mine] == list(range(20))
        assert len({cell for _, cell in mine}) == 1


@pytest.mark.anyio
async def test_a_crashed_worker_is_restarted_and_its_queue_goes_to_the_others() -> None:
    async with us.Runtime() as rt:
        pool = await rt.spawn_pool(Worker, name="crashy", size=2, routing="round_robin")
        results: list[object] = []

        async def ask(msg: us.Request[object]) -> None:
            try:
                results.append(await pool.ask(msg))
            except Exception as exc:
                results.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask, Work(0.05))  # worker A, busy
            await anyio.sleep(0.01)
            tg.start_soon(ask, Crash())  # worker B crashes ...
            await anyio.lowlevel.checkpoint()
            for _ in range(4):
                tg.start_soon(ask, Work())  # ... with work queued behind the crash
        errors = [r for r in results if isinstance(r, Exception)]
        assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
        assert len(results) == 6  # nothing lost: every other ask was answered
        assert pool.size == 2
        text = rt.metrics.exposition()
        assert 'understudy_pool_workers{pool="crashy"} 2.0' in text
        assert 'understudy_restarts_total{actor="crashy",reason="failed"} 1.0' in text


@pytest.mark.anyio
async def test_the_pool_breaker_counts_failures_of_any_worker_and_refuses_at_the_ref() -> None:
    async with us.Runtime() as rt:
        pool = await rt.spawn_pool(
            Worker,
            name="guarded",
            size=3,
            routing="round_robin",
            breaker=us.Breaker(failures=3, reset_after=30.0),
        )
        for _ in range(3):  # one crash on each of three workers
            with pytest.raises(RuntimeError):
                await pool.ask(Crash())
        with pytest.raises(us.CircuitOpen):
            await pool.ask(Work())
        assert any(d.reason == "circuit_open" for d in rt.dead_letters)


@pytest.mark.anyio
async def test_a_pool_grows_on_queue_depth_and_shrinks_when_idle() -> None:
    async with us.Runtime() as rt:
        events = rt.events.subscribe(us.PoolResized)
        pool = await rt.spawn_pool(
            Worker,
            name="elastic",
            size=1,
            min=1,
            max=3,
            scale_above=1.0,
            scale_after=0.05,
            shrink_after=0.1,
            scale_every=0.02,
        )
        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(pool.ask, Work(0.02))
        assert pool.size > 1
        with anyio.fail_after(3):
            while pool.size > 1:
                await anyio.sleep(0.02)
        seen = []
        with anyio.move_on_after(0.05):
            async for event in events:
                seen.append(event)
        assert seen[0].reason == "busy" and seen[0].size == 2
        assert any(e.reason == "idle" for e in seen)
        text = rt.metrics.exposition()
        assert 'understudy_pool_resizes_total{direction="up",pool="elastic"}' in text


@pytest.mark.anyio
async def test_metrics_are_labelled_by_pool_not_by_worker() -> None:
    async with us.Runtime() as rt:
        pool = await rt.spawn_pool(Worker, name="labelled", size=3)
        for _ in range(9):
            await pool.ask(Work())
        text = rt.metrics.exposition()
    assert 'understudy_messages_total{actor="labelled",outcome="ok"} 9.0' in text
    assert "Worker#" not in text


def test_bad_pool_options_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="size must be at least 1"):
        us.Pool(Worker, name="p", size=0)
    with pytest.raises(ValueError, match="size must be at least 1"):
        us.Pool(Worker, name="p", size=-2)
    with pytest.raises(ValueError, match=r"min \(4\) must not be above max \(2\)"):
        us.Pool(Worker, name="p", size=3, min=4, max=2)
    with pytest.raises(TypeError, match="needs key="):
        us.Pool(Worker, name="p", routing="by_key")
    with pytest.raises(ValueError, match="routing must be one of"):
        us.Pool(Worker, name="p", routing="random")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name must be a non-empty str"):
        us.Pool(Worker, name="")
    with pytest.raises(TypeError, match="unknown option"):
        us.Pool(Worker, name="p", colour="red")


@pytest.mark.anyio
async def test_a_stopped_pool_refuses_sends() -> None:
    async with us.Runtime(name_wait=0.05) as rt:
        pool = await rt.spawn_pool(Worker, name="gone", size=2)
        await rt.stop(pool)
        with pytest.raises(us.ActorStopped):
            await pool.ask(Work())
        with pytest.raises(us.UnknownActor):  # the name is free: a name ref finds no holder
            await rt.ref("gone").ask(Work())


@pytest.mark.anyio
async def test_pool_and_entity_families_are_documented_with_their_labels() -> None:
    from tests.test_metrics import documented, parse

    class Say(us.Request[int], frozen=True):
        pass

    class Conv(us.Actor):
        async def say(self, msg: Say) -> int:
            return 1

    async with us.Runtime(metrics=("127.0.0.1", 0)) as rt:
        pool = await rt.spawn_pool(Worker, name="documented", size=2)
        await pool.ask(Work())
        await rt.start(us.Supervisor(children=[us.Entities(Conv, name="conv")]))
        await rt.entity("conv", "a").ask(Say())
        families, _ = parse(rt.metrics.exposition())
    table = documented()
    ours = {
        n: f for n, f in families.items() if n.startswith(("understudy_pool", "understudy_entit"))
    }
    assert len(ours) == 6
    for name, family in ours.items():
        kind, labels, status = table[name]
        assert status in ("exported with a pool", "exported with an entity type"), name
        assert family.type == kind, name
        assert {label for s in family.samples for label in s.labels} == labels, name


@pytest.mark.anyio
async def test_rt_breaker_of_a_pool_name_is_the_pools_breaker() -> None:
    async with us.Runtime() as rt:
        await rt.spawn_pool(Worker, name="b", size=2, breaker=us.Breaker(failures=1))
        assert rt.breaker("b").state == "closed"
        with pytest.raises(RuntimeError):
            await rt.ref("b").ask(Crash())
        assert rt.breaker("b").state == "open"


def test_pool_workers_cannot_be_persistent() -> None:
    with pytest.raises(ValueError, match="cannot be persistent; for state per key use"):
        us.Pool(Worker, name="p", persistent=True)


@pytest.mark.anyio
async def test_a_ref_taken_before_the_pool_restarts_keeps_working() -> None:
    async with us.Runtime() as rt:
        await rt.start(
            us.Supervisor(
                strategy=us.OneForOne(max_restarts=5, within=10),
                children=[us.Pool(Worker, name="phoenix", size=2, max_restarts=0)],
            )
        )
        pool = rt.ref("phoenix")
        with pytest.raises(RuntimeError):
            await pool.ask(Crash())  # more restarts than the pool allows: it fails, is restarted
        with anyio.fail_after(3):
            while True:
                try:
                    await pool.ask(Work())
                    break
                except us.ActorStopped:
                    await anyio.sleep(0.01)
        assert rt.ref("phoenix") == pool and pool.size == 2

"""The chaos toolkit: kills, injected faults and the monkey, reproducible from a seed."""

from __future__ import annotations

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import understudy as us

pytestmark = pytest.mark.anyio


class Work(us.Request[str], frozen=True):
    pass


class Block(us.Request[str], frozen=True):
    pass


class Worker(us.Actor):
    def __init__(self) -> None:
        self.started = anyio.Event()

    async def work(self, msg: Work) -> str:
        return self.ctx.name

    async def block(self, msg: Block) -> str:
        self.started.set()
        await anyio.sleep_forever()
        return "never"


class Other(Worker):
    pass


def tree(*children: us.Child, name: str = "root") -> us.Supervisor:
    return us.Supervisor(
        name=name, strategy=us.OneForOne(max_restarts=1000, within=1.0), children=list(children)
    )


async def chaos_counts(rt: us.Runtime) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{rt.metrics.url}/metrics")).text
    for family in text_string_to_metric_families(text):
        if family.name == "understudy_chaos_faults":
            return {s.labels["kind"]: s.value for s in family.samples if s.name.endswith("_total")}
    return {}


async def test_a_killed_supervised_actor_is_restarted_and_the_kill_is_seen_everywhere() -> None:
    async with us.Runtime(metrics=("127.0.0.1", 0)) as rt:
        await rt.start(tree(us.Child(Worker, name="w")))
        chaos = us.Chaos(rt, seed=1)
        with rt.events.subscribe(us.FaultInjected, us.ChildRestarted) as events:
            assert await chaos.kill("w") is True
            with anyio.fail_after(5):
                assert await rt.ref("w").ask(Work()) == "w"
                seen = [await events.__anext__(), await events.__anext__()]
        fault, restart = seen
        assert isinstance(fault, us.FaultInjected)
        assert (fault.actor, fault.kind) == ("w", "kill")
        assert isinstance(restart, us.ChildRestarted)
        assert (restart.actor, restart.reason) == ("w", "killed")
        assert isinstance(restart.error, us.Killed)
        assert chaos.counts["kill"] == 1
        assert (await chaos_counts(rt))["kill"] == 1.0


async def test_a_kill_inside_a_handler_fails_its_asker_with_killed() -> None:
    instances: list[Worker] = []

    def make() -> Worker:
        instances.append(Worker())
        return instances[-1]

    async with us.Runtime() as rt:
        await rt.start(tree(us.Child(make, name="w")))
        chaos = us.Chaos(rt, seed=1)
        async with anyio.create_task_group() as tg:
            outcome: list[BaseException] = []

            async def ask_blocking() -> None:
                try:
                    await rt.ref("w").ask(Block())
                except us.Killed as error:
                    outcome.append(error)

            tg.start_soon(ask_blocking)
            with anyio.fail_after(5):
                await instances[-1].started.wait()
                await chaos.kill("w")
        assert len(outcome) == 1
        with anyio.fail_after(5):
            assert await rt.ref("w").ask(Work()) == "w"


async def test_killing_an_unsupervised_actor_stops_it_with_reason_killed() -> None:
    async with us.Runtime() as rt:
        ref = await rt.spawn(Worker, name="lone")
        chaos = us.Chaos(rt, seed=1)
        with rt.events.subscribe(us.ActorTerminated) as events:
            await chaos.kill(ref)
            with anyio.fail_after(5):
                event = await events.__anext__()
        assert (event.actor, event.reason) == ("lone", "killed")
        assert "lone" not in rt
        assert await chaos.kill(ref) is False


async def test_kill_random_is_reproducible_from_the_seed_and_honours_filters() -> None:
    async def draw(seed: int) -> list[list[str]]:
        async with us.Runtime() as rt:
            await rt.start(
                tree(
                    *[us.Child(Worker, name=f"w{i}") for i in range(6)],
                    *[us.Child(Other, name=f"o{i}") for i in range(3)],
                )
            )
            chaos = us.Chaos(rt, seed=seed)
            picks = []
            for _ in range(3):
                picks.append(await chaos.kill_random(2))
                for i in range(6):
                    await rt.ref(f"w{i}").ask(Work())  # wait for every restart
                for i in range(3):
                    await rt.ref(f"o{i}").ask(Work())
            picks.append(await chaos.kill_random(5, actor_class=Other))
            picks.append(await chaos.kill_random(1, name="w[45]"))
            return picks

    first, again, other = await draw(7), await draw(7), await draw(8)
    assert first == again
    assert first != other
    assert all(len(pick) == 2 for pick in first[:3])
    assert sorted(first[3]) == ["o0", "o1", "o2"]  # capped at the 3 that match
    assert first[4][0] in ("w4", "w5")
    assert not any(name == "root" for pick in first for name in pick)  # supervisors spared


async def test_kill_random_within_a_subtree() -> None:
    async with us.Runtime() as rt:
        await rt.start(
            tree(
                us.Child(Worker, name="outside"),
                tree(us.Child(Worker, name="in1"), us.Child(Worker, name="in2"), name="sub"),
            )
        )
        chaos = us.Chaos(rt, seed=3)
        killed = await chaos.kill_random(10, subtree=rt.ref("sub"))
        assert sorted(killed) == ["in1", "in2"]


async def test_injected_exceptions_fail_the_handler_until_cancelled() -> None:
    async with us.Runtime() as rt:
        await rt.start(tree(us.Child(Worker, name="w")))
        chaos = us.Chaos(rt, seed=1)
        fault = chaos.inject("w", ConnectionError("tool is down"))
        for _ in range(3):
            with pytest.raises(ConnectionError, match="tool is down"):
                await rt.ref("w").ask(Work())
        fault.cancel()
        assert await rt.ref("w").ask(Work()) == "w"
        assert chaos.counts["exception"] == 3
        # A ConnectionError is one of the default answers: the asker got it, no crash.
        assert rt.dead_letters.counts.get("crashed", 0) == 0
        assert rt.tree()[0].children[0].restarts == 0


async def test_an_injected_fault_with_a_count_fires_that_many_times() -> None:
    async with us.Runtime() as rt:
        await rt.start(tree(us.Child(Worker, name="w")))
        chaos = us.Chaos(rt, seed=1)
        chaos.inject("w", count=2)
        outcomes = []
        for _ in range(4):
            try:
                outcomes.append(await rt.ref("w").ask(Work()))
            except us.InjectedFault:
                outcomes.append("fault")
        assert outcomes == ["fault", "fault", "w", "w"]


async def test_probabilistic_faults_replay_with_the_same_seed() -> None:
    async def outcomes(seed: int) -> list[str]:
        async with us.Runtime() as rt:
            await rt.start(tree(us.Child(Worker, name="w")))
            chaos = us.Chaos(rt, seed=seed)
            chaos.inject("w", probability=0.5)
            result = []
            for _ in range(30):
                try:
                    result.append(await rt.ref("w").ask(Work()))
                except us.InjectedFault:
                    result.append("fault")
            return result

    first = await outcomes(11)
    assert first == await outcomes(11)
    assert 0 < first.count("fault") < 30


async def test_delay_and_hang_make_asks_time_out_and_a_kill_frees_a_hung_actor() -> None:
    async with us.Runtime() as rt:
        await rt.start(tree(us.Child(Worker, name="slow"), us.Child(Worker, name="stuck")))
        chaos = us.Chaos(rt, seed=1)
        chaos.delay("slow", 30.0)
        hang = chaos.hang("stuck")
        with pytest.raises(TimeoutError):
            await rt.ref("slow").ask(Work(), timeout=0.05)
        with pytest.raises(TimeoutError):
            await rt.ref("stuck").ask(Work(), timeout=0.05)
        assert (chaos.counts["delay"], chaos.counts["hang"]) == (1, 1)
        hang.cancel()
        await chaos.kill("stuck")
        with anyio.fail_after(5):
            assert await rt.ref("stuck").ask(Work()) == "stuck"
        chaos.clear()
        await chaos.kill("slow")
        with anyio.fail_after(5):
            assert await rt.ref("slow").ask(Work()) == "slow"


async def test_the_monkey_kills_and_injects_and_every_permanent_child_comes_back() -> None:
    names = [f"w{i}" for i in range(5)]
    async with us.Runtime() as rt:
        await rt.start(tree(*[us.Child(Worker, name=n) for n in names]))
        chaos = us.Chaos(rt, seed=5)
        with anyio.fail_after(10):
            async with chaos.monkey(kill_rate=400, inject_rate=200, duration=0.3):
                await anyio.sleep(0.5)
            served = [await rt.ref(name).ask(Work()) for name in names]
        assert served == names
        assert chaos.counts["kill"] + chaos.counts["exception"] > 0


async def test_bad_chaos_input_is_refused_with_clear_errors() -> None:
    async with us.Runtime() as rt:
        await rt.start(tree(us.Child(Worker, name="w")))
        chaos = us.Chaos(rt, seed=1)
        with pytest.raises(ValueError, match=r"probability must be in \[0, 1\]"):
            chaos.inject("w", probability=2)
        with pytest.raises(ValueError, match="k must be an int >= 0"):
            await chaos.kill_random(-1)
        with pytest.raises(TypeError, match="name must be a glob pattern"):
            await chaos.kill_random(1, name=3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="actor_class must be an Actor subclass"):
            await chaos.kill_random(1, actor_class=int)  # type: ignore[arg-type]
        with pytest.raises(us.UnknownActor, match="'nobody'"):
            await chaos.kill("nobody")
        with pytest.raises(TypeError, match="must be an exception"):
            chaos.inject("w", "boom")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="kill_rate"):
            async with chaos.monkey(kill_rate=-1):
                pass
        with pytest.raises(TypeError, match="seed"):
            us.Chaos(rt, seed="x")  # type: ignore[arg-type]


async def test_a_runtime_without_chaos_exports_no_chaos_metric() -> None:
    async with us.Runtime(metrics=("127.0.0.1", 0)) as rt:
        await rt.spawn(Worker, name="w")
        assert await chaos_counts(rt) == {}

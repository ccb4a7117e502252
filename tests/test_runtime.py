"""The runtime: spawning, names, stopping, graceful shutdown, dead letters, closed use."""

import functools
import math

import anyio
import msgspec
import pytest
from helpers import GUARD, Probe, running_task_ids

import understudy as us

pytestmark = pytest.mark.anyio


class Job(us.Message, frozen=True):
    n: int


class Slow(us.Message, frozen=True):
    """Handled until the runtime starts shutting down (then it finishes)."""


class Hang(us.Request[str], frozen=True):
    """Handled never: the handler waits forever."""


class Ping(us.Request[str], frozen=True):
    pass


class Tick(us.Message, frozen=True):
    pass


class Worker(us.Actor):
    class State(msgspec.Struct):
        jobs: list[int] = msgspec.field(default_factory=list)

    def __init__(self, probe: Probe, rt: us.Runtime | None = None) -> None:
        self.probe = probe
        self.rt = rt

    async def job(self, msg: Job) -> None:
        self.state.jobs.append(msg.n)
        self.probe.record(msg.n)

    async def slow(self, msg: Slow) -> None:
        self.probe.record("slow started")
        assert self.rt is not None
        # The runtime offers no event for "shutdown began": poll for it.
        while not self.rt.shutting_down:
            await anyio.sleep(0.001)
        await anyio.sleep(0.001)  # still busy after the stop request arrived
        self.probe.record("slow finished")

    async def hang(self, msg: Hang) -> str:
        self.probe.record("hanging")
        await anyio.sleep_forever()
        return "never"

    async def ping(self, msg: Ping) -> str:
        return "pong"

    async def tick(self, msg: Tick) -> None:
        self.probe.record("tick")

    async def on_stop(self) -> None:
        self.probe.record("on_stop")


def worker(probe: Probe, rt: us.Runtime | None = None) -> functools.partial[Worker]:
    return functools.partial(Worker, probe, rt)


# -- spawn and names --


async def test_a_named_actor_is_found_by_name_while_it_runs() -> None:
    async with us.Runtime() as rt:
        ref = await rt.spawn(worker(Probe()), name="w")
        # spawn's ref follows the identity; rt.ref's follows the name.
        assert (ref.bound_to, rt.ref("w").bound_to) == ("identity", "name")
        assert rt.ref("w") == rt.ref("w")
        assert rt.ref("w") != ref
        assert rt.ref("w").name == ref.name == "w"
        assert "w" in rt
        assert repr(ref) == "<Ref w>"
        assert await rt.ref("w").ask(Ping(), timeout=GUARD) == "pong"


async def test_unnamed_actors_get_distinct_ids() -> None:
    async with us.Runtime() as rt:
        first = await rt.spawn(worker(Probe()))
        second = await rt.spawn(worker(Probe()))
    assert first.name != second.name
    assert first.name.startswith("Worker#")
    assert first.name not in rt


async def test_a_send_to_a_name_nobody_takes_raises_unknown_actor_after_a_bounded_wait() -> None:
    async with us.Runtime(name_wait=0.05) as rt:
        ghost = rt.ref("ghost")  # never blocks, never raises: the name may come
        with pytest.raises(us.UnknownActor, match=r"'ghost'.*waited 0.05 s"):
            await ghost.tell(Ping())
        with pytest.raises(us.UnknownActor, match="'ghost'"):
            await ghost.ask(Ping())
        with pytest.raises(us.DeadlineExceeded, match="'ghost'"):
            await ghost.ask(Ping(), timeout=0.02)  # the ask's deadline bounds the wait
        ref = await rt.spawn(worker(Probe()), name="gone")
        await rt.stop(ref)
        with pytest.raises(us.UnknownActor, match="'gone'"):
            await rt.ref("gone").tell(Ping())
        assert rt.dead_letters.counts["unknown_actor"] == 3
        assert rt.dead_letters.counts["expired"] == 1


async def test_a_taken_name_raises_name_taken_until_its_actor_stops() -> None:
    async with us.Runtime() as rt:
        first = await rt.spawn(worker(Probe()), name="alice")
        with pytest.raises(us.NameTaken, match=r"'alice' is already running \(Worker\)"):
            await rt.spawn(worker(Probe()), name="alice")
        by_name = rt.ref("alice")
        assert by_name.live() is first._cell
        assert await first.ask(Ping(), timeout=GUARD) == "pong"
        await rt.stop(first)
        second = await rt.spawn(worker(Probe()), name="alice")
        assert second != first
        assert by_name.live() is second._cell  # the name ref follows the name


async def test_name_taken_is_also_a_value_error() -> None:
    async with us.Runtime() as rt:
        await rt.spawn(worker(Probe()), name="x")
        with pytest.raises(ValueError, match="'x'"):
            await rt.spawn(worker(Probe()), name="x")


@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        ("", ValueError, "must not be empty"),
        (7, TypeError, "must be a str, not 7"),
        ("\ud800", ValueError, "cannot be encoded to UTF-8"),
        ("a\x1b[31mred", ValueError, "unprintable character"),
        ("x" * 256, ValueError, "at most 255 characters, not 256"),
    ],
)
async def test_a_bad_name_is_refused(name: object, error: type[Exception], match: str) -> None:
    async with us.Runtime(store=None) as rt:
        with pytest.raises(error, match=match):
            await rt.spawn(worker(Probe()), name=name)  # type: ignore[arg-type]
        with pytest.raises(error, match=match):
            rt.ref(name)  # type: ignore[arg-type]
        assert await rt.spawn(worker(Probe()), name="x" * 255)
        assert rt.tree()[0].name == "x" * 255  # nothing of the refused spawns is left


async def test_spawning_something_that_is_not_an_actor_is_refused() -> None:
    async with us.Runtime() as rt:
        with pytest.raises(TypeError, match=r"Probe is not an understudy\.Actor subclass"):
            await rt.spawn(Probe)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="returned 42, not an Actor"):
            await rt.spawn(lambda: 42)  # type: ignore[arg-type, return-value]
        with pytest.raises(TypeError, match="expected an Actor subclass or a factory"):
            await rt.spawn("Worker")  # type: ignore[arg-type]


@pytest.mark.parametrize("shutdown", [-1, math.nan])
async def test_a_negative_shutdown_time_is_refused(shutdown: float) -> None:
    async with us.Runtime() as rt:
        with pytest.raises(ValueError, match="shutdown must be >= 0 seconds"):
            await rt.spawn(worker(Probe()), shutdown=shutdown)


# -- rt.stop --


async def test_stop_finishes_the_current_message_runs_on_stop_and_dead_letters_the_rest() -> None:
    probe = Probe()
    async with us.Runtime() as rt:
        ref = await rt.spawn(worker(probe, rt), name="w")
        await ref.tell(Job(1))
        assert await ref.ask(Ping(), timeout=GUARD) == "pong"
        await ref.tell(Job(2))
        await ref.tell(Job(3))
        await rt.stop(ref)
        assert "w" not in rt
        assert probe.items == [1, "on_stop"]
        letters = [(letter.message, letter.reason) for letter in rt.dead_letters]
    assert letters == [(Job(2), "stopped"), (Job(3), "stopped")]


async def test_stop_of_a_stopped_actor_returns_at_once() -> None:
    probe = Probe()
    async with us.Runtime() as rt:
        ref = await rt.spawn(worker(probe))
        await rt.stop(ref)
        with anyio.fail_after(GUARD):
            await rt.stop(ref)
    assert probe.items == ["on_stop"]


async def test_stop_kills_an_actor_that_does_not_finish_within_the_timeout() -> None:
    probe = Probe()
    async with us.Runtime() as rt:
        with rt.events.subscribe(us.ActorTerminated) as events:
            ref = await rt.spawn(worker(probe), name="stuck")
            async with anyio.create_task_group() as tg:

                async def asker() -> None:
                    with pytest.raises(us.Killed, match="'stuck'"):
                        await ref.ask(Hang(), timeout=GUARD)

                tg.start_soon(asker)
                await probe.wait_for(1)
                await rt.stop(ref, timeout=0.01)
            ended = events.get_nowait()
    assert isinstance(ended, us.ActorTerminated)
    assert ended.reason == "killed"
    assert isinstance(ended.error, us.Killed)
    assert probe.items == ["hanging"]  # a killed actor's on_stop does not run


@pytest.mark.parametrize("timeout", [0, -1, math.nan])
async def test_stop_refuses_a_non_positive_timeout(timeout: float) -> None:
    async with us.Runtime() as rt:
        ref = await rt.spawn(worker(Probe()), name="w")
        with pytest.raises(ValueError, match=r"stop\('w'\): timeout must be positive"):
            await rt.stop(ref, timeout=timeout)
        assert await ref.ask(Ping(), timeout=GUARD) == "pong"


async def test_stop_refuses_something_that_is_not_a_ref() -> None:
    async with us.Runtime() as rt:
        with pytest.raises(TypeError, match="expected a Ref"):
            await rt.stop("w")  # type: ignore[arg-type]


# -- stopped actors --


async def test_ask_to_a_stopped_actor_raises_actor_stopped() -> None:
    async with us.Runtime() as rt:
        ref = await rt.spawn(worker(Probe()), name="w")
        await rt.stop(ref)
        with pytest.raises(us.ActorStopped, match="'w' has stopped"):
            await ref.ask(Ping(), timeout=GUARD)
        [letter] = list(rt.dead_letters)
    assert (letter.message, letter.reason, letter.actor) == (Ping(), "stopped", "w")


async def test_tell_to_a_stopped_actor_becomes_a_dead_letter() -> None:
    async with us.Runtime() as rt:
        ref = await rt.spawn(worker(Probe()), name="w")
        await rt.stop(ref)
        await ref.tell(Job(1))
        [letter] = list(rt.dead_letters)
    assert (letter.message, letter.reason, letter.actor) == (Job(1), "stopped", "w")
    assert letter.correlation_id


# -- graceful shutdown --


async def test_leaving_the_runtime_lets_the_current_message_finish_and_runs_on_stop() -> None:
    probe = Probe()
    async with us.Runtime() as rt:
        ref = await rt.spawn(worker(probe, rt), name="w")
        await ref.tell(Slow())
        await probe.wait_for(1)
        for n in range(3):
            await ref.tell(Job(n))
    assert probe.items == ["slow started", "slow finished", "on_stop"]
    letters = [(letter.message, letter.reason) for letter in rt.dead_letters]
    assert letters == [(Job(0), "shutdown"), (Job(1), "shutdown"), (Job(2), "shutdown")]
    assert rt.dead_letters.counts == {"shutdown": 3}


async def test_leaving_the_runtime_stops_actors_newest_first() -> None:
    probe = Probe()

    class Named(Worker):
        async def on_stop(self) -> None:
            self.probe.record(self.ctx.name)

    async with us.Runtime() as rt:
        for name in ("a", "b", "c"):
            await rt.spawn(functools.partial(Named, probe), name=name)
    assert probe.items == ["c", "b", "a"]


async def test_no_task_is_left_running_after_the_runtime_exits() -> None:
    probe = Probe()

    class Busy(Worker):
        async def on_start(self) -> None:
            self.ctx.schedule_every(0.005, Tick())
            self.ctx.schedule(60, Tick())
            await self.ctx.spawn(worker(Probe()))

    before = running_task_ids()
    with anyio.fail_after(GUARD):
        async with us.Runtime() as rt:
            for _ in range(3):
                await rt.spawn(functools.partial(Busy, probe))
            await probe.wait_until(lambda items: items.count("tick") >= 3)
            assert running_task_ids() > before
    assert running_task_ids() == before
    ticks = probe.items.count("tick")
    await anyio.sleep(0.02)
    assert probe.items.count("tick") == ticks


async def test_an_exception_in_the_body_still_shuts_down_gracefully_and_propagates() -> None:
    probe = Probe()

    async def body() -> None:
        async with us.Runtime() as rt:
            ref = await rt.spawn(worker(probe))
            await ref.tell(Job(1))
            assert await ref.ask(Ping(), timeout=GUARD) == "pong"
            raise KeyError("body failed")

    with pytest.raises(KeyError, match="body failed"):
        await body()
    assert probe.items == [1, "on_stop"]


async def test_cancelling_the_host_still_shuts_down_gracefully() -> None:
    probe = Probe()
    with anyio.fail_after(GUARD), anyio.CancelScope() as host:
        async with us.Runtime() as rt:
            ref = await rt.spawn(worker(probe, rt), name="w")
            await ref.tell(Slow())
            await probe.wait_for(1)
            await ref.tell(Job(1))
            host.cancel()
            await anyio.sleep_forever()
    assert host.cancelled_caught
    assert probe.items == ["slow started", "slow finished", "on_stop"]
    assert rt.dead_letters.counts == {"shutdown": 1}


async def test_cancelling_the_host_during_a_spawn_cancels_the_start() -> None:
    probe = Probe()

    class NeverReady(Worker):
        async def on_start(self) -> None:
            self.probe.record("starting")
            await anyio.sleep_forever()

    before = running_task_ids()
    with anyio.fail_after(GUARD), anyio.move_on_after(0.01) as host:
        async with us.Runtime() as rt:
            await rt.spawn(functools.partial(NeverReady, probe), name="never")
    assert host.cancelled_caught
    assert probe.items == ["starting"]
    assert running_task_ids() == before


async def test_an_actor_that_ignores_shutdown_is_killed_after_its_shutdown_time() -> None:
    probe = Probe()
    with anyio.fail_after(GUARD):
        async with us.Runtime() as rt:
            ref = await rt.spawn(worker(probe), shutdown=0.01)
            await ref.tell(Hang())
            await probe.wait_for(1)
    assert probe.items == ["hanging"]


def test_a_runtime_can_be_entered_again_once_it_exited_but_not_while_it_runs() -> None:
    async def main() -> None:
        rt = us.Runtime()
        async with rt:
            pass
        async with rt:  # a host's lifespan started again (issue 11: a test client, twice)
            with pytest.raises(RuntimeError, match="already running"):
                async with rt:
                    pass
            assert not rt.closed

    anyio.run(main)


# -- after the runtime exited --


async def test_a_ref_used_after_the_runtime_exited_raises_runtime_closed() -> None:
    async with us.Runtime() as rt:
        ref = await rt.spawn(worker(Probe()), name="w")
    with pytest.raises(us.RuntimeClosed, match=r"'w'.*exited"):
        await ref.tell(Job(1))
    with pytest.raises(us.RuntimeClosed, match=r"'w'.*exited"):
        await ref.ask(Ping(), timeout=GUARD)
    assert rt.dead_letters.total == 0


async def test_the_runtime_used_after_it_exited_raises_runtime_closed() -> None:
    async with us.Runtime() as rt:
        ref = await rt.spawn(worker(Probe()), name="w")
    with pytest.raises(us.RuntimeClosed):
        await rt.spawn(worker(Probe()))
    with pytest.raises(us.RuntimeClosed):
        rt.ref("w")
    with pytest.raises(us.RuntimeClosed):
        await rt.stop(ref)


async def test_spawning_before_entering_the_runtime_raises_runtime_closed() -> None:
    rt = us.Runtime()
    with pytest.raises(us.RuntimeClosed, match="not running"):
        await rt.spawn(worker(Probe()))
    with pytest.raises(us.RuntimeClosed, match="not running"):
        rt.ref("w")


# -- dead letters --


async def test_the_dead_letter_ring_keeps_the_newest_and_counts_them_all() -> None:
    async with us.Runtime(dead_letter_capacity=5) as rt:
        ref = await rt.spawn(worker(Probe()))
        await rt.stop(ref)
        for n in range(12):
            await ref.tell(Job(n))
        with pytest.raises(us.ActorStopped):
            await ref.ask(Ping(), timeout=GUARD)
    assert len(rt.dead_letters) == 5
    assert [letter.message for letter in rt.dead_letters] == [Job(n) for n in range(8, 12)] + [
        Ping()
    ]
    assert rt.dead_letters.counts == {"stopped": 13}
    assert rt.dead_letters.total == 13


async def test_dead_letters_are_counted_by_reason() -> None:
    async with us.Runtime() as rt:
        probe = Probe()
        stopped = await rt.spawn(worker(probe))
        await rt.stop(stopped)
        await stopped.tell(Job(1))
        await stopped.tell(Job(2))
        strict = await rt.spawn(worker(probe, rt), capacity=1, overflow="fail")
        await strict.tell(Slow())
        await probe.wait_until(lambda items: "slow started" in items)
        await strict.tell(Job(3))
        with pytest.raises(us.MailboxFull):
            await strict.tell(Job(4))
    assert rt.dead_letters.counts == {"stopped": 2, "mailbox_full": 1, "shutdown": 1}
    assert rt.dead_letters.total == 4


@pytest.mark.parametrize("capacity", [0, -1, 1.5])
def test_a_bad_dead_letter_capacity_is_refused(capacity: object) -> None:
    with pytest.raises((ValueError, TypeError), match="dead_letter_capacity"):
        us.Runtime(dead_letter_capacity=capacity)  # type: ignore[arg-type]


# -- us.run --


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_returns_what_main_returns(backend: str) -> None:
    async def main(amount: int) -> int:
        async with us.Runtime() as rt:
            ref = await rt.spawn(worker(Probe()))
            await ref.tell(Job(amount))
            return len(await ref.ask(Ping(), timeout=GUARD)) + amount

    assert us.run(main, 10, backend=backend) == 14  # type: ignore[arg-type]


def test_run_refuses_an_unknown_backend() -> None:
    async def main() -> None: ...

    with pytest.raises(ValueError, match="backend must be 'asyncio' or 'trio'"):
        us.run(main, backend="curio")  # type: ignore[arg-type]


class StopYourself(us.Request[None], frozen=True):
    pass


class SelfStopper(us.Actor):
    def __init__(self, rt: us.Runtime) -> None:
        self.rt = rt

    async def stop_me(self, msg: StopYourself) -> None:
        await self.rt.stop(self.ctx.self_ref)


async def test_an_actor_calling_rt_stop_on_itself_is_told_to_use_ctx_stop() -> None:
    import functools

    async with us.Runtime() as rt:
        ref = await rt.spawn(functools.partial(SelfStopper, rt), name="selfish")
        with pytest.raises(RuntimeError, match=r"use self\.ctx\.stop\(\)"):
            await ref.ask(StopYourself())


class KeepContext(us.Request[us.Context], frozen=True):
    pass


class ContextLeaker(us.Actor):
    async def leak(self, msg: KeepContext) -> us.Context:
        return self.ctx


async def test_a_context_outliving_its_instance_cannot_start_timers() -> None:
    async with us.Runtime() as rt:
        ref = await rt.spawn(ContextLeaker, name="leaker")
        ctx = await ref.ask(KeepContext())
        await rt.stop(ref)
        with pytest.raises(us.ActorStopped, match=r"'leaker'.*instance has ended"):
            ctx.schedule(0.01, KeepContext())

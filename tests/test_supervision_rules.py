"""Supervision rules behind issues 10 and 12, each checked on both backends.

The OTP case-by-case translation is tests/test_supervision_otp.py; these tests pin the
rules whose breaking was observed (a wedged or crashed supervisor, a copied error text,
an overflowing backoff, a breaker reset by a restart, a spec validated too late).
"""

from __future__ import annotations

import functools
import itertools
import random

import anyio
import pytest

import understudy as us

pytestmark = pytest.mark.anyio


class Crash(us.Message, frozen=True):
    pass


class Call(us.Request[str], frozen=True):
    pass


class Ping(us.Request[int], frozen=True):
    pass


class Boom(Exception):
    pass


_serials = itertools.count(1)


class W(us.Actor):
    """``fail`` (shared, by name) makes starts raise."""

    def __init__(self, fail: set[str], starts: list[str]) -> None:
        self.fail = fail
        self.starts = starts
        self.serial = next(_serials)  # unlike id(), never reused

    async def on_start(self) -> None:
        self.starts.append(self.ctx.name)
        if self.ctx.name in self.fail:
            raise Boom(f"{self.ctx.name} cannot start")

    async def crash(self, msg: Crash) -> None:
        raise RuntimeError("crash")

    async def call(self, msg: Call) -> str:
        raise Boom("dependency down")

    async def ping(self, msg: Ping) -> int:
        return self.serial


def child(fail: set[str], starts: list[str], name: str, **options: object) -> us.Child:
    return us.Child(functools.partial(W, fail, starts), name=name, **options)  # type: ignore[arg-type]


async def test_administration_errors_are_raised_in_the_caller_only() -> None:
    """OTP supervisor(3): start_child / terminate_child reply ``{error, Reason}`` and the
    supervisor carries on. A failed start (the child's exception chained), a name held by an
    actor outside the tree, an unknown child: each raises in the caller; the root, its
    children and its restart intensity are untouched, and the runtime's body runs on."""
    fail, starts = {"bad"}, []
    async with us.Runtime() as rt:
        await rt.spawn(functools.partial(W, fail, starts), name="taken")
        sup = await rt.start(
            us.Supervisor(
                strategy=us.OneForOne(max_restarts=1, within=60),
                children=[child(fail, starts, "a")],
            )
        )
        before = await rt.ref("a").ask(Ping())
        for _ in range(3):
            with pytest.raises(us.ChildStartFailed) as failed:
                await sup.start_child(spec=child(fail, starts, "bad"))
            assert isinstance(failed.value.__cause__, Boom)
        with pytest.raises(us.NameTaken):
            await sup.start_child(spec=child(fail, starts, "taken"))
        with pytest.raises(us.ChildNotFound):
            await sup.terminate_child("nobody")
        with pytest.raises(us.UnknownActor):  # ChildNotFound is an UnknownActor
            await sup.terminate_child("nobody")
        assert await rt.ref("a").ask(Ping()) == before  # untouched
        await rt.ref("a").tell(Crash())  # one restart still within the intensity
        with anyio.fail_after(5):
            while (await sup.which_children())[0].restarts != 1:
                await anyio.sleep(0.001)
        await anyio.sleep(0.01)
        assert [c.state for c in await sup.which_children()] == ["running"]
    assert rt._fatal is None


async def test_a_restart_that_keeps_failing_ends_by_intensity_without_recursion() -> None:
    """OTP (try_again_restart, OTP-9549): every failed restart attempt counts toward the
    intensity and is retried through the supervisor's mailbox: hundreds of failed attempts
    end with the intensity (not a RecursionError), and the supervisor answers meanwhile."""
    fail, starts = set(), []
    async with us.Runtime() as rt:
        sup = await rt.start(
            us.Supervisor(
                strategy=us.OneForOne(max_restarts=700, within=60),
                children=[child(fail, starts, "a")],
            )
        )
        fail.add("a")
        await rt.ref("a").tell(Crash())
        answered = 0
        with anyio.fail_after(30):
            while starts.count("a") < 300:  # answers while the attempts go on
                assert [c.name for c in await sup.which_children()] == ["a"]
                answered += 1
            error = await rt.wait()
        assert answered > 1
        assert isinstance(error, us.RestartIntensityExceeded)
        assert isinstance(error.__cause__, Boom)
        assert starts.count("a") == 701  # the first start, then 700 counted attempts


@pytest.mark.parametrize(("restart", "restarted"), [("transient", False), ("permanent", True)])
async def test_a_supervisor_that_gives_up_exits_shutdown(restart: str, restarted: bool) -> None:
    """OTP supervisor(3): a supervisor that reaches its intensity terminates its children
    and exits with reason shutdown; its parent decides by the child's restart type — a
    transient sub-supervisor is not restarted, a permanent one is."""
    fail, starts = set(), []
    async with us.Runtime() as rt:
        top = await rt.start(us.Supervisor(name="top"))
        with rt.events.subscribe(us.ActorTerminated, us.ChildRestarted) as events:
            await top.start_child(
                spec=us.Supervisor(
                    name="inner",
                    restart=restart,  # type: ignore[arg-type]
                    strategy=us.OneForOne(max_restarts=0),
                    children=[child(fail, starts, "w")],
                )
            )
            await rt.ref("w").tell(Crash())
            # Restarted, it is not terminated (same identity): ChildRestarted says why.
            kind = us.ChildRestarted if restarted else us.ActorTerminated
            with anyio.fail_after(5):
                while True:
                    event = await events.__anext__()
                    if isinstance(event, kind) and event.actor == "inner":
                        break
            assert event.reason == "shutdown"
            assert isinstance(event.error, us.RestartIntensityExceeded)
        with anyio.fail_after(5):
            while (await top.which_child("inner")).state != ("running" if restarted else "stopped"):
                await anyio.sleep(0.001)
        assert starts.count("w") == (2 if restarted else 1)
        assert "top" in rt


async def test_nested_intensity_errors_chain_their_cause_instead_of_copying_it() -> None:
    """issue 12 item 8: a tree 40 deep gives up level after level; each level's
    RestartIntensityExceeded chains the one below as __cause__ and its own text stays
    short."""
    depth = 40
    fail, starts = set(), []
    tree: us.Supervisor | us.Child = child(fail, starts, "leaf")
    for level in range(depth):
        tree = us.Supervisor(
            name=f"s{level}", strategy=us.OneForOne(max_restarts=0), children=[tree]
        )
    assert isinstance(tree, us.Supervisor)
    async with us.Runtime() as rt:
        await rt.start(tree)
        await rt.ref("leaf").tell(Crash())
        with anyio.fail_after(30):
            error = await rt.wait()
    assert isinstance(error, us.RestartIntensityExceeded)
    chain = 0
    cause: BaseException | None = error
    while isinstance(cause, us.RestartIntensityExceeded):
        assert len(str(cause)) < 200
        chain += 1
        cause = cause.__cause__
    assert chain == depth
    assert isinstance(cause, RuntimeError)


def test_backoff_delay_is_capped_without_overflow() -> None:
    """issue 12 item 9: the n-th consecutive restart waits min * factor**n capped at max;
    past a thousand restarts that is still max, not an OverflowError."""
    backoff = us.Backoff(min=0.1, max=30.0, factor=2.0, jitter=0.0)
    rng = random.Random(1)
    assert backoff.delay(0, rng) == 0.1
    assert backoff.delay(3, rng) == pytest.approx(0.8)
    for attempt in (9, 1024, 1025, 10**6):
        assert backoff.delay(attempt, rng) == 30.0
    assert us.Backoff(min=1, max=1, factor=1.5, jitter=0).delay(5000, rng) == 1.0


async def test_concurrent_stops_of_one_supervised_child() -> None:
    """issue 12 item 5: two concurrent rt.stop of one supervised child stop it once; the
    second is a no-op and the supervisor lives on."""
    fail, starts = set(), []
    async with us.Runtime() as rt:
        sup = await rt.start(
            us.Supervisor(children=[child(fail, starts, "a"), child(fail, starts, "b")])
        )
        ref = rt.ref("a")
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(rt.stop, ref)
        assert [(c.name, c.state) for c in await sup.which_children()] == [
            ("a", "stopped"),
            ("b", "running"),
        ]
        assert starts.count("a") == 1
        await rt.stop(ref)  # already stopped: returns at once
    assert rt._fatal is None


def test_child_spawn_options_are_validated_when_the_spec_is_built() -> None:
    """issue 12 item 16: capacity, overflow, persistent and durability of a us.Child are
    checked at construction, with the spec named in the error."""
    with pytest.raises(ValueError, match=r"Child\('W'\).*capacity must be positive"):
        us.Child(W, capacity=0)
    with pytest.raises(TypeError, match="capacity must be a positive int"):
        us.Child(W, capacity="10")
    with pytest.raises(ValueError, match="overflow must be one of"):
        us.Child(W, overflow="spill")
    with pytest.raises(TypeError, match="persistent must be a bool"):
        us.Child(W, persistent="yes")
    with pytest.raises(ValueError, match="durability must be one of"):
        us.Child(W, persistent=True, durability="eventually")
    with pytest.raises(ValueError, match="durability= applies to persistent actors only"):
        us.Child(W, durability="async")
    us.Child(W, capacity=10, overflow="drop_oldest")


async def test_an_open_breaker_survives_its_supervisors_restart() -> None:
    """A breaker belongs to the child's name in its supervisor, not to one instance of the
    supervisor: when sibling crashes make the supervisor give up and be restarted, the
    child's open breaker is still open (it refuses at once)."""
    fail, starts = set(), []
    async with us.Runtime() as rt:
        await rt.start(
            us.Supervisor(
                name="root",
                strategy=us.OneForOne(max_restarts=5),
                children=[
                    us.Supervisor(
                        name="mid",
                        strategy=us.OneForOne(max_restarts=1, within=60),
                        children=[
                            child(
                                fail,
                                starts,
                                "guarded",
                                breaker=us.Breaker(failures=1, reset_after=60),
                            ),
                            child(fail, starts, "flaky"),
                        ],
                    )
                ],
            )
        )
        with pytest.raises(Boom):
            await rt.ref("guarded").ask(Call())  # opens the breaker; one restart of mid's
        assert rt.breaker("guarded").state == "open"
        await rt.ref("flaky").tell(Crash())  # second restart: mid gives up, root restarts it
        with anyio.fail_after(5):
            while starts.count("guarded") < 3:
                await anyio.sleep(0.001)
            # mid answers once its new instance has started both children
            while len(await rt.supervisor("mid").which_children()) != 2:
                await anyio.sleep(0.001)
        assert rt.breaker("guarded").state == "open"
        with pytest.raises(us.CircuitOpen):
            await rt.ref("guarded").ask(Call())


async def test_spawn_of_an_actor_whose_on_start_returns_ignore_raises_start_ignored() -> None:
    """OTP: a start function returning ignore starts no process; outside a supervisor
    there is no spec to keep, so rt.spawn raises StartIgnored and nothing exists."""

    class Declines(us.Actor):
        async def on_start(self) -> us.IgnoreType | None:
            return us.Ignore

    async with us.Runtime() as rt:
        with pytest.raises(us.StartIgnored):
            await rt.spawn(Declines, name="d")
        assert "d" not in rt

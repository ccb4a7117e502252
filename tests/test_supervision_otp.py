"""OTP's ``supervisor_SUITE.erl`` translated case by case onto understudy's API.

Each test's docstring names the OTP case (``lib/stdlib/test/supervisor_SUITE.erl`` in
erlang/otp) and the ``supervisor(3)`` rule it checks. Cases that do not map onto the API are
listed, with the reason, in docs/decisions.md ("Supervision (wave 2)"). Differences of form:
OTP lists ``which_children`` newest first, understudy in start order; a child id is its name;
``{error, Reason}`` replies are exceptions raised in the caller only.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
import time
from typing import Any

import anyio
import pytest

import understudy as us
from understudy.supervision import SupervisorRef

pytestmark = pytest.mark.anyio


class Crash(us.Message, frozen=True):
    pass


class Quit(us.Message, frozen=True):
    pass


class Busy(us.Message, frozen=True):
    seconds: float


class Ping(us.Request[int], frozen=True):
    pass


class Args(us.Request[tuple[Any, ...]], frozen=True):
    pass


class StartError(Exception):
    pass


class Script:
    """Shared by a test's probes: what they did, and how their next starts behave."""

    def __init__(self) -> None:
        self.journal: list[tuple[str, str]] = []
        self.fail: set[str] = set()  # names whose starts raise StartError
        self.fail_once: set[str] = set()  # names whose next start raises, once
        self.ignore: set[str] = set()  # names whose starts return us.Ignore
        self.stop_delay: dict[str, float] = {}
        self.start_delay = 0.0

    def starts(self, name: str) -> int:
        return self.journal.count(("start", name))

    def stops(self, name: str) -> int:
        return self.journal.count(("stop", name))


_serials = itertools.count(1)


class P(us.Actor):
    """A probe: journals its lifecycle; ``args`` may ask it to fail or ignore its start.
    ``Ping`` answers the instance's serial number (unlike ``id()``, never reused)."""

    def __init__(self, script: Script, *args: Any) -> None:
        self.script = script
        self.args = args
        self.serial = next(_serials)

    async def on_start(self) -> us.IgnoreType | None:
        script, name = self.script, self.ctx.name
        script.journal.append(("start", name))
        if script.start_delay:
            await anyio.sleep(script.start_delay)
        if name in script.ignore or "ignore" in self.args:
            return us.Ignore
        if name in script.fail or "fail" in self.args:
            raise StartError(name)
        if name in script.fail_once:
            script.fail_once.discard(name)
            raise StartError(name)
        return None

    async def on_stop(self) -> None:
        self.script.journal.append(("stop", self.ctx.name))
        delay = self.script.stop_delay.get(self.ctx.name)
        if delay:
            await anyio.sleep(delay)

    async def crash(self, msg: Crash) -> None:
        raise RuntimeError(f"crash in {self.ctx.name}")

    async def quit(self, msg: Quit) -> None:
        self.ctx.stop()

    async def busy(self, msg: Busy) -> None:
        await anyio.sleep(msg.seconds)

    async def ping(self, msg: Ping) -> int:
        return self.serial

    async def get_args(self, msg: Args) -> tuple[Any, ...]:
        return self.args


def spec(script: Script, name: str | None, **options: Any) -> us.Child:
    return us.Child(functools.partial(P, script), name=name, **options)


def simple(script: Script, *, restart: str = "permanent", **options: Any) -> us.Supervisor:
    return us.Supervisor(
        strategy=us.SimpleOneForOne(**options),
        children=[us.Child(functools.partial(P, script), restart=restart)],  # type: ignore[arg-type]
    )


async def counts(sup: SupervisorRef) -> list[int]:
    """OTP's ``get_child_counts``: [specs, active, supervisors, workers]."""
    c = await sup.count_children()
    return [c.specs, c.active, c.supervisors, c.workers]


async def which(sup: SupervisorRef) -> list[tuple[str, str]]:
    return [(c.name, c.state) for c in await sup.which_children()]


async def until(predicate: Any, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not await predicate():
            await anyio.sleep(0.001)


async def exits(events: us.Subscription, *names: str) -> dict[str, str]:
    """Wait for the ActorTerminated of each of ``names``; their exit reasons."""
    got: dict[str, str] = {}
    with anyio.fail_after(5):
        async for event in events:
            assert isinstance(event, us.ActorTerminated)
            if event.actor in names:
                got[event.actor] = event.reason
                if len(got) == len(names):
                    return got
    raise AssertionError("event stream ended")


async def crash(rt: us.Runtime, name: str) -> int:
    """Crash ``name``; the id of its next instance once it answers."""
    before = await rt.ref(name).ask(Ping())
    await rt.ref(name).tell(Crash())
    with anyio.fail_after(5):
        while True:
            try:
                now = await rt.ref(name).ask(Ping())
            except (us.ActorStopped, us.UnknownActor):
                await anyio.sleep(0.001)
                continue
            if now != before:
                return now


# ------------------------------------------------------------------------------ sup_start


async def test_sup_start_normal() -> None:
    """sup_start_normal: a supervisor with no children starts and shuts down cleanly (OTP
    allows an empty child list; children can come later with start_child)."""
    async with us.Runtime() as rt:
        sup = await rt.start(us.Supervisor(name="sup"))
        assert await counts(sup) == [0, 0, 0, 0]
        with rt.events.subscribe(us.ActorTerminated) as events:
            await rt.stop(sup)
            assert await exits(events, "sup") == {"sup": "shutdown"}


async def test_sup_start_ignore_child() -> None:
    """sup_start_ignore_child: a child whose start returns ignore gives ``{ok, undefined}``;
    its spec is kept, not running."""
    s = Script()
    s.ignore.add("child1")
    async with us.Runtime() as rt:
        sup = await rt.start(us.Supervisor())
        assert await sup.start_child(spec=spec(s, "child1")) is None
        ref = await sup.start_child(spec=spec(s, "child2"))
        assert ref is not None and ref.name == "child2"
        assert await which(sup) == [("child1", "stopped"), ("child2", "running")]
        assert await counts(sup) == [2, 1, 0, 2]
        assert "child1" not in rt


async def test_sup_start_ignore_temporary_child() -> None:
    """sup_start_ignore_temporary_child: a temporary child in the start spec that returns
    ignore is not saved."""
    s = Script()
    s.ignore.add("child1")
    async with us.Runtime() as rt:
        sup = await rt.start(
            us.Supervisor(
                children=[
                    spec(s, "child1", restart="temporary"),
                    spec(s, "child2", restart="temporary"),
                ]
            )
        )
        assert await which(sup) == [("child2", "running")]
        assert await counts(sup) == [1, 1, 0, 1]


async def test_sup_start_ignore_temporary_child_start_child() -> None:
    """sup_start_ignore_temporary_child_start_child: the same through start_child."""
    s = Script()
    s.ignore.add("child1")
    async with us.Runtime() as rt:
        sup = await rt.start(us.Supervisor())
        assert await sup.start_child(spec=spec(s, "child1", restart="temporary")) is None
        assert await sup.start_child(spec=spec(s, "child2", restart="temporary")) is not None
        assert await which(sup) == [("child2", "running")]
        assert await counts(sup) == [1, 1, 0, 1]


@pytest.mark.parametrize("restart", ["temporary", "permanent"])
async def test_sup_start_ignore_child_start_child_simple(restart: str) -> None:
    """sup_start_ignore_temporary_child_start_child_simple and
    sup_start_ignore_permanent_child_start_child_simple: under simple_one_for_one an ignored
    child is never saved, whatever its restart type; the supervisor still stops cleanly."""
    s = Script()
    async with us.Runtime() as rt:
        tree = simple(s, restart=restart)
        sup = await rt.start(
            us.Supervisor(name="sup", strategy=tree.strategy, children=tree.children)
        )
        assert await sup.start_child("ignore") is None
        assert await sup.start_child() is not None
        assert len(await which(sup)) == 1
        assert await counts(sup) == [1, 1, 0, 1]
        with rt.events.subscribe(us.ActorTerminated) as events:
            await rt.stop(sup)
            assert (await exits(events, "sup"))["sup"] == "shutdown"


async def test_sup_start_child_returns_error() -> None:
    """sup_start_child_returns_error: start_child of a child whose start fails replies
    ``{error, Reason}`` to the caller; nothing is kept and the supervisor carries on, its
    restart intensity untouched (rule: administration errors are replies)."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(
            us.Supervisor(strategy=us.OneForOne(max_restarts=1, within=60), children=[spec(s, "w")])
        )
        for _ in range(3):  # more failed starts than the intensity allows restarts
            with pytest.raises(us.ChildStartFailed) as caught:
                await sup.start_child(spec=us.Child(functools.partial(P, s, "fail"), name="bad"))
            assert isinstance(caught.value.__cause__, StartError)
            assert caught.value.supervisor == sup.name
        assert await which(sup) == [("w", "running")]
        assert "bad" not in rt
        await crash(rt, "w")  # one restart is still allowed: intensity was untouched
        assert await rt.ref("w").ask(Ping()) > 0
        assert rt._fatal is None


async def test_sup_start_child_returns_error_simple() -> None:
    """sup_start_child_returns_error_simple: the same under simple_one_for_one."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(simple(s))
        with pytest.raises(us.ChildStartFailed):
            await sup.start_child("fail")
        with pytest.raises(us.ChildStartFailed):
            await sup.start_child("fail", name="named")
        assert await which(sup) == []
        assert await sup.start_child() is not None


async def test_sup_start_restart_child_returns_error() -> None:
    """sup_start_restart_child_returns_error: restart_child whose start fails replies an
    error; the spec stays, not running."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(us.Supervisor(children=[spec(s, "child1")]))
        await sup.terminate_child("child1")
        s.fail.add("child1")
        with pytest.raises(us.ChildStartFailed) as caught:
            await sup.restart_child("child1")
        assert isinstance(caught.value.__cause__, StartError)
        assert await which(sup) == [("child1", "stopped")]
        s.fail.clear()
        assert await sup.restart_child("child1") is not None
        assert await which(sup) == [("child1", "running")]


async def test_sup_start_map_get_childspec() -> None:
    """sup_start_map: get_childspec returns the full spec with its defaults (restart
    permanent; shutdown 5 s for a worker, infinity for a supervisor); not_found otherwise."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(
            us.Supervisor(
                children=[
                    spec(s, "child1"),
                    spec(s, "child2", shutdown="brutal_kill"),
                    us.Supervisor(name="child3"),
                ]
            )
        )
        c1 = await sup.get_childspec("child1")
        assert isinstance(c1, us.Child) and (c1.restart, c1.shutdown) == ("permanent", 5.0)
        c2 = await sup.get_childspec("child2")
        assert isinstance(c2, us.Child) and c2.shutdown == "brutal_kill"
        c3 = await sup.get_childspec("child3")
        assert isinstance(c3, us.Supervisor) and (c3.restart, c3.shutdown) == (
            "permanent",
            "infinity",
        )
        with pytest.raises(us.ChildNotFound):
            await sup.get_childspec("child4")


async def test_sup_start_map_simple() -> None:
    """sup_start_map_simple: under simple_one_for_one every child's spec is the template."""
    s = Script()
    async with us.Runtime() as rt:
        tree = simple(s, restart="temporary")
        sup = await rt.start(tree)
        refs = [await sup.start_child() for _ in range(3)]
        for ref in refs:
            assert ref is not None
            assert await sup.get_childspec(ref.name) is tree.children[0]
        with pytest.raises(us.ChildNotFound):
            await sup.get_childspec("nobody")


# ------------------------------------------------------------------------------- sup_stop


async def test_sup_stop_infinity() -> None:
    """sup_stop_infinity: children with shutdown infinity (a supervisor and a worker) are
    waited for and exit with reason shutdown."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(us.Supervisor(name="sup"))
        await sup.start_child(spec=us.Supervisor(name="child1", children=[spec(s, "w")]))
        await sup.start_child(spec=spec(s, "child2", shutdown="infinity"))
        with rt.events.subscribe(us.ActorTerminated) as events:
            await rt.stop(sup)
            got = await exits(events, "child1", "child2", "w", "sup")
        assert set(got.values()) == {"shutdown"}


@pytest.mark.parametrize("dynamic", [False, True])
async def test_sup_stop_timeout(dynamic: bool) -> None:
    """sup_stop_timeout / sup_stop_timeout_dynamic: a child that does not stop within its
    shutdown time is killed (reason killed); the others exit with reason shutdown."""
    s = Script()
    async with us.Runtime() as rt:
        if dynamic:
            sup = await rt.start(
                us.Supervisor(
                    name="sup",
                    strategy=us.SimpleOneForOne(),
                    children=[us.Child(functools.partial(P, s), restart="temporary", shutdown=0.1)],
                )
            )
            await sup.start_child(name="child1")
            await sup.start_child(name="child2")
        else:
            sup = await rt.start(
                us.Supervisor(
                    name="sup",
                    children=[spec(s, "child1", shutdown=0.1), spec(s, "child2", shutdown=0.1)],
                )
            )
        await rt.ref("child2").tell(Busy(30))
        await anyio.sleep(0.05)  # it is in the handler (a stop request overtakes the queue)
        with rt.events.subscribe(us.ActorTerminated) as events:
            await rt.stop(sup)
            got = await exits(events, "child1", "child2", "sup")
        assert got == {"child1": "shutdown", "child2": "killed", "sup": "shutdown"}


@pytest.mark.parametrize("dynamic", [False, True])
async def test_sup_stop_brutal_kill(dynamic: bool) -> None:
    """sup_stop_brutal_kill / sup_stop_brutal_kill_dynamic: a brutal_kill child is killed
    at once, idle or not (``exit(Child, kill)``): reason killed, its terminate (on_stop)
    does not run."""
    s = Script()
    async with us.Runtime() as rt:
        if dynamic:
            sup = await rt.start(
                us.Supervisor(
                    name="sup",
                    strategy=us.SimpleOneForOne(),
                    children=[
                        us.Child(
                            functools.partial(P, s), restart="temporary", shutdown="brutal_kill"
                        )
                    ],
                )
            )
            names = [f"c{i}" for i in range(10)]
            for name in names:
                await sup.start_child(name=name)
        else:
            sup = await rt.start(
                us.Supervisor(
                    name="sup",
                    children=[
                        spec(s, "child1", shutdown=1.0),
                        spec(s, "child2", shutdown="brutal_kill"),
                    ],
                )
            )
            names = ["child2"]
        with rt.events.subscribe(us.ActorTerminated) as events:
            await rt.stop(sup)
            got = await exits(events, *names, "sup")
        assert {got[name] for name in names} == {"killed"}
        assert got["sup"] == "shutdown"
        assert all(s.stops(name) == 0 for name in names)
        if not dynamic:
            assert s.stops("child1") == 1


async def test_brutal_kill_of_a_terminated_child_does_not_run_on_stop() -> None:
    """supervisor(3), shutdown: ``brutal_kill`` means the child is unconditionally
    terminated using ``exit(Child, kill)``, also by terminate_child and by a restart of its
    group; the exit reason is killed."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(
            us.Supervisor(
                strategy=us.OneForAll(),
                children=[spec(s, "a", shutdown="brutal_kill"), spec(s, "b")],
            )
        )
        await crash(rt, "b")  # a is stopped for the group restart: killed, no on_stop
        assert s.stops("a") == 0 and s.starts("a") == 2
        with rt.events.subscribe(us.ActorTerminated) as events:
            await sup.terminate_child("a")
            assert await exits(events, "a") == {"a": "killed"}
        assert s.stops("a") == 0


async def test_a_child_killed_in_on_stop_after_its_shutdown_time_exits_killed() -> None:
    """supervisor(3), shutdown: after the timeout the child is killed with
    ``exit(Child, kill)`` even while it runs its terminate callback: reason killed."""
    s = Script()
    s.stop_delay["slow"] = 30.0
    async with us.Runtime() as rt:
        sup = await rt.start(us.Supervisor(children=[spec(s, "slow", shutdown=0.1)]))
        with rt.events.subscribe(us.ActorTerminated) as events:
            await sup.terminate_child("slow")
            assert await exits(events, "slow") == {"slow": "killed"}
        assert s.stops("slow") == 1  # on_stop began, and was cut short


async def test_shutdown_zero_is_a_valid_timeout() -> None:
    """child_specs: ``Shutdown <- [0, 1000, infinity, brutal_kill]`` are all valid; 0 means
    the child must stop at once or be killed."""
    s = Script()
    for shutdown in (0, 0.0, 1.0, "infinity", "brutal_kill"):
        for restart in ("permanent", "transient", "temporary"):
            us.Child(P, restart=restart, shutdown=shutdown)  # type: ignore[arg-type]
    async with us.Runtime() as rt:
        sup = await rt.start(us.Supervisor(children=[spec(s, "z", shutdown=0)]))
        await rt.ref("z").tell(Busy(30))
        await anyio.sleep(0.05)  # it is in the handler (a stop request overtakes the queue)
        with rt.events.subscribe(us.ActorTerminated) as events:
            with anyio.fail_after(2):
                await sup.terminate_child("z")
            assert await exits(events, "z") == {"z": "killed"}


@pytest.mark.parametrize("strategy", ["one_for_one", "simple_one_for_one"])
async def test_sup_stop_race(strategy: str) -> None:
    """sup_stop_race / sup_stop_non_shutdown_exit_dynamic: a supervisor completes its
    shutdown while children exit by themselves (normally or not), and restarts none."""
    s = Script()
    async with us.Runtime() as rt:
        if strategy == "simple_one_for_one":
            sup = await rt.start(
                us.Supervisor(
                    name="sup",
                    strategy=us.SimpleOneForOne(max_restarts=100),
                    children=[us.Child(functools.partial(P, s), shutdown=1.0)],
                )
            )
            names = [f"c{i}" for i in range(12)]
            for name in names:
                await sup.start_child(name=name)
        else:
            restarts = ["temporary", "transient", "permanent"]
            names = [f"c{i}" for i in range(12)]
            sup = await rt.start(
                us.Supervisor(
                    name="sup",
                    strategy=us.OneForOne(max_restarts=100),
                    children=[
                        spec(s, name, restart=restarts[i % 3], shutdown=1.0)
                        for i, name in enumerate(names)
                    ],
                )
            )
        s.stop_delay.update({name: 0.01 for name in names})
        with rt.events.subscribe(us.ActorTerminated) as events:
            for i, name in enumerate(names):
                await rt.ref(name).tell(Quit() if i % 2 else Crash())
            with anyio.fail_after(5):
                await rt.stop(sup)
            await exits(events, "sup", *[n for n in names if n in rt])
        assert not any(name in rt for name in names)
        assert all(s.starts(name) <= 2 for name in names)


# ---------------------------------------------------------------- child administration


async def test_child_adm() -> None:
    """child_adm: start_child / terminate_child / restart_child / delete_child /
    which_children / count_children and their error replies (already_started,
    already_present, running, not_found); terminating a stopped child succeeds."""
    s = Script()
    child = spec(s, "child1")
    async with us.Runtime() as rt:
        sup = await rt.start(us.Supervisor(children=[child]))
        assert await which(sup) == [("child1", "running")]
        assert await counts(sup) == [1, 1, 0, 1]
        with pytest.raises(us.ChildExists) as exists:
            await sup.start_child(spec=child)
        assert exists.value.running
        with pytest.raises(us.ChildNotFound):
            await sup.terminate_child("hej")
        await sup.terminate_child("child1")
        assert "child1" not in rt
        assert await which(sup) == [("child1", "stopped")]
        assert await counts(sup) == [1, 0, 0, 1]
        await sup.terminate_child("child1")  # already stopped: ok
        with pytest.raises(us.ChildExists) as exists:
            await sup.start_child(spec=child)
        assert not exists.value.running  # already_present
        ref = await sup.restart_child("child1")
        # a name ref and the identity ref restart_child returns are different bindings
        assert ref is not None and ref.name == "child1" and ref.bound_to == "identity"
        assert await counts(sup) == [1, 1, 0, 1]
        with pytest.raises(us.ChildRunning) as running:
            await sup.restart_child("child1")
        assert running.value.state == "running"
        with pytest.raises(us.ChildNotFound):
            await sup.restart_child("child2")
        with pytest.raises(us.ChildRunning):
            await sup.delete_child("child1")
        with pytest.raises(us.ChildNotFound):
            await sup.delete_child("hej")
        await sup.terminate_child("child1")
        await sup.delete_child("child1")
        with pytest.raises(us.ChildNotFound):
            await sup.restart_child("child1")
        assert await which(sup) == [] and await counts(sup) == [0, 0, 0, 0]
        assert await sup.start_child(spec=child) is not None
        assert await counts(sup) == [1, 1, 0, 1]
        # extra_return's last step: the re-added child is restarted automatically
        await crash(rt, "child1")
        assert await which(sup) == [("child1", "running")]


async def test_child_adm_simple() -> None:
    """child_adm_simple: simple_one_for_one children come only from start_child;
    terminate_child removes one; restart_child and delete_child reply simple_one_for_one."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(simple(s))
        assert await which(sup) == [] and await counts(sup) == [1, 0, 0, 0]
        first = await sup.start_child()
        assert first is not None and await counts(sup) == [1, 1, 0, 1]
        second = await sup.start_child()
        assert second is not None and await counts(sup) == [1, 2, 0, 2]
        await sup.terminate_child(first.name)
        assert await which(sup) == [(second.name, "running")]
        assert await counts(sup) == [1, 1, 0, 1]
        with pytest.raises(us.ChildNotFound):  # no longer its child (OTP: a pid it never had)
            await sup.terminate_child(first.name)
        outsider = await rt.spawn(functools.partial(P, s), name="outsider")
        with pytest.raises(us.ChildNotFound):
            await sup.terminate_child("outsider")
        assert await outsider.ask(Ping()) > 0
        with pytest.raises(us.SupervisorError, match="SimpleOneForOne"):
            await sup.restart_child(second.name)
        with pytest.raises(us.SupervisorError, match="SimpleOneForOne"):
            await sup.delete_child(second.name)
        assert await counts(sup) == [1, 1, 0, 1]


async def test_child_specs() -> None:
    """child_specs / child_specs_map / sup_start_map_faulty_specs: invalid child specs are
    refused with a reason (here: at construction, or by start_child for what is no spec);
    simple_one_for_one needs exactly one child; significant needs auto_shutdown."""
    s = Script()
    with pytest.raises(TypeError, match=r"not an understudy\.Actor subclass"):
        us.Child(int)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="restart must be one of"):
        us.Child(P, restart="prmanent")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shutdown must be >= 0"):
        us.Child(P, shutdown=-10)
    with pytest.raises(TypeError, match="significant must be a bool"):
        us.Child(P, restart="transient", significant="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="permanent child cannot be significant"):
        us.Child(P, significant=True)
    with pytest.raises(ValueError, match="duplicate child names"):
        us.Supervisor(children=[spec(s, "child"), spec(s, "child")])
    for children in ([], [spec(s, "a"), spec(s, "b")]):
        with pytest.raises(ValueError, match="exactly one"):
            us.Supervisor(strategy=us.SimpleOneForOne(), children=children)
    with pytest.raises(ValueError, match="auto_shutdown"):
        us.Supervisor(children=[spec(s, "c", restart="transient", significant=True)])
    async with us.Runtime() as rt:
        sup = await rt.start(us.Supervisor())
        with pytest.raises(TypeError, match="spec must be"):
            await sup.start_child(spec="hej")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="significant child needs auto_shutdown"):
            await sup.start_child(spec=spec(s, "c", restart="transient", significant=True))
        assert await which(sup) == []


def test_sup_flags() -> None:
    """sup_flags: an invalid strategy, intensity, period (0 or infinity) or auto_shutdown
    is refused."""
    with pytest.raises(TypeError, match="strategy must be"):
        us.Supervisor(strategy="none_for_one")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="max_restarts must be an int"):
        us.OneForOne(max_restarts=math.inf)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be positive"):
        us.OneForOne(within=0)
    with pytest.raises(ValueError, match="finite"):
        us.OneForOne(within=math.inf)
    with pytest.raises(ValueError, match="auto_shutdown must be one of"):
        us.Supervisor(auto_shutdown="sometimes")  # type: ignore[arg-type]


# ------------------------------------------------------------ restart types (termination)


@pytest.mark.parametrize(
    ("restart", "kept", "running"),
    [("permanent", True, True), ("transient", True, False), ("temporary", False, False)],
)
async def test_normal_termination(restart: str, kept: bool, running: bool) -> None:
    """permanent_normal / transient_normal / temporary_normal: after a normal exit a
    permanent child is restarted; a transient one is not, its spec kept (undefined pid);
    a temporary one is not, its spec dropped."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(us.Supervisor())
        await sup.start_child(spec=spec(s, "child1", restart=restart))
        await rt.ref("child1").tell(Quit())
        expected = [("child1", "running" if running else "stopped")] if kept else []
        await until(lambda: _which_is(sup, expected, s, "child1", 2 if running else 1))
        assert await counts(sup) == ([1, int(running), 0, 1] if kept else [0, 0, 0, 0])


async def _which_is(
    sup: SupervisorRef, expected: list[tuple[str, str]], s: Script, name: str, starts: int
) -> bool:
    return await which(sup) == expected and s.starts(name) == starts


def _auto(s: Script, name: str, restart: str) -> us.Supervisor:
    """A child that exits by itself with reason shutdown: a supervisor whose significant
    child ends (auto_shutdown)."""
    return us.Supervisor(
        name=name,
        restart=restart,  # type: ignore[arg-type]
        auto_shutdown="any_significant",
        children=[spec(s, f"{name}.w", restart="transient", significant=True)],
    )


@pytest.mark.parametrize("restart", ["permanent", "transient", "temporary"])
async def test_shutdown_termination(restart: str) -> None:
    """permanent_shutdown / transient_shutdown / temporary_shutdown: a child exiting with
    reason shutdown by itself is restarted if permanent; kept stopped if transient
    (restart_child starts it again); dropped if temporary."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(us.Supervisor(name="top"))
        await sup.start_child(spec=_auto(s, "child1", restart))
        with rt.events.subscribe(us.ActorTerminated) as events:
            await rt.ref("child1.w").tell(Quit())
            if restart != "permanent":
                assert (await exits(events, "child1"))["child1"] == "shutdown"
        if restart == "permanent":
            await until(lambda: _which_is(sup, [("child1", "running")], s, "child1.w", 2))
            assert await counts(sup) == [1, 1, 1, 0]
        elif restart == "transient":
            assert await which(sup) == [("child1", "stopped")]
            assert await counts(sup) == [1, 0, 1, 0]
            assert isinstance(await sup.restart_child("child1"), SupervisorRef)
            assert await which(sup) == [("child1", "running")]
        else:
            assert await which(sup) == [] and await counts(sup) == [0, 0, 0, 0]


@pytest.mark.parametrize("restart", ["permanent", "transient", "temporary"])
async def test_abnormal_termination(restart: str) -> None:
    """permanent_abnormal / transient_abnormal / temporary_abnormal: after a crash a
    permanent or transient child is restarted; a temporary one is dropped."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(us.Supervisor())
        await sup.start_child(spec=spec(s, "child1", restart=restart))
        if restart == "temporary":
            with rt.events.subscribe(us.ActorTerminated) as events:
                await rt.ref("child1").tell(Crash())
                assert await exits(events, "child1") == {"child1": "failed"}
            assert await which(sup) == [] and await counts(sup) == [0, 0, 0, 0]
        else:
            await crash(rt, "child1")
            assert await which(sup) == [("child1", "running")]
            assert await counts(sup) == [1, 1, 0, 1]


@pytest.mark.parametrize("strategy", [us.OneForAll, us.RestForOne])
async def test_temporary_bystander(strategy: type[us.Strategy]) -> None:
    """temporary_bystander: a temporary child stopped as part of a one_for_all or
    rest_for_one restart is not restarted (its spec is dropped), so the supervisor does not
    hit its limit."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(us.Supervisor(strategy=strategy(max_restarts=2, within=300)))
        await sup.start_child(spec=spec(s, "child1"))
        await sup.start_child(spec=spec(s, "child2", restart="temporary"))
        await rt.ref("child1").tell(Quit())
        await until(lambda: _which_is(sup, [("child1", "running")], s, "child1", 2))
        assert s.starts("child2") == 1 and "child2" not in rt
        assert rt._fatal is None


# ----------------------------------------------------------------------------- intensity


async def test_multiple_restarts() -> None:
    """multiple_restarts: restarts spread wider than the period never exceed intensity
    1 per 1 s; the supervisor lives on."""
    s = Script()
    now = [0.0]
    async with us.Runtime(clock=lambda: now[0]) as rt:
        sup = await rt.start(us.Supervisor(strategy=us.OneForOne(max_restarts=1, within=1)))
        await sup.start_child(spec=spec(s, "child1", shutdown="brutal_kill"))
        await crash(rt, "child1")
        for _ in range(3):
            now[0] += 2.1
            await crash(rt, "child1")
        await sup.terminate_child("child1")
        await sup.delete_child("child1")
        assert rt._fatal is None


async def _gives_up(rt: us.Runtime) -> BaseException | None:
    """``rt.wait()`` for a root that is about to give up (waiting is what keeps the body of
    the runtime from being cancelled by it)."""
    with anyio.fail_after(5):
        return await rt.wait()


async def test_one_for_one() -> None:
    """one_for_one: only the dead child is restarted; more than MaxR restarts within MaxT
    end the supervisor, which exits with reason shutdown."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(
            us.Supervisor(name="sup", strategy=us.OneForOne(max_restarts=2, within=3600))
        )
        await sup.start_child(spec=spec(s, "child1"))
        await sup.start_child(spec=spec(s, "child2"))
        other = await rt.ref("child2").ask(Ping())
        await crash(rt, "child1")
        assert await rt.ref("child2").ask(Ping()) == other
        assert await counts(sup) == [2, 2, 0, 2]
        await crash(rt, "child2")
        with rt.events.subscribe(us.ActorTerminated) as events:
            await rt.ref("child1").tell(Crash())
            assert isinstance(await _gives_up(rt), us.RestartIntensityExceeded)
            assert (await exits(events, "sup"))["sup"] == "shutdown"


@pytest.mark.parametrize("strategy", [us.OneForOne, us.OneForAll, us.RestForOne])
async def test_escalation_when_a_restart_keeps_failing(strategy: type[us.Strategy]) -> None:
    """one_for_one_escalation / one_for_all_escalation / rest_for_one_escalation: a child
    whose restart keeps failing: each failed attempt counts toward the intensity, which ends
    the supervisor and all its children (no endless loop, no recursion)."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(
            us.Supervisor(name="sup", strategy=strategy(max_restarts=4, within=3600))
        )
        await sup.start_child(spec=spec(s, "child1"))
        await sup.start_child(spec=spec(s, "child2"))
        failing = "child2" if strategy is not us.OneForOne else "child1"
        s.fail.add(failing)
        with rt.events.subscribe(us.ActorTerminated) as events:
            await rt.ref("child1").tell(Crash())
            assert isinstance(await _gives_up(rt), us.RestartIntensityExceeded)
            got = await exits(events, "sup", "child2" if failing == "child1" else "child1")
        assert got["sup"] == "shutdown"
        assert 2 <= s.starts(failing) <= 6


@pytest.mark.parametrize("strategy", [us.OneForAll, us.RestForOne])
async def test_other_child_fails_restart(strategy: type[us.Strategy]) -> None:
    """one_for_all_other_child_fails_restart / rest_for_one_other_child_fails_restart: when
    a sibling fails to restart, the children already restarted in that round are stopped
    again (one_for_all) and the restart is tried again until it completes."""
    s = Script()
    async with us.Runtime() as rt:
        await rt.start(
            us.Supervisor(
                strategy=strategy(max_restarts=3, within=3600),
                children=[spec(s, "child1"), spec(s, "child2")],
            )
        )
        s.fail_once.add("child2")
        await crash(rt, "child1")
        with anyio.fail_after(5):
            while s.starts("child2") < 3:
                await anyio.sleep(0.001)
        assert await rt.ref("child2").ask(Ping()) > 0
        if strategy is us.OneForAll:
            assert s.starts("child1") == 3  # restarted, stopped again, restarted
            assert s.stops("child1") == 2
        else:
            assert s.starts("child1") == 2  # rest_for_one retries from child2 only
        assert rt._fatal is None


async def test_one_for_all() -> None:
    """one_for_all: all other children are stopped and all restarted; the restart frequency
    ends the supervisor."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(us.Supervisor(strategy=us.OneForAll(max_restarts=2, within=3600)))
        await sup.start_child(spec=spec(s, "child1"))
        await sup.start_child(spec=spec(s, "child2"))
        old2 = await rt.ref("child2").ask(Ping())
        await crash(rt, "child1")
        assert await rt.ref("child2").ask(Ping()) != old2
        assert await counts(sup) == [2, 2, 0, 2]
        await crash(rt, "child1")
        await rt.ref("child2").tell(Crash())
        assert isinstance(await _gives_up(rt), us.RestartIntensityExceeded)


async def test_rest_for_one() -> None:
    """rest_for_one: the dead child and those started after it are restarted; earlier ones
    live on."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(us.Supervisor(strategy=us.RestForOne(max_restarts=2, within=3600)))
        for name in ("child1", "child2", "child3"):
            await sup.start_child(spec=spec(s, name))
        assert await counts(sup) == [3, 3, 0, 3]
        ids = {n: await rt.ref(n).ask(Ping()) for n in ("child1", "child2", "child3")}
        await crash(rt, "child2")
        assert await rt.ref("child1").ask(Ping()) == ids["child1"]
        assert await rt.ref("child3").ask(Ping()) != ids["child3"]
        assert await counts(sup) == [3, 3, 0, 3]
        await crash(rt, "child3")
        await rt.ref("child2").tell(Crash())
        assert isinstance(await _gives_up(rt), us.RestartIntensityExceeded)


async def test_simple_one_for_one() -> None:
    """simple_one_for_one: a dead child is restarted alone; the frequency ends the
    supervisor with reason shutdown."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(
            us.Supervisor(
                name="sup",
                strategy=us.SimpleOneForOne(max_restarts=2, within=3600),
                children=[us.Child(functools.partial(P, s))],
            )
        )
        await sup.start_child(name="child1")
        await sup.start_child(name="child2")
        other = await rt.ref("child2").ask(Ping())
        await crash(rt, "child1")
        assert await rt.ref("child2").ask(Ping()) == other
        assert await counts(sup) == [1, 2, 0, 2]
        await crash(rt, "child2")
        with rt.events.subscribe(us.ActorTerminated) as events:
            await rt.ref("child1").tell(Crash())
            assert isinstance(await _gives_up(rt), us.RestartIntensityExceeded)
            assert (await exits(events, "sup"))["sup"] == "shutdown"


async def test_simple_one_for_one_escalation() -> None:
    """simple_one_for_one_escalation: a child whose restart fails makes the supervisor try
    again until the intensity ends it, with its other children."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(simple(s, max_restarts=4, within=3600))
        await sup.start_child(name="child1")
        await sup.start_child(name="child2")
        s.fail.add("child1")
        await rt.ref("child1").tell(Crash())
        assert isinstance(await _gives_up(rt), us.RestartIntensityExceeded)
        assert "child2" not in rt and s.starts("child1") == 5


@pytest.mark.parametrize("restart", ["transient", "permanent"])
async def test_simple_one_for_one_restart_ignore(restart: str) -> None:
    """simple_one_for_one_restart_ignore: a restart whose start returns ignore removes the
    child (simple_one_for_one keeps no stopped children)."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(simple(s, restart=restart, max_restarts=10))
        await sup.start_child(name="child1")
        chaos = us.Chaos(rt)
        await chaos.kill("child1")
        await until(lambda: _which_is(sup, [("child1", "running")], s, "child1", 2))
        s.ignore.add("child1")
        await chaos.kill("child1")
        await until(lambda: _which_is(sup, [], s, "child1", 3))
        assert "child1" not in rt


async def test_simple_one_for_one_shutdown() -> None:
    """simple_one_for_one_shutdown: a simple_one_for_one supervisor stops its children
    concurrently (they are alike, with no order): four 0.5 s cleanups and one child killed
    after its 1 s shutdown time take about 1 s, not 3 s."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(
            us.Supervisor(
                name="sup",
                strategy=us.SimpleOneForOne(),
                children=[us.Child(functools.partial(P, s), shutdown=1.0)],
            )
        )
        for i in range(4):
            s.stop_delay[f"c{i}"] = 0.5
            await sup.start_child(name=f"c{i}")
        s.stop_delay["slow"] = 30.0
        await sup.start_child(name="slow")
        with rt.events.subscribe(us.ActorTerminated) as events:
            started = time.monotonic()
            await rt.stop(sup)
            took = time.monotonic() - started
            got = await exits(events, "c0", "c1", "c2", "c3", "slow")
        assert 0.9 <= took < 2.0, took  # one after another: 0.5 * 4 + 1.0 = 3.0 s
        assert got == {
            "c0": "shutdown",
            "c1": "shutdown",
            "c2": "shutdown",
            "c3": "shutdown",
            "slow": "killed",
        }


async def test_simple_one_for_one_extra() -> None:
    """simple_one_for_one_extra: start_child's arguments are appended to the template's and
    kept for the child's restarts."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(simple(s))
        await sup.start_child("extra", 1, name="child1")
        assert await rt.ref("child1").ask(Args()) == ("extra", 1)
        await crash(rt, "child1")
        assert await rt.ref("child1").ask(Args()) == ("extra", 1)
        assert await counts(sup) == [1, 1, 0, 1]


# ------------------------------------------------------------------------- significant


@pytest.mark.parametrize("auto_shutdown", ["never", "any_significant", "all_significant"])
@pytest.mark.parametrize("restart", ["temporary", "transient"])
async def test_nonsignificant_children(auto_shutdown: str, restart: str) -> None:
    """nonsignificant_temporary / nonsignificant_transient: no exit of a non-significant
    child (terminated, killed, crashed, normal) triggers an auto shutdown."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(
            us.Supervisor(
                name="sup",
                strategy=us.OneForOne(max_restarts=5),
                auto_shutdown=auto_shutdown,  # type: ignore[arg-type]
            )
        )
        child = spec(s, "child1", restart=restart)
        chaos = us.Chaos(rt)

        async def fresh() -> None:
            if "child1" not in rt:
                if (await which(sup)) == [("child1", "stopped")]:
                    await sup.restart_child("child1")
                else:
                    await sup.start_child(spec=child)

        await fresh()
        await sup.terminate_child("child1")
        for how in ("kill", "crash", "quit"):
            await fresh()
            before = s.starts("child1")
            if how == "kill":
                await chaos.kill("child1")
            else:
                await rt.ref("child1").tell(Crash() if how == "crash" else Quit())
            await until(lambda b=before: _settled(rt, s, b))
            assert "sup" in rt
        await rt.stop(sup)


async def _settled(rt: us.Runtime, s: Script, before: int) -> bool:
    # The exit was dealt with: restarted (a new start) or gone for good.
    await anyio.sleep(0.01)
    return s.starts("child1") > before or "child1" not in rt


@pytest.mark.parametrize("restart", ["temporary", "transient"])
async def test_significant_any(restart: str) -> None:
    """significant_temporary / significant_transient (any_significant): terminate_child of
    a significant child does not trigger the auto shutdown; its own exit does — any exit for
    a temporary child, a normal one for a transient child (which is restarted after a kill
    or crash)."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(
            us.Supervisor(
                name="sup", strategy=us.OneForOne(max_restarts=5), auto_shutdown="any_significant"
            )
        )
        for name, significant in (("child1", True), ("child2", True), ("child3", False)):
            await sup.start_child(spec=spec(s, name, restart=restart, significant=significant))
        await sup.terminate_child("child1")
        await anyio.sleep(0.05)
        assert "sup" in rt and "child2" in rt
        if restart == "transient":
            await sup.restart_child("child1")
            await us.Chaos(rt).kill("child1")  # restarted: abnormal
            await crash(rt, "child1")
            assert "sup" in rt
        else:
            await sup.start_child(spec=spec(s, "child1", restart=restart, significant=True))
        with rt.events.subscribe(us.ActorTerminated) as events:
            await rt.ref("child1").tell(Quit())
            got = await exits(events, "child1", "child2", "child3", "sup")
        assert got["sup"] == "shutdown"
        assert await rt.wait() is None


@pytest.mark.parametrize("restart", ["temporary", "transient"])
async def test_significant_all(restart: str) -> None:
    """significant_temporary / significant_transient (all_significant): the end of one of
    two significant children does not shut the supervisor down; the end of the last one
    does."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(us.Supervisor(name="sup", auto_shutdown="all_significant"))
        for name, significant in (("child1", True), ("child2", True), ("child3", False)):
            await sup.start_child(spec=spec(s, name, restart=restart, significant=significant))
        with rt.events.subscribe(us.ActorTerminated) as events:
            await rt.ref("child1").tell(Quit())
            await exits(events, "child1")
            await anyio.sleep(0.05)
            assert "sup" in rt and "child3" in rt
            await rt.ref("child2").tell(Quit())
            got = await exits(events, "child2", "child3", "sup")
        assert got["sup"] == "shutdown"


async def test_all_significant_counts_children_added_and_terminated_later() -> None:
    """supervisor(3), auto_shutdown all_significant: the supervisor shuts down when all
    significant children have terminated — those added by start_child count, and one
    removed by terminate_child is no longer waited for."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(
            us.Supervisor(
                name="sup",
                auto_shutdown="all_significant",
                children=[spec(s, "a", restart="transient", significant=True)],
            )
        )
        await sup.start_child(spec=spec(s, "b", restart="transient", significant=True))
        await sup.start_child(spec=spec(s, "c", restart="transient", significant=True))
        await rt.ref("a").tell(Quit())
        await until(lambda: _stopped(sup, "a"))
        await anyio.sleep(0.05)
        assert "sup" in rt  # b and c, added later, still run
        await sup.terminate_child("c")  # not its own exit: no shutdown, and not waited for
        await anyio.sleep(0.05)
        assert "sup" in rt
        with rt.events.subscribe(us.ActorTerminated) as events:
            await rt.ref("b").tell(Quit())
            assert (await exits(events, "sup"))["sup"] == "shutdown"


async def _stopped(sup: SupervisorRef, name: str) -> bool:
    return (await sup.which_child(name)).state == "stopped"


def test_significant_simple() -> None:
    """significant_simple: simple_one_for_one refuses auto_shutdown other than never."""
    for mode in ("any_significant", "all_significant"):
        with pytest.raises(ValueError, match="SimpleOneForOne"):
            us.Supervisor(
                strategy=us.SimpleOneForOne(),
                auto_shutdown=mode,  # type: ignore[arg-type]
                children=[us.Child(P)],
            )
    us.Supervisor(strategy=us.SimpleOneForOne(), auto_shutdown="never", children=[us.Child(P)])


@pytest.mark.parametrize("strategy", [us.OneForOne, us.OneForAll, us.RestForOne])
@pytest.mark.parametrize("auto_shutdown", ["any_significant", "all_significant"])
@pytest.mark.parametrize("restart", ["transient", "temporary"])
async def test_significant_bystander(
    strategy: type[us.Strategy], auto_shutdown: str, restart: str
) -> None:
    """significant_bystander: a significant child stopped because a sibling died (the
    group of a one_for_all / rest_for_one restart) does not trigger the auto shutdown —
    a temporary one included, which is then dropped."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(
            us.Supervisor(
                name="sup",
                strategy=strategy(max_restarts=5),
                auto_shutdown=auto_shutdown,  # type: ignore[arg-type]
            )
        )
        await sup.start_child(spec=spec(s, "child1", restart=restart, significant=True))
        await sup.start_child(spec=spec(s, "child2", restart="transient"))
        await sup.start_child(spec=spec(s, "child3", restart=restart, significant=True))
        await us.Chaos(rt).kill("child2")
        await until(lambda: _restarted(s, "child2"))
        await anyio.sleep(0.05)
        assert "sup" in rt
        group = {"child1", "child3"} if strategy is us.OneForAll else {"child3"}
        if strategy is us.OneForOne:
            group = set()
        for name in ("child1", "child3"):
            if name in group and restart == "temporary":
                assert name not in rt
            else:
                assert name in rt
        await rt.stop(sup)


async def _restarted(s: Script, name: str) -> bool:
    return s.starts(name) == 2


async def test_significant_escalation() -> None:
    """significant_escalation: a significant child's end shuts its supervisor down, and if
    that supervisor is itself significant, its parent too; a non-significant one does not."""
    s = Script()
    async with us.Runtime() as rt:
        for significant, expect_top in ((True, False), (False, True)):
            top = await rt.start(us.Supervisor(name="top", auto_shutdown="any_significant"))
            mid = await top.start_child(
                spec=us.Supervisor(
                    name="mid",
                    restart="transient",
                    auto_shutdown="any_significant",
                    significant=significant,
                )
            )
            assert isinstance(mid, SupervisorRef)
            await mid.start_child(spec=spec(s, "w", restart="transient", significant=True))
            with rt.events.subscribe(us.ActorTerminated) as events:
                await rt.ref("w").tell(Quit())
                await exits(events, "w", "mid")
                await anyio.sleep(0.05)
            assert ("top" in rt) is expect_top
            if expect_top:
                await rt.stop(top)


# ---------------------------------------------------------------------------------- misc


async def test_tree() -> None:
    """tree: nested supervisors are administered like the root (rt.supervisor(name)); only
    the child that dies is restarted; a sub-supervisor that gives up is restarted by its
    one_for_all parent with all its siblings (a terminated one included), each from its
    own spec — children added later with start_child are not."""
    s = Script()
    async with us.Runtime() as rt:
        top = await rt.start(us.Supervisor(name="top", strategy=us.OneForAll(max_restarts=4)))
        await top.start_child(
            spec=us.Supervisor(
                name="supchild1",
                strategy=us.OneForOne(max_restarts=4),
                children=[spec(s, "child1"), spec(s, "child2")],
            )
        )
        await top.start_child(
            spec=us.Supervisor(name="supchild2", strategy=us.OneForOne(max_restarts=4))
        )
        await top.start_child(spec=us.Supervisor(name="supchild3", restart="transient"))
        await top.terminate_child("supchild3")
        assert await counts(top) == [3, 2, 3, 0]
        sup1, sup2 = rt.supervisor("supchild1"), rt.supervisor("supchild2")
        assert await counts(sup1) == [2, 2, 0, 2] and await counts(sup2) == [0, 0, 0, 0]
        await sup2.start_child(spec=spec(s, "child3"))
        await sup2.start_child(spec=spec(s, "child4"))
        assert await counts(sup2) == [2, 2, 0, 2]
        one = await rt.ref("child1").ask(Ping())
        await crash(rt, "child4")
        assert await rt.ref("child1").ask(Ping()) == one
        assert await counts(sup2) == [2, 2, 0, 2]
        s.fail.add("child3")
        await rt.ref("child3").tell(Crash())  # supchild2 gives up: top restarts them all
        await until(lambda: _all_running(top))
        assert await counts(top) == [3, 3, 3, 0]
        assert [c.name for c in await rt.supervisor("supchild1").which_children()] == [
            "child1",
            "child2",
        ]
        assert await counts(rt.supervisor("supchild2")) == [0, 0, 0, 0]
        assert await counts(rt.supervisor("supchild3")) == [0, 0, 0, 0]
        assert rt.supervisor("supchild2") == sup2  # the same identity, restarted
        with pytest.raises(TypeError, match="not a supervisor"):
            rt.supervisor("child1")
        with pytest.raises(us.UnknownActor):
            rt.supervisor("nobody")


async def _all_running(sup: SupervisorRef) -> bool:
    return [state for _, state in await which(sup)] == ["running"] * 3


@pytest.mark.parametrize("template", ["worker", "supervisor"])
async def test_count_children(template: str) -> None:
    """count_children / count_children_supervisor: counts of a simple_one_for_one
    supervisor with many children, workers or supervisors (a dynamic sub-tree template)."""
    s = Script()
    child: us.Child | us.Supervisor = (
        us.Child(functools.partial(P, s), restart="temporary")
        if template == "worker"
        else us.Supervisor(restart="temporary")
    )
    async with us.Runtime() as rt:
        sup = await rt.start(us.Supervisor(strategy=us.SimpleOneForOne(), children=[child]))
        refs = [await sup.start_child() for _ in range(100)]
        sups, workers = (100, 0) if template == "supervisor" else (0, 100)
        assert await counts(sup) == [1, 100, sups, workers]
        if template == "supervisor":
            assert all(isinstance(ref, SupervisorRef) for ref in refs)
        chaos = us.Chaos(rt)
        for ref in refs[:50]:
            assert ref is not None
            await chaos.kill(ref)
        await until(lambda: _active(sup, 50))
        assert len(await sup.which_children()) == 50


async def _active(sup: SupervisorRef, n: int) -> bool:
    return (await counts(sup))[1] == n


async def test_count_restarting_children() -> None:
    """count_restarting_children: a child waiting to be restarted is counted as a spec
    but not as active."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(simple(s, max_restarts=1000, within=10))
        for i in range(3):
            await sup.start_child(name=f"c{i}")
        assert await counts(sup) == [1, 3, 0, 3]
        s.start_delay = 0.02  # each failing restart attempt takes a while (OTP: 2 s)
        s.fail.update({"c0", "c1"})
        await rt.ref("c0").tell(Crash())
        await rt.ref("c1").tell(Crash())
        await anyio.sleep(0.05)
        assert (await counts(sup))[1:] == [1, 0, 3]
        assert {state for name, state in await which(sup) if name != "c2"} == {"restarting"}
        s.fail.clear()
        await until(lambda: _active(sup, 3))


@pytest.mark.parametrize("strategy", [us.OneForOne, us.OneForAll, us.RestForOne])
@pytest.mark.parametrize("how", ["kill", "normal", "abnormal", "supervisor"])
async def test_do_not_save_child_specs_for_temporary_children(
    strategy: type[us.Strategy], how: str
) -> None:
    """do_not_save_child_specs_for_temporary_children: after an exit, a permanent child is
    restarted (already_started) unless terminated by the supervisor (already_present); a
    transient one likewise, and kept (already_present) after a normal exit; a temporary
    one's spec is not saved, so it can be started again."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(us.Supervisor(strategy=strategy(max_restarts=10)))
        chaos = us.Chaos(rt)
        for name, restart in (
            ("child1", "permanent"),
            ("child2", "transient"),
            ("child3", "temporary"),
        ):
            child = spec(s, name, restart=restart)
            await sup.start_child(spec=child)
            if how == "supervisor":
                await sup.terminate_child(name)
            else:
                with rt.events.subscribe(us.ActorTerminated) as events:
                    if how == "kill":
                        await chaos.kill(name)
                    else:
                        await rt.ref(name).tell(Quit() if how == "normal" else Crash())
                    if restart == "temporary" or (restart == "transient" and how == "normal"):
                        await exits(events, name)
                    else:
                        await until(lambda n=name: _restarted(s, n))
            if restart == "temporary":
                assert await sup.start_child(spec=child) is not None
                continue
            kept = how == "supervisor" or (restart == "transient" and how == "normal")
            with pytest.raises(us.ChildExists) as exists:
                await sup.start_child(spec=child)
            assert exists.value.running is not kept
            if kept:
                assert await sup.restart_child(name) is not None


async def test_do_not_save_start_parameters_for_temporary_children() -> None:
    """do_not_save_start_parameters_for_temporary_children / simple_one_for_one_corruption:
    a temporary child's spec and arguments are dropped when it ends."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(simple(s, restart="temporary"))
        big = "x" * 50_000
        for i in range(20):
            await sup.start_child(big, name=f"t{i}")
        for i in range(20):
            await rt.ref(f"t{i}").tell(Crash() if i % 2 else Quit())
        await until(lambda: _active(sup, 0))
        actor = sup._cell.instance
        assert actor is not None and not actor.records and not actor.by_cell  # type: ignore[attr-defined]


@pytest.mark.parametrize("strategy", [us.OneForOne, us.RestForOne, us.SimpleOneForOne])
async def test_hanging_restart_loop(strategy: type[us.Strategy]) -> None:
    """hanging_restart_loop / hanging_restart_loop_rest_for_one / hanging_restart_loop_simple
    (OTP-9549): while a child's restart keeps failing, the supervisor answers (which_children
    shows it restarting; start_child already_present; restart_child and delete_child reply
    restarting), terminate_child ends the loop, and the supervisor can be shut down."""
    s = Script()
    async with us.Runtime() as rt:
        if strategy is us.SimpleOneForOne:
            sup = await rt.start(
                us.Supervisor(
                    name="sup",
                    strategy=us.SimpleOneForOne(max_restarts=100_000, within=10),
                    children=[us.Child(functools.partial(P, s), shutdown="brutal_kill")],
                )
            )
            await sup.start_child(name="child2")
        else:
            sup = await rt.start(
                us.Supervisor(
                    name="sup",
                    strategy=strategy(max_restarts=100_000, within=10),
                    children=[
                        spec(s, "child1", shutdown="brutal_kill"),
                        spec(s, "child2", shutdown="brutal_kill"),
                        spec(s, "child3", shutdown="brutal_kill"),
                    ],
                )
            )
        s.fail.add("child2")
        await rt.ref("child2").tell(Crash())
        await until(lambda: _looping(s))
        with anyio.fail_after(2):  # answers while looping
            states = dict(await which(sup))
        assert states["child2"] == "restarting"
        if strategy is us.SimpleOneForOne:
            assert await counts(sup) == [1, 0, 0, 1]
            with pytest.raises(us.SupervisorError):
                await sup.restart_child("child2")
        else:
            expected = {"child1": "running", "child3": "running"}
            if strategy is us.RestForOne:
                expected["child3"] = "restarting"
            assert {k: v for k, v in states.items() if k != "child2"} == expected
            with pytest.raises(us.ChildExists) as exists:
                await sup.start_child(spec=spec(s, "child2"))
            assert not exists.value.running
            with pytest.raises(us.ChildRunning) as running:
                await sup.restart_child("child2")
            assert running.value.state == "restarting"
            with pytest.raises(us.ChildRunning):
                await sup.delete_child("child2")
        await sup.terminate_child("child2")
        attempts = s.starts("child2")
        await anyio.sleep(0.05)
        assert s.starts("child2") == attempts  # the loop ended
        if strategy is not us.SimpleOneForOne:
            assert dict(await which(sup))["child2"] == "stopped"
            s.fail.clear()
            await sup.restart_child("child2")
            s.fail.add("child2")
            await rt.ref("child2").tell(Crash())
            await until(lambda: _looping(s, attempts + 20))
        else:
            assert await which(sup) == []
        with anyio.fail_after(5):
            await rt.stop(sup)  # no hang in the restart loop
        assert rt._fatal is None


async def _looping(s: Script, at_least: int = 20) -> bool:
    return s.starts("child2") >= at_least


async def test_order_of_children() -> None:
    """order_of_children: children start in the given order (ids not sorted), a
    rest_for_one restart stops the later ones newest first and starts them again in order,
    and the supervisor stops them all newest first."""
    s = Script()
    ids = ["ch7", "ch3", "ch10", "ch2", "ch5"]
    async with us.Runtime() as rt:
        sup = await rt.start(
            us.Supervisor(strategy=us.RestForOne(), children=[spec(s, i) for i in ids])
        )
        assert [e for e in s.journal if e[0] == "start"] == [("start", i) for i in ids]
        assert [c.name for c in await sup.which_children()] == ids
        s.journal.clear()
        await crash(rt, "ch10")
        await until(lambda: _journaled(s, ("start", "ch5")))
        assert s.journal == [
            ("stop", "ch10"),  # its own on_stop, as it fails
            ("stop", "ch5"),
            ("stop", "ch2"),
            ("start", "ch10"),
            ("start", "ch2"),
            ("start", "ch5"),
        ]
        s.journal.clear()
        await rt.stop(sup)
        assert s.journal == [("stop", i) for i in reversed(ids)]


async def _journaled(s: Script, entry: tuple[str, str]) -> bool:
    return entry in s.journal


async def test_scale_start_stop_many_children() -> None:
    """scale_start_stop_many_children / simple_one_for_one_scale_many_temporary_children:
    many children start and are terminated one by one, in any order, each by name (the
    time per call is measured by bench/supervision.py)."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(us.Supervisor(strategy=us.OneForOne()))
        names = [f"w{i}" for i in range(300)]
        for name in names:
            await sup.start_child(spec=spec(s, name))
        order = names[:]
        random.Random(7).shuffle(order)
        for name in order:
            await sup.terminate_child(name)
        assert await counts(sup) == [300, 0, 0, 300]
        for name in reversed(names):
            await sup.delete_child(name)
        assert await counts(sup) == [0, 0, 0, 0]


async def test_already_started_outside_supervisor() -> None:
    """already_started_outside_supervisor: start_child of a child whose name is held by an
    actor started outside the supervisor replies already_started; the supervisor (a root
    here) carries on and the runtime's body is not cancelled."""
    s = Script()
    async with us.Runtime() as rt:
        outsider = await rt.spawn(functools.partial(P, s), name="registered_name")
        sup = await rt.start(us.Supervisor(children=[spec(s, "w")]))
        with pytest.raises(us.NameTaken):
            await sup.start_child(spec=spec(s, "registered_name", restart="transient"))
        assert await which(sup) == [("w", "running")]
        assert await outsider.ask(Ping()) > 0
        await anyio.sleep(0.02)  # the body was not cancelled
    assert rt._fatal is None


async def test_which_children() -> None:
    """which_children: which_children / which_child of running, terminated and deleted
    children; not_found for an unknown one."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(us.Supervisor())
        assert await sup.which_children() == []
        with pytest.raises(us.ChildNotFound):
            await sup.which_child("childx")
        await sup.start_child(spec=spec(s, "child1"))
        await sup.start_child(spec=spec(s, "child2"))
        info = await sup.which_child("child1")
        assert (info.name, info.actor_class, info.state, info.supervisor) == (
            "child1",
            "P",
            "running",
            False,
        )
        assert await which(sup) == [("child1", "running"), ("child2", "running")]
        await sup.terminate_child("child1")
        assert (await sup.which_child("child1")).state == "stopped"
        assert await which(sup) == [("child1", "stopped"), ("child2", "running")]
        await sup.delete_child("child1")
        with pytest.raises(us.ChildNotFound):
            await sup.which_child("child1")
        assert await which(sup) == [("child2", "running")]


async def test_which_children_simple_one_for_one() -> None:
    """which_children_simple_one_for_one: children listed as started; a terminated one is
    gone (not_found)."""
    s = Script()
    async with us.Runtime() as rt:
        sup = await rt.start(simple(s, restart="temporary"))
        assert await sup.which_children() == []
        one = await sup.start_child()
        two = await sup.start_child()
        assert one is not None and two is not None
        assert await which(sup) == [(one.name, "running"), (two.name, "running")]
        assert (await sup.which_child(one.name)).state == "running"
        await sup.terminate_child(one.name)
        with pytest.raises(us.ChildNotFound):
            await sup.which_child(one.name)
        assert await which(sup) == [(two.name, "running")]

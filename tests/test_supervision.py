"""Conformance suite for supervision: each test cites the OTP ``supervisor`` rule it checks."""

from __future__ import annotations

import functools

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import understudy as us

pytestmark = pytest.mark.anyio

Journal = list[tuple[str, str]]


class Crash(us.Message, frozen=True):
    pass


class Quit(us.Message, frozen=True):
    pass


class Add(us.Message, frozen=True):
    value: int


class Total(us.Request[int], frozen=True):
    pass


class Ping(us.Request[int], frozen=True):
    pass


class Worker(us.Actor):
    """Journals its lifecycle; ``Ping`` answers with the instance's identity."""

    def __init__(self, journal: Journal, processed: list[int] | None = None) -> None:
        self.journal = journal
        self.processed = processed
        self.total = 0

    async def on_start(self) -> None:
        self.journal.append(("start", self.ctx.name))

    async def on_stop(self) -> None:
        self.journal.append(("stop", self.ctx.name))

    async def on_restart(self, error: BaseException | None) -> None:
        self.journal.append(("restart", f"{self.ctx.name}:{type(error).__name__}"))

    async def crash(self, msg: Crash) -> None:
        raise RuntimeError(f"crash in {self.ctx.name}")

    async def quit(self, msg: Quit) -> None:
        self.ctx.stop()

    async def add(self, msg: Add) -> None:
        self.total += msg.value
        if self.processed is not None:
            self.processed.append(msg.value)

    async def get_total(self, msg: Total) -> int:
        return self.total

    async def ping(self, msg: Ping) -> int:
        return id(self)


def child(journal: Journal, name: str, **options: object) -> us.Child:
    return us.Child(functools.partial(Worker, journal), name=name, **options)  # type: ignore[arg-type]


def starts(journal: Journal, name: str) -> int:
    return journal.count(("start", name))


def drain(events: us.Subscription) -> list:  # type: ignore[type-arg]
    """Every event buffered on the subscription so far."""
    return list(iter(events.get_nowait, None))


async def crash_and_wait(rt: us.Runtime, name: str) -> None:
    """Crash ``name`` and return once its next instance answered (messages queue meanwhile)."""
    with anyio.fail_after(5):
        await rt.ref(name).tell(Crash())
        await rt.ref(name).ask(Ping())


# --------------------------------------------------------------------------- strategies


async def test_one_for_one_restarts_only_the_crashed_child() -> None:
    """OTP one_for_one: only the terminated child is restarted."""
    journal: Journal = []
    async with us.Runtime() as rt:
        await rt.start(
            us.Supervisor(
                strategy=us.OneForOne(), children=[child(journal, f"w{i}") for i in range(3)]
            )
        )
        before = {name: await rt.ref(name).ask(Ping()) for name in ("w0", "w1", "w2")}
        await crash_and_wait(rt, "w1")
        after = {name: await rt.ref(name).ask(Ping()) for name in ("w0", "w1", "w2")}
        assert [starts(journal, f"w{i}") for i in range(3)] == [1, 2, 1]
        assert after["w0"] == before["w0"] and after["w2"] == before["w2"]
        assert after["w1"] != before["w1"]


async def test_one_for_all_stops_the_others_in_reverse_and_restarts_all_in_order() -> None:
    """OTP one_for_all: all other children are terminated, then all are restarted."""
    journal: Journal = []
    async with us.Runtime() as rt:
        await rt.start(
            us.Supervisor(
                strategy=us.OneForAll(), children=[child(journal, f"w{i}") for i in range(3)]
            )
        )
        journal.clear()
        await crash_and_wait(rt, "w1")
        for name in ("w0", "w2"):
            await rt.ref(name).ask(Ping())
        assert journal == [
            ("stop", "w1"),  # the crashed instance's on_stop
            ("stop", "w2"),
            ("stop", "w0"),
            ("restart", "w0:RuntimeError"),
            ("start", "w0"),
            ("restart", "w1:RuntimeError"),
            ("start", "w1"),
            ("restart", "w2:RuntimeError"),
            ("start", "w2"),
        ]


async def test_rest_for_one_restarts_the_crashed_child_and_those_started_after_it() -> None:
    """OTP rest_for_one: the children after the terminated one are terminated and restarted."""
    journal: Journal = []
    async with us.Runtime() as rt:
        await rt.start(
            us.Supervisor(
                strategy=us.RestForOne(), children=[child(journal, f"w{i}") for i in range(4)]
            )
        )
        w0 = await rt.ref("w0").ask(Ping())
        journal.clear()
        await crash_and_wait(rt, "w1")
        for name in ("w2", "w3"):
            await rt.ref(name).ask(Ping())
        assert await rt.ref("w0").ask(Ping()) == w0
        assert [entry for entry in journal if entry[0] != "restart"] == [
            ("stop", "w1"),
            ("stop", "w3"),
            ("stop", "w2"),
            ("start", "w1"),
            ("start", "w2"),
            ("start", "w3"),
        ]


async def test_simple_one_for_one_adds_terminates_lists_and_counts_children() -> None:
    """OTP simple_one_for_one: children from one template, added and removed at run time."""

    class Tagged(Worker):
        def __init__(self, journal: Journal, tag: str) -> None:
            super().__init__(journal)
            self.tag = tag

    journal: Journal = []
    async with us.Runtime() as rt:
        sup = await rt.start(
            us.Supervisor(
                strategy=us.SimpleOneForOne(),
                children=[us.Child(functools.partial(Tagged, journal), restart="transient")],
            )
        )
        assert await sup.count_children() == us.ChildCounts(
            specs=1, active=0, supervisors=0, workers=0
        )
        d1 = await sup.start_child("one", name="d1")
        await sup.start_child("two", name="d2")
        assert [c.name for c in await sup.which_children()] == ["d1", "d2"]
        await crash_and_wait(rt, "d2")  # transient + abnormal exit: restarted
        assert starts(journal, "d2") == 2
        await sup.terminate_child("d1")
        assert "d1" not in rt
        assert d1.name == "d1"
        await d1.tell(Add(1))  # a tell to the terminated child is a dead letter
        assert rt.dead_letters.counts.get("stopped") == 1
        assert await sup.count_children() == us.ChildCounts(
            specs=1, active=1, supervisors=0, workers=1
        )
        with pytest.raises(us.UnknownActor, match="no child named 'nope'"):
            await sup.terminate_child("nope")


# ------------------------------------------------------------------------ restart types


async def test_permanent_child_is_restarted_even_after_a_normal_exit() -> None:
    """OTP: a permanent child process is always restarted."""
    journal: Journal = []
    async with us.Runtime() as rt:
        await rt.start(us.Supervisor(children=[child(journal, "w", restart="permanent")]))
        await rt.ref("w").tell(Quit())
        with anyio.fail_after(5):
            await rt.ref("w").ask(Ping())
        assert starts(journal, "w") == 2


async def test_transient_child_is_restarted_after_a_crash_but_not_after_a_normal_exit() -> None:
    """OTP: a transient child is restarted only if it terminates abnormally."""
    journal: Journal = []
    async with us.Runtime() as rt:
        sup = await rt.start(us.Supervisor(children=[child(journal, "w", restart="transient")]))
        await crash_and_wait(rt, "w")
        assert starts(journal, "w") == 2
        ref = rt.ref("w")
        with rt.events.subscribe(us.ActorTerminated) as events:
            await ref.tell(Quit())
            with anyio.fail_after(5):
                event = await events.__anext__()
        assert event.actor == "w" and event.reason == "normal"
        assert "w" not in rt
        # OTP keeps a non-temporary child's spec (pid undefined) for restart_child.
        assert [(c.name, c.state) for c in await sup.which_children()] == [("w", "stopped")]


async def test_temporary_child_is_never_restarted() -> None:
    """OTP: a temporary child process is never restarted."""
    journal: Journal = []
    async with us.Runtime() as rt:
        sup = await rt.start(
            us.Supervisor(children=[child(journal, "t", restart="temporary"), child(journal, "p")])
        )
        with rt.events.subscribe(us.ActorTerminated) as events:
            await rt.ref("t").tell(Crash())
            with anyio.fail_after(5):
                event = await events.__anext__()
        assert event.actor == "t" and event.reason == "failed"
        assert [c.name for c in await sup.which_children()] == ["p"]
        assert starts(journal, "t") == 1


async def test_temporary_sibling_stopped_by_one_for_all_is_not_restarted() -> None:
    """OTP: a temporary child is not restarted even when a sibling's exit stops it."""
    journal: Journal = []
    async with us.Runtime() as rt:
        sup = await rt.start(
            us.Supervisor(
                strategy=us.OneForAll(),
                children=[child(journal, "p"), child(journal, "t", restart="temporary")],
            )
        )
        await crash_and_wait(rt, "p")
        assert [c.name for c in await sup.which_children()] == ["p"]
        assert starts(journal, "t") == 1


# ----------------------------------------------------------------------------- identity


async def test_restarted_child_keeps_its_ref_and_mailbox_and_the_crashing_message_is_dead() -> None:
    """The identity outlives the instance; the crashing message is never redelivered."""
    journal: Journal = []
    async with us.Runtime() as rt:
        await rt.start(us.Supervisor(children=[child(journal, "w")]))
        ref = rt.ref("w")
        await ref.tell(Add(100))
        await ref.tell(Crash())
        for value in (1, 2, 3):  # sent while the crash and restart happen
            await ref.tell(Add(value))
        with anyio.fail_after(5):
            assert await ref.ask(Total()) == 6  # fresh instance, fresh state
        assert rt.ref("w") == ref
        crashed = [letter for letter in rt.dead_letters if letter.reason == "crashed"]
        assert [type(letter.message) for letter in crashed] == [Crash]
        assert ("restart", "w:RuntimeError") in journal


async def test_asker_of_the_crashing_message_gets_the_exception() -> None:
    journal: Journal = []

    class Boom(us.Request[int], frozen=True):
        pass

    class Fragile(Worker):
        answers = ()  # every exception is a crash here (ValueError is a default answer)

        async def boom(self, msg: Boom) -> int:
            raise ValueError("bad input")

    async with us.Runtime() as rt:
        await rt.start(
            us.Supervisor(children=[us.Child(functools.partial(Fragile, journal), name="f")])
        )
        with pytest.raises(ValueError, match="bad input") as caught:
            await rt.ref("f").ask(Boom())
        assert any("'f'" in note for note in caught.value.__notes__)
        with anyio.fail_after(5):
            await rt.ref("f").ask(Ping())
        assert starts(journal, "f") == 2


async def test_restart_is_an_event_with_the_child_reason_and_count() -> None:
    journal: Journal = []
    async with us.Runtime() as rt:
        await rt.start(us.Supervisor(name="top", children=[child(journal, "w")]))
        with rt.events.subscribe(us.ChildRestarted) as events:
            await crash_and_wait(rt, "w")
            await crash_and_wait(rt, "w")
            with anyio.fail_after(5):
                first, second = await events.__anext__(), await events.__anext__()
        assert isinstance(first, us.ChildRestarted) and isinstance(second, us.ChildRestarted)
        assert (first.actor, first.supervisor, first.reason, first.restarts) == (
            "w",
            "top",
            "failed",
            1,
        )
        assert isinstance(first.error, RuntimeError)
        assert second.restarts == 2


async def test_stopping_a_supervised_child_from_outside_does_not_restart_it() -> None:
    journal: Journal = []
    async with us.Runtime() as rt:
        sup = await rt.start(us.Supervisor(children=[child(journal, "a"), child(journal, "b")]))
        await rt.stop(rt.ref("a"))
        # As terminate_child: stopped, its spec kept (OTP).
        assert [(c.name, c.state) for c in await sup.which_children()] == [
            ("a", "stopped"),
            ("b", "running"),
        ]
        assert starts(journal, "a") == 1 and ("stop", "a") in journal


# ---------------------------------------------------------------------------- intensity


async def test_crashes_up_to_max_restarts_within_the_window_are_survived() -> None:
    """OTP: the supervisor gives up only when MORE than MaxR restarts occur within MaxT."""
    journal: Journal = []
    now = [0.0]
    async with us.Runtime(clock=lambda: now[0]) as rt:
        await rt.start(
            us.Supervisor(
                strategy=us.OneForOne(max_restarts=3, within=10.0), children=[child(journal, "w")]
            )
        )
        for _ in range(3):
            now[0] += 1.0
            await crash_and_wait(rt, "w")
        assert starts(journal, "w") == 4
        now[0] += 1.0
        await rt.ref("w").tell(Crash())
        with anyio.fail_after(5):
            error = await rt.wait()
        assert isinstance(error, us.RestartIntensityExceeded)
        assert isinstance(error.__cause__, RuntimeError)
        assert "w" not in rt


async def test_crashes_spread_beyond_the_window_are_survived_indefinitely() -> None:
    journal: Journal = []
    now = [0.0]
    async with us.Runtime(clock=lambda: now[0]) as rt:
        await rt.start(
            us.Supervisor(
                strategy=us.OneForOne(max_restarts=1, within=5.0), children=[child(journal, "w")]
            )
        )
        for _ in range(20):
            now[0] += 5.0
            await crash_and_wait(rt, "w")
        assert starts(journal, "w") == 21


async def test_escalation_climbs_three_levels_to_the_runtime() -> None:
    """A supervisor that gives up fails; its supervisor handles that as a child failure."""
    journal: Journal = []
    leaf = us.Supervisor(
        name="leaf", strategy=us.OneForOne(max_restarts=0), children=[child(journal, "w")]
    )
    mid = us.Supervisor(name="mid", strategy=us.OneForOne(max_restarts=0), children=[leaf])
    root = us.Supervisor(name="root", strategy=us.OneForOne(max_restarts=0), children=[mid])
    async with us.Runtime() as rt:
        await rt.start(root)
        with rt.events.subscribe(us.Escalated) as events:
            await rt.ref("w").tell(Crash())
            with anyio.fail_after(5):
                error = await rt.wait()
            escalations = [(e.actor, e.to) for e in drain(events)]
        assert escalations == [("leaf", "mid"), ("mid", "root"), ("root", "runtime")]
        assert isinstance(error, us.RestartIntensityExceeded) and error.supervisor == "root"
        chain = []
        cause: BaseException | None = error
        while cause is not None:
            chain.append(type(cause).__name__)
            cause = cause.__cause__
        assert chain == [
            "RestartIntensityExceeded",
            "RestartIntensityExceeded",
            "RestartIntensityExceeded",
            "RuntimeError",
        ]
        assert not any(name in rt for name in ("root", "mid", "leaf", "w"))


async def test_root_giving_up_cancels_the_body_and_leaving_the_runtime_raises() -> None:
    journal: Journal = []
    with pytest.raises(us.RestartIntensityExceeded, match="'root' gave up"):
        async with us.Runtime() as rt:
            await rt.start(
                us.Supervisor(
                    name="root",
                    strategy=us.OneForOne(max_restarts=0),
                    children=[child(journal, "w")],
                )
            )
            await rt.ref("w").tell(Crash())
            with anyio.fail_after(5):
                await anyio.sleep_forever()


async def test_a_nested_supervisor_is_restarted_with_fresh_children() -> None:
    journal: Journal = []
    inner = us.Supervisor(
        name="inner", strategy=us.OneForOne(max_restarts=0), children=[child(journal, "w")]
    )
    async with us.Runtime() as rt:
        await rt.start(us.Supervisor(name="outer", children=[inner, child(journal, "x")]))
        await rt.ref("w").tell(Crash())  # inner gives up at once; outer restarts it
        with anyio.fail_after(5):
            while "w" not in rt or starts(journal, "w") < 2:
                await anyio.sleep(0.001)
            await rt.ref("w").ask(Ping())
        assert starts(journal, "x") == 1


# ------------------------------------------------------------------------------ backoff


async def test_backoff_delays_follow_the_formula_and_cap() -> None:
    journal: Journal = []
    backoff = us.Backoff(min=0.001, max=0.004, factor=2.0, jitter=0.0, reset_after=60.0)
    async with us.Runtime() as rt:
        await rt.start(
            us.Supervisor(
                strategy=us.OneForOne(max_restarts=100, within=1.0),
                children=[child(journal, "w", backoff=backoff)],
            )
        )
        with rt.events.subscribe(us.ChildBackoff) as events:
            for _ in range(5):
                await crash_and_wait(rt, "w")
            delays = [(e.attempt, e.delay) for e in drain(events)]
        assert delays == [(0, 0.001), (1, 0.002), (2, 0.004), (3, 0.004), (4, 0.004)]


async def test_backoff_count_resets_after_a_quiet_period() -> None:
    journal: Journal = []
    now = [0.0]
    backoff = us.Backoff(min=0.001, max=1.0, factor=10.0, jitter=0.0, reset_after=30.0)
    async with us.Runtime(clock=lambda: now[0]) as rt:
        await rt.start(
            us.Supervisor(
                strategy=us.OneForOne(max_restarts=100, within=1.0),
                children=[child(journal, "w", backoff=backoff)],
            )
        )
        with rt.events.subscribe(us.ChildBackoff) as events:
            await crash_and_wait(rt, "w")
            now[0] += 1.0
            await crash_and_wait(rt, "w")
            now[0] += 31.0  # quiet for longer than reset_after
            await crash_and_wait(rt, "w")
            attempts = [e.attempt for e in drain(events)]
        assert attempts == [0, 1, 0]


async def test_jitter_keeps_each_delay_within_its_bounds() -> None:
    import random

    backoff = us.Backoff(min=1.0, max=100.0, factor=2.0, jitter=0.25)
    rng = random.Random(7)
    for attempt in range(6):
        delay = backoff.delay(attempt, rng)
        base = min(100.0, 2.0**attempt)
        assert base * 0.75 <= delay <= base * 1.25


# ----------------------------------------------------------------------------- shutdown


async def test_children_stop_in_reverse_start_order_and_subtrees_first() -> None:
    """OTP: children are terminated in reverse start order; a supervisor stops its subtree."""
    journal: Journal = []
    inner = us.Supervisor(name="inner", children=[child(journal, "x0"), child(journal, "x1")])
    async with us.Runtime() as rt:
        await rt.start(us.Supervisor(children=[child(journal, "w0"), inner, child(journal, "w2")]))
        assert [name for kind, name in journal] == ["w0", "x0", "x1", "w2"]
        journal.clear()
    assert journal == [("stop", "w2"), ("stop", "x1"), ("stop", "x0"), ("stop", "w0")]


class Stubborn(us.Actor):
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def hang(self, msg: Add) -> None:
        self.journal.append(("hang", self.ctx.name))
        await anyio.sleep_forever()

    async def on_stop(self) -> None:
        self.journal.append(("stop", self.ctx.name))


async def test_child_that_ignores_its_stop_is_cancelled_after_its_shutdown_time() -> None:
    journal: Journal = []
    with anyio.fail_after(5):
        async with us.Runtime() as rt:
            await rt.start(
                us.Supervisor(
                    children=[
                        child(journal, "polite"),
                        us.Child(functools.partial(Stubborn, journal), name="s", shutdown=0.05),
                    ]
                )
            )
            with rt.events.subscribe(us.ActorTerminated) as events:
                await rt.ref("s").tell(Add(1))
                while ("hang", "s") not in journal:
                    await anyio.sleep(0.001)
                await rt.stop(rt.ref("s"))
                event = await events.__anext__()
    assert event.actor == "s" and event.reason == "killed"
    assert ("stop", "s") not in journal  # killed: on_stop does not run
    assert ("stop", "polite") in journal


async def test_brutal_kill_cancels_at_once() -> None:
    journal: Journal = []
    with anyio.fail_after(5):
        async with us.Runtime() as rt:
            await rt.start(
                us.Supervisor(
                    children=[
                        us.Child(
                            functools.partial(Stubborn, journal), name="s", shutdown="brutal_kill"
                        )
                    ]
                )
            )
            await rt.ref("s").tell(Add(1))
            while ("hang", "s") not in journal:
                await anyio.sleep(0.001)
    assert ("stop", "s") not in journal


# ------------------------------------------------------------------ significant children


async def test_any_significant_child_ending_shuts_the_supervisor_down() -> None:
    """OTP 24 auto_shutdown=any_significant."""
    journal: Journal = []
    async with us.Runtime() as rt:
        await rt.start(
            us.Supervisor(
                auto_shutdown="any_significant",
                children=[
                    child(journal, "helper"),
                    child(journal, "coordinator", restart="transient", significant=True),
                ],
            )
        )
        await rt.ref("coordinator").tell(Quit())
        with anyio.fail_after(5):
            assert await rt.wait() is None
        assert ("stop", "helper") in journal
        assert "helper" not in rt


async def test_all_significant_waits_for_the_last_significant_child() -> None:
    journal: Journal = []
    async with us.Runtime() as rt:
        sup = await rt.start(
            us.Supervisor(
                auto_shutdown="all_significant",
                children=[
                    child(journal, "a", restart="transient", significant=True),
                    child(journal, "b", restart="temporary", significant=True),
                    child(journal, "c"),
                ],
            )
        )
        await rt.ref("a").tell(Quit())
        with anyio.fail_after(5):
            while (await sup.which_child("a")).state != "stopped":
                await anyio.sleep(0.001)
        assert "c" in rt
        await rt.ref("b").tell(Crash())  # temporary: any exit counts
        with anyio.fail_after(5):
            assert await rt.wait() is None
        assert "c" not in rt


# ---------------------------------------------------------------------------- bad input


def test_bad_specs_fail_at_construction_with_clear_errors() -> None:
    journal: Journal = []
    with pytest.raises(ValueError, match="restart must be one of"):
        us.Child(Worker, restart="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_restarts must be >= 0"):
        us.OneForOne(max_restarts=-1)
    with pytest.raises(ValueError, match=r"OneForAll\(within=\) must be positive"):
        us.OneForAll(within=0)
    with pytest.raises(ValueError, match=r"duplicate child names \['a'\]"):
        us.Supervisor(children=[child(journal, "a"), child(journal, "a")])
    with pytest.raises(ValueError, match="exactly one Child or Supervisor spec"):
        us.Supervisor(strategy=us.SimpleOneForOne(), children=[])
    with pytest.raises(ValueError, match="permanent child cannot be significant"):
        us.Child(Worker, significant=True)
    with pytest.raises(ValueError, match="auto_shutdown"):
        us.Supervisor(children=[us.Child(Worker, restart="transient", significant=True)])
    with pytest.raises(TypeError, match="unknown option"):
        us.Child(Worker, capacty=10)
    with pytest.raises(ValueError, match="shutdown must be >= 0 seconds"):
        us.Child(Worker, shutdown=-1)
    with pytest.raises(ValueError, match="min"):
        us.Backoff(min=0)
    with pytest.raises(ValueError, match="jitter"):
        us.Backoff(jitter=1.5)
    with pytest.raises(TypeError, match=r"not an understudy\.Actor"):
        us.Child(int)  # type: ignore[arg-type]


async def test_start_refuses_what_is_not_a_supervisor_spec() -> None:
    async with us.Runtime() as rt:
        with pytest.raises(TypeError, match=r"expected a us\.Supervisor"):
            await rt.start(us.Child(Worker))  # type: ignore[arg-type]


async def test_a_child_failing_to_start_fails_the_tree_start_and_stops_the_others() -> None:
    journal: Journal = []

    class Broken(us.Actor):
        async def on_start(self) -> None:
            raise OSError("no database")

    async with us.Runtime() as rt:
        with pytest.raises(OSError, match="no database"):
            await rt.start(us.Supervisor(children=[child(journal, "ok"), us.Child(Broken)]))
        assert journal == [("start", "ok"), ("stop", "ok")]
        assert "ok" not in rt


def test_default_intensity_is_documented() -> None:
    strategy = us.OneForOne()
    assert (strategy.max_restarts, strategy.within) == (3, 5.0)


# ---------------------------------------------------------------------- property-based


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    strategy_type=st.sampled_from([us.OneForOne, us.OneForAll, us.RestForOne]),
    width=st.integers(1, 4),
    max_restarts=st.integers(0, 3),
    ops=st.lists(
        st.tuples(st.sampled_from(["crash", "send"]), st.integers(0, 3), st.integers(1, 9)),
        max_size=12,
    ),
    backend=st.sampled_from(["asyncio", "trio"]),
)
def test_random_crashes_and_sends_never_lose_accepted_messages(
    strategy_type: type[us.Strategy],
    width: int,
    max_restarts: int,
    ops: list[tuple[str, int, int]],
    backend: str,
) -> None:
    """Whatever the interleaving: permanent children stay alive while their supervisor
    lives, every message accepted by a live identity (other than the crashing ones) is
    handled exactly once, and the supervisor escalates exactly when intensity is exceeded."""
    journal: Journal = []
    processed: list[int] = []
    sent: list[int] = []
    crashes = sum(1 for kind, _, _ in ops if kind == "crash")
    outcome: dict[str, object] = {}

    async def scenario() -> None:
        async with us.Runtime(clock=lambda: 0.0) as rt:
            names = [f"w{i}" for i in range(width)]
            await rt.start(
                us.Supervisor(
                    name="root",
                    strategy=strategy_type(max_restarts=max_restarts, within=60.0),
                    children=[
                        us.Child(functools.partial(Worker, journal, processed), name=n)
                        for n in names
                    ],
                )
            )
            refs = [rt.ref(n) for n in names]
            waiter_result: list[BaseException | None] = []

            async def wait_for_root() -> None:
                waiter_result.append(await rt.wait())

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_for_root)
                await anyio.lowlevel.checkpoint()
                crashed = 0
                with anyio.fail_after(10):
                    for kind, index, value in ops:
                        ref = refs[index % width]
                        if kind == "send":
                            await ref.tell(Add(value))
                            sent.append(value)
                            continue
                        await ref.tell(Crash())
                        crashed += 1
                        if crashed > max_restarts:
                            break  # the waiter task returns once the root gave up
                        # One restart per crash: wait until the crash was handled (OTP counts
                        # restarts, and absorbs the exit of a child its group restart already
                        # replaced). Sends still land while siblings are stopped and restarted.
                        await ref.ask(Ping())
                    else:
                        for ref in refs:
                            await ref.ask(Ping())
                        outcome["alive"] = all(n in rt for n in names)
                        tg.cancel_scope.cancel()
            outcome["error"] = waiter_result[0] if waiter_result else None

    us.run(scenario, backend=backend)  # type: ignore[arg-type]
    if crashes > max_restarts:
        assert isinstance(outcome["error"], us.RestartIntensityExceeded)
    else:
        assert outcome["error"] is None
        assert outcome["alive"] is True
        assert sorted(processed) == sorted(sent)

"""Persistent budgets: a conversation's budget outlives its requests and the process."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import understudy as us

pytestmark = pytest.mark.anyio

CHILD = Path(__file__).with_name("budget_process.py")


def stored(db: Path, name: str) -> tuple[float, float, int, int]:
    """(spent_usd, reserved_usd, spent_tokens, reserved_tokens) as committed."""
    conn = sqlite3.connect(db)
    try:
        row = conn.execute(
            "SELECT spent_usd, reserved_usd, spent_tokens, reserved_tokens FROM budgets "
            "WHERE name = ?",
            (name,),
        ).fetchone()
    finally:
        conn.close()
    return tuple(row)  # type: ignore[return-value]


def metric(rt: us.Runtime, name: str, kind: str) -> float:
    for family in rt.resilience.collect():
        for sample in family.samples:
            if sample.name in (name, name + "_total") and sample.labels.get("kind") == kind:
                return float(sample.value)
    raise AssertionError(f"no {name}{{kind={kind}}}")


async def test_a_later_request_continues_from_what_was_spent(tmp_path: Path) -> None:
    async with us.Runtime(store=tmp_path / "app.db") as rt:
        async with rt.budget(name="conv-1", usd=0.5, tokens=1000, persistent=True) as budget:
            budget.reserve(usd=0.1, tokens=100).settle(usd=0.2, tokens=150)
        async with rt.budget(name="conv-1", persistent=True) as again:
            assert again is budget  # while it lives, one budget per name
            assert again.usd_left() == pytest.approx(0.3)
            assert again.tokens_left() == 850


async def test_a_restart_continues_and_reopening_keeps_the_limits(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with (
        us.Runtime(store=db) as rt,
        rt.budget(name="conv-1", usd=0.5, seconds=600, persistent=True) as budget,
    ):
        budget.charge(usd=0.125)
    assert stored(db, "conv-1") == (0.125, 0.0, 0, 0)
    async with us.Runtime(store=db) as rt:
        async with rt.budget(name="conv-1", persistent=True) as budget:
            assert budget.usd == 0.5 and budget.seconds == 600
            assert budget.spent == us.Usage(0, 0.125)
            assert 590 < budget.time_left() <= 600  # counted from the first opening
            with pytest.raises(us.BudgetExceeded):
                budget.reserve(usd=0.4)
        with pytest.raises(ValueError, match=r"reopened with usd=0\.6.*stored with usd=0\.5"):
            async with rt.budget(name="conv-1", usd=0.6, persistent=True):
                pass


async def test_a_dead_process_s_reservations_are_settled_as_spent(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with (
        us.Runtime(store=db) as rt,
        rt.budget(name="conv-1", usd=1.0, persistent=True) as budget,
    ):
        budget.reserve(usd=0.25)  # never settled: the process "dies" holding it
        assert metric(rt, "understudy_budget_reserved", "usd") == 0.25
    assert stored(db, "conv-1") == (0.0, 0.25, 0, 0)
    async with us.Runtime(store=db) as rt, rt.budget(name="conv-1", persistent=True) as budget:
        assert budget.spent == us.Usage(0, 0.25) and budget.reserved == us.Usage(0, 0.0)
        assert metric(rt, "understudy_budget_spent", "usd") == 0.25
    assert stored(db, "conv-1") == (0.25, 0.0, 0, 0)


async def test_a_hierarchy_of_persistent_budgets_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with (
        us.Runtime(store=db) as rt,
        rt.budget(name="tenant-a", usd=1.0, persistent=True),
        rt.budget(name="conv-1", usd=0.5, persistent=True) as conv,
    ):
        async with rt.budget(name="call", usd=0.2) as call:  # in memory
            call.reserve(usd=0.1).settle(usd=0.15)
        assert conv.spent_usd == pytest.approx(0.15)
    async with (
        us.Runtime(store=db) as rt,
        rt.budget(name="tenant-a", persistent=True) as tenant,
    ):
        assert tenant.spent_usd == pytest.approx(0.15)
        async with rt.budget(name="conv-2", usd=0.5, persistent=True) as conv2:
            conv2.charge(usd=0.05)
        assert tenant.spent_usd == pytest.approx(0.2)
        with pytest.raises(ValueError, match="larger than the enclosing budget"):
            async with rt.budget(name="conv-3", usd=2.0, persistent=True):
                pass


async def test_persistent_budget_bad_input(tmp_path: Path) -> None:
    async with us.Runtime() as rt:
        with pytest.raises(ValueError, match="no store"):
            async with rt.budget(name="x", usd=1.0, persistent=True):
                pass
    with pytest.raises(ValueError, match="needs a name"):
        rt.budget(usd=1.0, persistent=True)
    with pytest.raises(TypeError, match="persistent must be a bool"):
        rt.budget(name="x", persistent="yes")  # type: ignore[arg-type]
    async with us.Runtime(store=tmp_path / "app.db") as rt:
        with pytest.raises(RuntimeError, match="async with"):
            rt.budget(name="x", usd=1.0, persistent=True).open()
        with pytest.raises(ValueError, match="printable"):
            rt.budget(name="a\nb", usd=1.0, persistent=True)


async def test_concurrent_reservers_across_a_restart_never_overspend(tmp_path: Path) -> None:
    await overspend_run(tmp_path / "app.db", random.Random(7), 60, 1000, restart_at=30)


async def overspend_run(
    db: Path,
    rng: random.Random,
    reservers: int,
    limit: int,
    restart_at: int,
    plan: list[tuple[int, float, int]] | None = None,
) -> None:
    """``reservers`` tasks reserve on one persistent budget, wait, settle at most what they
    reserved; half way the runtime ends with reservations open (a dead process) and a new
    one reopens the budget. The settled total never goes over the limit."""
    if plan is None:
        plan = [(rng.randint(1, 200), rng.random(), rng.randint(0, 5)) for _ in range(reservers)]
    for first, phase in ((True, plan[:restart_at]), (False, plan[restart_at:])):
        async with (
            us.Runtime(store=db) as rt,
            rt.budget(name="conv", tokens=limit, persistent=True) as budget,
        ):

            async def reserver(tokens: int, used: float, waits: int, dies: bool = first) -> None:
                try:
                    reservation = budget.reserve(tokens=tokens)
                except us.BudgetExceeded:
                    return
                for _ in range(waits):
                    await anyio.lowlevel.checkpoint()
                if dies and waits == 5:
                    await anyio.sleep_forever()  # dies with the runtime, never settled
                reservation.settle(tokens=int(tokens * used))
                assert budget.spent_tokens <= limit

            async with anyio.create_task_group() as tg:
                for tokens, used, waits in phase:
                    tg.start_soon(reserver, tokens, used, waits)
                for _ in range(8):
                    await anyio.lowlevel.checkpoint()
                tg.cancel_scope.cancel()
            assert budget.spent_tokens + budget.reserved_tokens <= limit
    _, _, spent_tokens, reserved_tokens = stored(db, "conv")
    assert spent_tokens + reserved_tokens <= limit


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    plan=st.lists(
        st.tuples(st.integers(1, 300), st.floats(0, 1), st.integers(0, 5)), min_size=1, max_size=40
    ),
    limit=st.integers(1, 2000),
    restart_at=st.integers(0, 40),
)
def test_property_no_schedule_settles_over_the_limit(
    tmp_path_factory: pytest.TempPathFactory,
    plan: list[tuple[int, float, int]],
    limit: int,
    restart_at: int,
) -> None:
    db = tmp_path_factory.mktemp("budget") / "app.db"
    for backend in ("asyncio", "trio"):
        anyio.run(
            lambda: overspend_run(db, random.Random(0), 0, limit, restart_at, plan),
            backend=backend,
        )


def test_sigkill_keeps_what_a_durable_ask_acknowledged(tmp_path: Path) -> None:
    """A process spends on a persistent budget and then makes a durable ask after each
    settle; it is SIGKILLed at a random moment. The store holds at least what was spent
    before the last acknowledged ask, and never more than the limit."""
    db = tmp_path / "app.db"
    for backend in ("asyncio", "trio"):
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(db), backend],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        acknowledged = 0.0
        for lines, line in enumerate(child.stdout, 1):
            acknowledged = float(line)
            if lines == 40:
                break
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        spent, reserved, _, _ = stored(db, "conv-kill")
        assert spent + reserved >= acknowledged - 1e-9
        assert spent + reserved <= 5.0 + 1e-9


async def test_an_enclosing_deadline_does_not_shorten_a_shared_budget(tmp_path: Path) -> None:
    async with us.Runtime(store=tmp_path / "app.db") as rt:
        async with (
            rt.budget(name="request", seconds=0.5),
            rt.budget(name="conv-1", seconds=600, persistent=True) as conv,
        ):
            assert conv.time_left() > 590  # its own deadline; the sends carry 0.5 s
        async with rt.budget(name="conv-1", persistent=True) as again:
            assert again is conv and again.time_left() > 590

"""The ask path's one-shot wake-up (understudy._wake.Wake), on both backends."""

from __future__ import annotations

import anyio
import pytest

from understudy._wake import Wake

pytestmark = pytest.mark.anyio


async def test_a_waiter_is_woken_by_set_and_a_set_wake_returns_at_once() -> None:
    wake = Wake()
    woken: list[str] = []

    async def waiter(name: str) -> None:
        await wake.wait()
        woken.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "first")
        tg.start_soon(waiter, "second")
        await anyio.wait_all_tasks_blocked()
        assert woken == [] and not wake.is_set()
        wake.set()
        wake.set()  # a second set changes nothing
    assert sorted(woken) == ["first", "second"] and wake.is_set()
    with anyio.fail_after(1):
        await wake.wait()  # already set: returns (after a checkpoint)


async def test_a_cancelled_waiter_is_withdrawn_and_a_later_set_wakes_the_others() -> None:
    wake = Wake()
    woken: list[str] = []

    async def waiter(name: str, scope: anyio.CancelScope) -> None:
        with scope:
            await wake.wait()
            woken.append(name)

    gone, stays = anyio.CancelScope(), anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "gone", gone)
        tg.start_soon(waiter, "stays", stays)
        await anyio.wait_all_tasks_blocked()
        gone.cancel()
        await anyio.wait_all_tasks_blocked()
        wake.set()
    assert woken == ["stays"] and gone.cancelled_caught and not stays.cancelled_caught


async def test_wait_is_a_checkpoint_even_when_set() -> None:
    wake = Wake()
    wake.set()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await wake.wait()
        pytest.fail("a cancelled scope must be delivered at wait()")
    assert scope.cancelled_caught


async def test_a_timeout_around_wait_fires_when_nothing_sets_it() -> None:
    wake = Wake()
    with anyio.move_on_after(0.01) as scope:
        await wake.wait()
    assert scope.cancelled_caught and not wake.is_set()
    wake.set()  # nobody waits any more: nothing to wake, nothing raised
    assert wake.is_set()

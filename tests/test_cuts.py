"""Deadlines that cancel the work (issue 11 §3), a handler's own cancellation (issue 12 item
13), and the class-creation checks (issue 12 items 4 and 7, issue 11 §5)."""

from __future__ import annotations

import asyncio

import anyio
import msgspec
import pytest
from helpers import GUARD, Probe

import understudy as us

pytestmark = pytest.mark.anyio


class Slow(us.Request[str], frozen=True):
    seconds: float


class Ping(us.Request[str], frozen=True):
    pass


class Add(us.Message, frozen=True):
    amount: int


class SlowAdd(us.Request[int], frozen=True):
    amount: int


class GetTotal(us.Request[int], frozen=True):
    pass


class Worker(us.Actor):
    class State(msgspec.Struct):
        total: int = 0

    state: State

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    async def slow(self, msg: Slow) -> str:
        self.probe.record("started")
        try:
            await anyio.sleep(msg.seconds)
        finally:
            self.probe.record("finally")  # runs when the handler is cut
        return "done"

    async def ping(self, msg: Ping) -> str:
        self.probe.record("ping")
        return "pong"

    async def add(self, msg: Add) -> None:
        self.state.total += msg.amount

    async def slow_add(self, msg: SlowAdd) -> int:
        self.state.total += msg.amount  # changed before the deadline cuts it
        await anyio.sleep(10)
        return self.state.total

    async def get_total(self, msg: GetTotal) -> int:
        return self.state.total


class PersistentWorker(Worker):
    persistent = True


async def test_a_handler_still_running_at_its_deadline_is_cancelled_and_the_actor_goes_on() -> None:
    probe = Probe()
    async with us.Runtime() as rt:
        ref = await rt.spawn(lambda: Worker(probe), name="w")
        with anyio.fail_after(GUARD):
            with pytest.raises(us.DeadlineExceeded):
                await ref.ask(Slow(10.0), timeout=0.05)
            assert await ref.ask(Ping(), timeout=GUARD) == "pong"  # not stuck behind it
        assert probe.items == ["started", "finally", "ping"]
        assert rt.dead_letters.counts == {"deadline": 1}
        assert rt.tree()[0].restarts == 0
        exposition = rt.metrics.exposition()
    assert 'understudy_timeouts_total{actor="w",kind="deadline"} 1.0' in exposition
    assert 'understudy_messages_total{actor="w",outcome="timeout"} 1.0' in exposition


async def test_a_cut_persistent_handler_leaves_nothing_half_applied(tmp_path) -> None:  # type: ignore[no-untyped-def]
    probe = Probe()
    async with us.Runtime(store=tmp_path / "w.db") as rt:
        ref = await rt.spawn(lambda: PersistentWorker(probe), name="w")
        await ref.tell(Add(5))
        with pytest.raises(us.DeadlineExceeded):
            await ref.ask(SlowAdd(100), timeout=0.05)
        assert await ref.ask(GetTotal(), timeout=GUARD) == 5
    async with us.Runtime(store=tmp_path / "w.db") as rt:
        ref = await rt.spawn(lambda: PersistentWorker(probe), name="w")
        assert await ref.ask(GetTotal(), timeout=GUARD) == 5


async def test_a_cancelled_asker_skips_its_queued_message_and_cuts_a_running_one() -> None:
    probe = Probe()
    async with us.Runtime() as rt:
        ref = await rt.spawn(lambda: Worker(probe), name="w")
        async with anyio.create_task_group() as tg:
            tg.start_soon(ref.ask, Slow(10.0))  # runs: cut when its asker goes
            await probe.wait_for(1)
            tg.start_soon(ref.ask, Slow(10.0))  # queued behind it: skipped, never started
            await anyio.sleep(0.01)
            tg.cancel_scope.cancel()  # both askers cancelled (a client disconnect)
        with anyio.fail_after(GUARD):
            assert await ref.ask(Ping()) == "pong"
        assert probe.items == ["started", "finally", "ping"]
        assert rt.dead_letters.counts == {"cancelled": 2}


class Helper(us.Request[str], frozen=True):
    pass


class SelfCanceller(us.Actor):
    async def helper(self, msg: Helper) -> str:
        if anyio.get_cancelled_exc_class() is asyncio.CancelledError:  # (sniffio-free check)
            task = asyncio.ensure_future(anyio.sleep(10))
            task.cancel()
            await task  # its CancelledError escapes into the handler
        else:  # trio: cancelling a helper's scope never escapes; the handler goes on
            async with anyio.create_task_group() as tg:
                tg.start_soon(anyio.sleep, 10)
                tg.cancel_scope.cancel()
        return "helped"

    async def ping(self, msg: Ping) -> str:
        return "pong"


async def test_a_handler_that_cancels_and_awaits_a_helper_fails_only_that_message(
    anyio_backend: str,
) -> None:
    async with us.Runtime() as rt:
        ref = await rt.spawn(SelfCanceller, name="s")
        if anyio_backend == "asyncio":
            with pytest.raises(us.HandlerCancelled, match="CancelledError escape"):
                await ref.ask(Helper(), timeout=GUARD)
            assert rt.dead_letters.counts.get("crashed", 0) == 0
        else:
            assert await ref.ask(Helper(), timeout=GUARD) == "helped"
        assert await ref.ask(Ping(), timeout=GUARD) == "pong"  # the runtime lives on
        assert "s" in rt


# -- checks at class creation ------------------------------------------------------------------


def test_a_state_field_without_a_default_is_refused_at_class_creation() -> None:
    with pytest.raises(TypeError, match=r"Needy.State: field\(s\) \['owner'\] have no default"):

        class Needy(us.Actor):
            class State(msgspec.Struct):
                owner: str
                balance: int = 0


async def test_a_state_without_defaults_never_reaches_spawn() -> None:
    # On main this made spawn raise a misleading Killed and cancelled the runtime.
    async with us.Runtime() as rt:
        with pytest.raises(TypeError, match="have no default"):

            class Needy(us.Actor):
                class State(msgspec.Struct):
                    owner: str

        assert await rt.spawn(lambda: Worker(Probe()), name="fine")


@pytest.mark.parametrize(
    ("annotation", "instead"),
    [
        ("list[int]", "tuple"),
        ("dict[str, int]", "frozen Struct"),
        ("set[str]", "frozenset"),
        ("tuple[list[int], ...]", "tuple"),
        ("int | bytearray", "bytes"),
        ("Loose", "frozen=True"),
    ],
)
def test_a_message_field_that_is_a_mutable_container_is_refused(
    annotation: str, instead: str
) -> None:
    namespace: dict[str, object] = {"us": us, "msgspec": msgspec}
    exec("class Loose(msgspec.Struct):\n    x: int = 0", namespace)
    with pytest.raises(TypeError, match=f"field 'items' holds .*{instead}"):
        exec(f"class Bag(us.Message, frozen=True):\n    items: {annotation}", namespace)


async def test_deeply_frozen_messages_cannot_be_changed_by_their_receiver() -> None:
    class Frozen(msgspec.Struct, frozen=True):
        tags: tuple[str, ...] = ()

    class Bag(us.Message, frozen=True):
        items: tuple[int, ...]
        names: frozenset[str] = frozenset()
        nested: Frozen = Frozen()

    class Keeper(us.Actor):
        async def bag(self, msg: Bag) -> None:
            with pytest.raises((AttributeError, TypeError)):
                msg.items.append(4)  # type: ignore[attr-defined]

    async with us.Runtime() as rt:
        sent = Bag((1, 2, 3))
        await (await rt.spawn(Keeper, name="k")).tell(sent)
    assert sent.items == (1, 2, 3)


def test_a_handler_whose_return_type_is_not_the_requests_is_refused() -> None:
    with pytest.raises(TypeError, match=r"Liar.slow\(\) returns int, but Slow is a Request\[str\]"):

        class Liar(us.Actor):
            async def slow(self, msg: Slow) -> int:
                return 1

    class Honest(us.Actor):  # subclasses, None for Request[None], and no annotation pass
        async def slow(self, msg: Slow) -> str:
            return "ok"

        async def ping(self, msg: Ping):  # type: ignore[no-untyped-def]
            return "pong"

"""Logging: the ``understudy`` logger, records stamped with actor and correlation id, each
failure logged once with its traceback, nothing printed."""

import functools
import logging

import anyio
import pytest
from helpers import GUARD, Probe

import understudy as us

pytestmark = pytest.mark.anyio


class Deposit(us.Message, frozen=True):
    amount: int


class Crash(us.Request[None], frozen=True):
    pass


class Boom(us.Message, frozen=True):
    pass


class Ping(us.Request[str], frozen=True):
    pass


class Teller(us.Actor):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    async def deposit(self, msg: Deposit) -> None:
        self.probe.record(self.ctx.correlation_id)
        self.ctx.log.info("deposit of %d", msg.amount)

    async def crash(self, msg: Crash) -> None:
        self.probe.record(self.ctx.correlation_id)
        raise ArithmeticError("ledger does not balance")

    async def ping(self, msg: Ping) -> str:
        return "pong"


def records_of(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "understudy" and r.levelno >= level]


async def test_a_handlers_log_records_carry_the_actor_and_correlation_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="understudy")
    probe = Probe()
    async with us.Runtime() as rt:
        ref = await rt.spawn(functools.partial(Teller, probe), name="teller")
        await ref.tell(Deposit(5))
        await ref.tell(Deposit(7))
        await probe.wait_for(2)
    records = [r for r in records_of(caplog, logging.INFO) if "deposit" in r.getMessage()]
    assert [r.getMessage() for r in records] == ["deposit of 5", "deposit of 7"]
    assert [r.actor for r in records] == ["teller", "teller"]  # type: ignore[attr-defined]
    assert [r.correlation_id for r in records] == probe.items  # type: ignore[attr-defined]


async def test_a_failure_is_logged_once_with_its_traceback_and_nothing_is_printed(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG, logger="understudy")
    probe = Probe()
    async with us.Runtime() as rt:
        with rt.events.subscribe(us.ActorTerminated) as events:
            ref = await rt.spawn(functools.partial(Teller, probe), name="teller")
            with pytest.raises(ArithmeticError) as info:
                await ref.ask(Crash(), timeout=GUARD)
            with anyio.fail_after(GUARD):
                await anext(events)
    with_traceback = [r for r in records_of(caplog, logging.DEBUG) if r.exc_info]
    assert len(with_traceback) == 1
    [record] = with_traceback
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert record.exc_info[1] is info.value
    assert record.actor == "teller"  # type: ignore[attr-defined]
    assert record.correlation_id == probe.items[0]  # type: ignore[attr-defined]
    assert "teller" in record.getMessage()
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "")


async def test_a_child_failure_and_the_parent_failure_it_causes_are_each_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="understudy")

    class Child(us.Actor):
        async def boom(self, msg: Boom) -> None:
            raise LookupError("child broke")

    class Parent(us.Actor):
        async def on_start(self) -> None:
            self.child = await self.ctx.spawn(Child, name="child")

        async def boom(self, msg: Boom) -> None:
            await self.child.tell(msg)

    async with us.Runtime() as rt:
        with rt.events.subscribe(us.ActorTerminated) as events:
            parent = await rt.spawn(Parent, name="parent")
            await parent.tell(Boom())
            with anyio.fail_after(GUARD):
                ended = [(await anext(events)).actor for _ in range(2)]
    assert ended == ["child", "parent"]
    logged = [(r.actor, type(r.exc_info[1])) for r in records_of(caplog, 0) if r.exc_info]  # type: ignore[attr-defined, index]
    assert logged == [("child", LookupError), ("parent", us.ChildFailed)]


async def test_a_normal_stop_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="understudy")
    async with us.Runtime() as rt:
        ref = await rt.spawn(functools.partial(Teller, Probe()), name="teller")
        assert await ref.ask(Ping(), timeout=GUARD) == "pong"
        await rt.stop(ref)
        await ref.tell(Deposit(1))  # a dead letter is counted, not logged as an error
    assert records_of(caplog, logging.WARNING) == []

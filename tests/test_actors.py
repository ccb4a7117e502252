"""Actors: handlers found by annotation, state, tell/ask, failures, lifecycle hooks."""

import functools
import gc
import math
import typing
import weakref

import anyio
import msgspec
import pytest
from helpers import GUARD, Probe

import understudy as us

pytestmark = pytest.mark.anyio


class Deposit(us.Message, frozen=True):
    amount: int


class Withdraw(us.Message, frozen=True):
    amount: int


class GetBalance(us.Request[int], frozen=True):
    pass


class GetHistory(us.Request[list[str]], frozen=True):
    pass


class WithdrawAll(us.Request[int], frozen=True):
    """Withdraw and reply with the new balance."""

    amount: int


class Fail(us.Request[None], frozen=True):
    reason: str = "boom"


class Hold(us.Request[str], frozen=True):
    """Handled only once the actor's gate opens."""


class Audit(us.Message, frozen=True):
    """A base type: one handler serves it and its subclasses."""


class Login(Audit, frozen=True):
    user: str


class Logout(Audit, frozen=True):
    user: str


class Ping(us.Request[str], frozen=True):
    pass


class Unhandled(us.Message, frozen=True):
    pass


class Loose(Audit, frozen=False):
    """Not frozen: a handler for its frozen base must still refuse it."""


class PlainStruct(msgspec.Struct, frozen=True):
    """A frozen Struct that is not a message."""

    amount: int


class Token:
    """A reply value whose lifetime the late-reply test watches."""


class Fetch(us.Request[Token], frozen=True):
    pass


class Account(us.Actor):
    """The canonical bank account: several handlers, a State, requests and one-way messages."""

    class State(msgspec.Struct):
        balance: int = 0
        history: list[str] = msgspec.field(default_factory=list)

    async def deposit(self, msg: Deposit) -> None:
        self.state.balance += msg.amount
        self.state.history.append(f"+{msg.amount}")

    async def withdraw(self, msg: Withdraw) -> None:
        if msg.amount > self.state.balance:
            raise ValueError(f"insufficient funds for {msg.amount}")
        self.state.balance -= msg.amount
        self.state.history.append(f"-{msg.amount}")

    async def withdraw_all(self, msg: WithdrawAll) -> int:
        await self.withdraw(Withdraw(msg.amount))
        return self.state.balance

    async def balance(self, msg: GetBalance) -> int:
        return self.state.balance

    async def history(self, msg: GetHistory) -> list[str]:
        return list(self.state.history)

    async def fail(self, msg: Fail) -> None:
        raise RuntimeError(msg.reason)


class Gated(us.Actor):
    """Answers ``Hold`` only after ``gate`` is set; records what it handled."""

    def __init__(self, gate: anyio.Event, probe: Probe) -> None:
        self.gate = gate
        self.probe = probe

    async def hold(self, msg: Hold) -> str:
        self.probe.record("holding")
        await self.gate.wait()
        return "released"

    async def ping(self, msg: Ping) -> str:
        self.probe.record("ping")
        return "pong"

    async def fetch(self, msg: Fetch) -> Token:
        await self.gate.wait()
        token = Token()
        self.probe.record(weakref.ref(token))
        return token


# -- handlers and dispatch --


async def test_ask_returns_the_handlers_reply_after_every_earlier_tell() -> None:
    async with us.Runtime() as rt:
        account = await rt.spawn(Account, name="acct")
        for amount in range(1, 101):
            await account.tell(Deposit(amount))
        await account.tell(Withdraw(50))
        assert await account.ask(GetBalance(), timeout=GUARD) == 5050 - 50
        history = await account.ask(GetHistory(), timeout=GUARD)
    assert history == [f"+{n}" for n in range(1, 101)] + ["-50"]


async def test_each_message_type_goes_to_its_own_handler() -> None:
    class Two(us.Actor):
        async def one(self, msg: Deposit) -> None:
            self.seen = [*getattr(self, "seen", []), ("one", msg.amount)]

        async def two(self, msg: Withdraw) -> None:
            self.seen = [*getattr(self, "seen", []), ("two", msg.amount)]

        async def report(self, msg: GetHistory) -> list[str]:
            return [f"{name}:{amount}" for name, amount in self.seen]

    async with us.Runtime() as rt:
        ref = await rt.spawn(Two)
        await ref.tell(Deposit(1))
        await ref.tell(Withdraw(2))
        await ref.tell(Deposit(3))
        assert await ref.ask(GetHistory(), timeout=GUARD) == ["one:1", "two:2", "one:3"]


async def test_a_union_annotation_handles_every_member() -> None:
    class Tally(us.Actor):
        class State(msgspec.Struct):
            total: int = 0

        async def move(self, msg: Deposit | Withdraw) -> None:
            sign = 1 if isinstance(msg, Deposit) else -1
            self.state.total += sign * msg.amount

        async def get(self, msg: typing.Union[GetBalance, GetHistory]) -> typing.Any:  # noqa: UP007
            if isinstance(msg, GetBalance):
                return self.state.total
            return [str(self.state.total)]

    async with us.Runtime() as rt:
        ref = await rt.spawn(Tally)
        await ref.tell(Deposit(10))
        await ref.tell(Withdraw(3))
        assert await ref.ask(GetBalance(), timeout=GUARD) == 7
        assert await ref.ask(GetHistory(), timeout=GUARD) == ["7"]


async def test_a_handler_for_a_base_message_type_handles_its_subclasses() -> None:
    class Auditor(us.Actor):
        class State(msgspec.Struct):
            seen: list[str] = msgspec.field(default_factory=list)

        async def audit(self, msg: Audit) -> None:
            self.state.seen.append(f"{type(msg).__name__}:{getattr(msg, 'user', '')}")

        async def report(self, msg: GetHistory) -> list[str]:
            return self.state.seen

    async with us.Runtime() as rt:
        ref = await rt.spawn(Auditor)
        await ref.tell(Login("ann"))
        await ref.tell(Logout("ann"))
        await ref.tell(Audit())
        seen = await ref.ask(GetHistory(), timeout=GUARD)
    assert seen == ["Login:ann", "Logout:ann", "Audit:"]


async def test_methods_that_are_not_handlers_are_left_alone() -> None:
    class Helpful(us.Actor):
        def double(self, n: int) -> int:
            return 2 * n

        async def fetch_remote(self, url: str) -> str:
            return url

        async def balance(self, msg: GetBalance) -> int:
            return self.double(21)

    async with us.Runtime() as rt:
        ref = await rt.spawn(Helpful)
        assert await ref.ask(GetBalance(), timeout=GUARD) == 42


# -- state --


async def test_every_spawn_starts_from_a_fresh_state() -> None:
    async with us.Runtime() as rt:
        first = await rt.spawn(Account, name="a")
        second = await rt.spawn(Account, name="b")
        await first.tell(Deposit(5))
        assert await first.ask(GetHistory(), timeout=GUARD) == ["+5"]
        assert await second.ask(GetHistory(), timeout=GUARD) == []
        await rt.stop(first)
        again = await rt.spawn(Account, name="a")
        assert await again.ask(GetBalance(), timeout=GUARD) == 0
        assert await again.ask(GetHistory(), timeout=GUARD) == []


async def test_an_actor_without_a_state_class_has_state_none() -> None:
    class Stateless(us.Actor):
        async def ping(self, msg: Ping) -> str:
            return repr(self.state)

    async with us.Runtime() as rt:
        ref = await rt.spawn(Stateless)
        assert await ref.ask(Ping(), timeout=GUARD) == "None"


# -- definition errors, at class definition --


def test_two_handlers_for_one_message_type_fail_at_class_definition() -> None:
    with pytest.raises(TypeError, match=r"Deposit is handled by both first\(\) and second\(\)"):

        class Twice(us.Actor):
            async def first(self, msg: Deposit) -> None: ...

            async def second(self, msg: Deposit) -> None: ...


def test_a_union_overlapping_another_handler_fails_at_class_definition() -> None:
    with pytest.raises(TypeError, match="Deposit is handled by both"):

        class Overlap(us.Actor):
            async def one(self, msg: Deposit) -> None: ...

            async def both(self, msg: Deposit | Withdraw) -> None: ...


def test_a_union_mixing_messages_and_other_types_fails_at_class_definition() -> None:
    with pytest.raises(TypeError, match=r"Mixed\.handle: every member of the union"):

        class Mixed(us.Actor):
            async def handle(self, msg: Deposit | int) -> None: ...


def test_a_handler_that_needs_more_than_the_message_fails_at_class_definition() -> None:
    with pytest.raises(TypeError, match=r"Greedy\.handle: a handler takes exactly one message"):

        class Greedy(us.Actor):
            async def handle(self, msg: Deposit, extra: int) -> None: ...


def test_a_handler_for_a_mutable_message_type_fails_at_class_definition() -> None:
    with pytest.raises(TypeError, match="Loose is not frozen"):

        class Careless(us.Actor):
            async def handle(self, msg: Loose) -> None: ...


def test_a_state_that_is_not_a_struct_fails_at_class_definition() -> None:
    with pytest.raises(TypeError, match=r"Bad\.State must be a msgspec\.Struct"):

        class Bad(us.Actor):
            class State:
                balance = 0


# -- bad messages, refused at the call site --


@pytest.mark.parametrize(
    ("bad", "type_name"),
    [
        ({"amount": 1}, "builtins.dict"),
        (PlainStruct(1), "PlainStruct"),
        ("deposit", "builtins.str"),
    ],
)
async def test_sending_something_that_is_not_a_message_raises_type_error(
    bad: object, type_name: str
) -> None:
    async with us.Runtime() as rt:
        account = await rt.spawn(Account, name="acct")
        with pytest.raises(TypeError, match=rf"{type_name}.* is not a message.*'acct'"):
            await account.tell(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="is not a message"):
            await account.ask(bad, timeout=GUARD)  # type: ignore[arg-type]
        assert await account.ask(GetHistory(), timeout=GUARD) == []
    assert rt.dead_letters.total == 0


async def test_a_message_without_a_handler_raises_type_error_listing_accepted_types() -> None:
    async with us.Runtime() as rt:
        account = await rt.spawn(Account, name="acct")
        with pytest.raises(TypeError) as info:
            await account.tell(Unhandled())
        text = str(info.value)
        assert "'acct'" in text
        assert "Account" in text
        assert "no handler for Unhandled" in text
        assert "accepts: Deposit, Fail, GetBalance, GetHistory, Withdraw, WithdrawAll" in text
        with pytest.raises(TypeError, match="no handler for Ping"):
            await account.ask(Ping(), timeout=GUARD)
    assert rt.dead_letters.total == 0


async def test_a_message_that_is_not_frozen_is_refused() -> None:
    class Auditor(us.Actor):
        async def audit(self, msg: Audit) -> None: ...

    async with us.Runtime() as rt:
        ref = await rt.spawn(Auditor, name="auditor")
        with pytest.raises(TypeError, match=r"Loose is not frozen.*frozen=True"):
            await ref.tell(Loose())
    assert rt.dead_letters.total == 0


# -- ask: failures and timeouts --


async def test_ask_raises_the_handlers_exception_with_a_note_naming_the_actor() -> None:
    async with us.Runtime() as rt:
        account = await rt.spawn(Account, name="acct")
        await account.tell(Deposit(5))
        with pytest.raises(ValueError, match="insufficient funds for 10") as info:
            await account.ask(WithdrawAll(10), timeout=GUARD)
    assert any("'acct'" in note for note in info.value.__notes__)


async def test_an_actor_whose_handler_raised_stops_with_that_error() -> None:
    async with us.Runtime() as rt:
        with rt.events.subscribe(us.ActorTerminated) as events:
            account = await rt.spawn(Account, name="acct")
            with pytest.raises(RuntimeError, match="kaboom") as info:
                await account.ask(Fail("kaboom"), timeout=GUARD)
            with anyio.fail_after(GUARD):
                ended = await anext(events)
        assert isinstance(ended, us.ActorTerminated)
        assert (ended.actor, ended.reason, ended.error) == ("acct", "failed", info.value)
        assert "acct" not in rt
        assert rt.ref("acct").live() is None
        with pytest.raises(us.ActorStopped, match="'acct'"):
            await account.ask(GetBalance(), timeout=GUARD)


async def test_requests_queued_behind_a_crash_get_actor_stopped() -> None:
    gate = anyio.Event()
    probe = Probe()

    class CrashAfterGate(Gated):
        async def fail(self, msg: Fail) -> None:
            raise RuntimeError(msg.reason)

    results: dict[type, object] = {}

    async def ask(ref: us.Ref, msg: us.Request[typing.Any]) -> None:
        try:
            results[type(msg)] = await ref.ask(msg, timeout=GUARD)
        except Exception as exc:
            results[type(msg)] = exc

    async with us.Runtime() as rt:
        ref = await rt.spawn(functools.partial(CrashAfterGate, gate, probe), name="c")
        async with anyio.create_task_group() as tg:
            for msg in (Hold(), Fail(), Ping()):
                tg.start_soon(ask, ref, msg)
                await anyio.wait_all_tasks_blocked()
            gate.set()
    released, crashed, stopped = results[Hold], results[Fail], results[Ping]
    assert released == "released"
    assert isinstance(crashed, RuntimeError)
    assert isinstance(stopped, us.ActorStopped)
    assert "'c'" in str(stopped)
    assert probe.items == ["holding"]
    letters = [(type(letter.message), letter.reason) for letter in rt.dead_letters]
    assert letters == [(Fail, "crashed"), (Ping, "stopped")]


async def test_ask_times_out_with_timeout_error_naming_the_actor_and_request() -> None:
    gate = anyio.Event()
    async with us.Runtime() as rt:
        ref = await rt.spawn(functools.partial(Gated, gate, Probe()), name="slow")
        with pytest.raises(TimeoutError, match=r"ask\(Hold\) to actor 'slow'.*0\.01 s"):
            await ref.ask(Hold(), timeout=0.01)
        gate.set()
        assert await ref.ask(Ping(), timeout=GUARD) == "pong"


class Shielded(Gated):
    """Fetches under a shield: the cut at the ask's deadline cannot stop it."""

    async def fetch(self, msg: Fetch) -> Token:
        with anyio.CancelScope(shield=True):
            return await super().fetch(msg)


async def test_a_reply_that_arrives_after_the_timeout_is_dropped_and_not_kept() -> None:
    gate = anyio.Event()
    probe = Probe()
    async with us.Runtime() as rt:
        with rt.events.subscribe() as events:
            ref = await rt.spawn(functools.partial(Shielded, gate, probe), name="late")
            with pytest.raises(TimeoutError):
                await ref.ask(Fetch(), timeout=0.01)
            gate.set()
            # The late reply is made (the token exists) but goes nowhere.
            await probe.wait_for(1)
            assert await ref.ask(Ping(), timeout=GUARD) == "pong"
            assert await ref.ask(Ping(), timeout=GUARD) == "pong"
            token_ref = probe.items[0]
            with anyio.fail_after(GUARD):  # the deadline alarm lets go of it soon after
                while gc.collect() >= 0 and token_ref() is not None:
                    await anyio.sleep(us.actors.CUT_GRACE)
            assert token_ref() is None
            assert "late" in rt
            assert rt.dead_letters.total == 0
            kinds = [type(event).__name__ for event in iter(events.get_nowait, None)]
        assert kinds == ["ActorStarted"]


@pytest.mark.parametrize("timeout", [0, -1, -0.5, math.nan])
async def test_a_non_positive_ask_timeout_is_refused(timeout: float) -> None:
    async with us.Runtime() as rt:
        account = await rt.spawn(Account, name="acct")
        with pytest.raises(ValueError, match=r"ask\(GetBalance\) to 'acct'.*timeout must be"):
            await account.ask(GetBalance(), timeout=timeout)
        assert await account.ask(GetHistory(), timeout=GUARD) == []


@pytest.mark.parametrize("timeout", ["1", True])
async def test_an_ask_timeout_that_is_not_a_number_is_refused(timeout: object) -> None:
    async with us.Runtime() as rt:
        account = await rt.spawn(Account, name="acct")
        with pytest.raises(TypeError, match="timeout must be a number of seconds"):
            await account.ask(GetBalance(), timeout=timeout)  # type: ignore[arg-type]


async def test_ask_without_a_timeout_waits_for_the_reply() -> None:
    async with us.Runtime() as rt:
        account = await rt.spawn(Account)
        await account.tell(Deposit(3))
        with anyio.fail_after(GUARD):
            assert await account.ask(GetBalance()) == 3


# -- lifecycle hooks --


async def test_on_start_runs_before_the_first_message_and_on_stop_after_the_last() -> None:
    probe = Probe()

    class Hooks(us.Actor):
        async def on_start(self) -> None:
            probe.record("start")

        async def deposit(self, msg: Deposit) -> None:
            probe.record(msg.amount)

        async def ping(self, msg: Ping) -> str:
            return "pong"

        async def on_stop(self) -> None:
            probe.record("stop")

    async with us.Runtime() as rt:
        ref = await rt.spawn(Hooks)
        assert probe.items == ["start"]
        await ref.tell(Deposit(1))
        await ref.tell(Deposit(2))
        assert await ref.ask(Ping(), timeout=GUARD) == "pong"
        await rt.stop(ref)
    assert probe.items == ["start", 1, 2, "stop"]


async def test_an_on_start_that_raises_makes_spawn_raise_and_leaves_no_actor() -> None:
    class Broken(us.Actor):
        async def on_start(self) -> None:
            raise ConnectionError("no database")

        async def ping(self, msg: Ping) -> str:
            return "pong"

    async with us.Runtime() as rt:
        with rt.events.subscribe() as events:
            with pytest.raises(ConnectionError, match="no database") as info:
                await rt.spawn(Broken, name="db")
            assert any("'db'" in note for note in info.value.__notes__)
            assert "db" not in rt
            assert rt.ref("db").live() is None
            assert events.get_nowait() is None  # it never started, so nothing stopped
        # The name is free again.
        ok = await rt.spawn(Account, name="db")
        assert await ok.ask(GetBalance(), timeout=GUARD) == 0


async def test_an_actor_can_be_spawned_from_a_factory() -> None:
    class Configured(us.Actor):
        def __init__(self, greeting: str) -> None:
            self.greeting = greeting

        async def ping(self, msg: Ping) -> str:
            return self.greeting

    async with us.Runtime() as rt:
        ref = await rt.spawn(functools.partial(Configured, "hello"), name="cfg")
        assert await ref.ask(Ping(), timeout=GUARD) == "hello"


async def test_a_factory_is_called_once_per_spawn() -> None:
    made: list[str] = []

    class Counted(us.Actor):
        def __init__(self) -> None:
            made.append("instance")

        async def ping(self, msg: Ping) -> str:
            return "pong"

    async with us.Runtime() as rt:
        ref = await rt.spawn(lambda: Counted())
        assert await ref.ask(Ping(), timeout=GUARD) == "pong"
        assert made == ["instance"]
        await rt.spawn(lambda: Counted())
    assert made == ["instance", "instance"]


async def test_an_on_start_that_raises_takes_the_children_it_spawned_with_it() -> None:
    class Child(us.Actor):
        async def ping(self, msg: Ping) -> str:
            return "pong"

    class Parent(us.Actor):
        async def on_start(self) -> None:
            await self.ctx.spawn(Child, name="child")
            raise OSError("parent could not start")

    async with us.Runtime() as rt:
        with pytest.raises(OSError, match="parent could not start"):
            await rt.spawn(Parent, name="parent")
        assert "parent" not in rt
        assert "child" not in rt
        again = await rt.spawn(Child, name="child")  # the name is free again
        assert await again.ask(Ping(), timeout=GUARD) == "pong"


async def test_an_on_stop_that_raises_turns_a_stop_into_a_failure() -> None:
    class Sloppy(us.Actor):
        async def ping(self, msg: Ping) -> str:
            return "pong"

        async def on_stop(self) -> None:
            raise BufferError("could not flush")

    async with us.Runtime() as rt:
        with rt.events.subscribe(us.ActorTerminated) as events:
            ref = await rt.spawn(Sloppy, name="sloppy")
            await rt.stop(ref)
            ended = events.get_nowait()
    assert isinstance(ended, us.ActorTerminated)
    assert ended.reason == "failed"
    assert isinstance(ended.error, BufferError)
    assert any("on_stop of actor 'sloppy'" in note for note in ended.error.__notes__)

"""Messages: frozen msgspec Structs, and ``us.decode`` as the gate for outside input."""

import functools

import msgspec
import pytest
from helpers import Probe

import understudy as us

pytestmark = pytest.mark.anyio


class Line(msgspec.Struct, frozen=True):
    sku: str
    qty: int


class PlaceOrder(us.Message, frozen=True):
    id: int
    lines: tuple[Line, ...]


class Deposit(us.Message, frozen=True):
    amount: int


class GetBalance(us.Request[int], frozen=True):
    pass


class Loose(us.Message, frozen=False):
    text: str


class Account(us.Actor):
    class State(msgspec.Struct):
        balance: int = 0

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    async def deposit(self, msg: Deposit) -> None:
        self.probe.record(msg)
        self.state.balance += msg.amount

    async def balance(self, msg: GetBalance) -> int:
        return self.state.balance


# -- the message types themselves --


def test_a_message_cannot_be_changed_after_it_is_made() -> None:
    msg = Deposit(10)
    with pytest.raises(AttributeError):
        msg.amount = 11  # type: ignore[misc]
    assert msg == Deposit(10)


def test_a_request_is_a_message() -> None:
    assert isinstance(GetBalance(), us.Message)
    assert isinstance(GetBalance(), us.Request)


def test_terminated_carries_the_ref_the_reason_and_the_error() -> None:
    error = ValueError("boom")
    note = us.Terminated(ref=None, reason="failed", error=error)  # type: ignore[arg-type]
    assert (note.reason, note.error) == ("failed", error)
    assert us.Terminated(ref=None, reason="normal").error is None  # type: ignore[arg-type]


# -- decode: outside input --


def test_decode_builds_the_message_from_json() -> None:
    data = b'{"id": 7, "lines": [{"sku": "tea", "qty": 2}]}'
    assert us.decode(data, PlaceOrder) == PlaceOrder(7, (Line("tea", 2),))
    assert us.decode(data.decode(), PlaceOrder) == PlaceOrder(7, (Line("tea", 2),))


def test_decode_builds_the_message_from_msgpack() -> None:
    data = msgspec.msgpack.encode(PlaceOrder(7, (Line("tea", 2),)))
    assert us.decode(data, PlaceOrder, format="msgpack") == PlaceOrder(7, (Line("tea", 2),))


def test_decode_names_the_path_of_a_field_with_the_wrong_type() -> None:
    data = b'{"id": 1, "lines": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": "two"}]}'
    with pytest.raises(msgspec.ValidationError, match=r"\$\.lines\[1\]\.qty"):
        us.decode(data, PlaceOrder)


def test_decode_names_a_missing_field() -> None:
    with pytest.raises(msgspec.ValidationError, match="`id`"):
        us.decode(b'{"lines": []}', PlaceOrder)


def test_decode_of_text_that_is_not_json_raises_a_decode_error() -> None:
    with pytest.raises(msgspec.DecodeError, match="malformed"):
        us.decode(b"{not json", PlaceOrder)


def test_decode_refuses_a_type_that_is_not_a_message() -> None:
    with pytest.raises(TypeError, match="Line is not a message"):
        us.decode(b'{"sku": "a", "qty": 1}', Line)  # type: ignore[type-var]


def test_decode_refuses_a_message_type_that_is_not_frozen() -> None:
    with pytest.raises(TypeError, match="Loose is not frozen"):
        us.decode(b'{"text": "x"}', Loose)


def test_decode_refuses_text_for_msgpack() -> None:
    with pytest.raises(TypeError, match="msgpack input must be bytes"):
        us.decode("{}", Deposit, format="msgpack")


def test_decode_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="format must be 'json' or 'msgpack'"):
        us.decode(b"{}", Deposit, format="yaml")  # type: ignore[arg-type]


async def test_a_payload_that_fails_validation_never_reaches_the_actor() -> None:
    probe = Probe()
    async with us.Runtime() as rt:
        account = await rt.spawn(functools.partial(Account, probe), name="acct")
        for payload in (b'{"amount": "ten"}', b"{}", b"[10]"):
            with pytest.raises(msgspec.ValidationError):
                await account.tell(us.decode(payload, Deposit))
        await account.tell(us.decode(b'{"amount": 10}', Deposit))
        assert await account.ask(GetBalance(), timeout=5) == 10
    assert probe.items == [Deposit(10)]
    assert rt.dead_letters.total == 0

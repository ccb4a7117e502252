"""Message base types: what actors send each other.

Messages are frozen :class:`msgspec.Struct` instances, so one can be shared between actors
without either being able to change it under the other. Subclass :class:`Message` for a
one-way message (``tell``) and :class:`Request` for a request whose reply has a type
(``ask``)::

    class Deposit(us.Message, frozen=True):
        amount: int

    class GetBalance(us.Request[int], frozen=True):
        pass

Outside input (HTTP bodies, files, CLI arguments) enters through :func:`decode`, which
validates it into these types and raises :class:`msgspec.ValidationError` naming the bad
field's path; nothing reaches a mailbox until it decoded cleanly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import msgspec

if TYPE_CHECKING:
    from understudy.actors import Ref

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
"""A request's reply type: covariant, so a ``Request[int]`` is a ``Request[float]`` and an
``ask`` returning it can be passed where an ``object`` (``print``) or a float is wanted."""
M = TypeVar("M", bound="Message")

ExitReason = Literal["normal", "shutdown", "failed", "killed"]
"""Why an actor identity stopped.

``normal``: it stopped itself (``ctx.stop()``); ``shutdown``: something stopped it
(``rt.stop``, its parent or supervisor, the runtime exiting); ``failed``: a handler or hook
raised; ``killed``: it was cancelled where it stood. ``failed`` and ``killed`` are abnormal
exits in OTP's sense."""


class Message(msgspec.Struct, frozen=True):
    """Base class of one-way messages. Subclasses must stay frozen."""


class Request(Message, Generic[R_co], frozen=True):
    """Base class of requests whose reply is an ``R``; ``ref.ask`` returns that ``R``."""


class Terminated(Message, frozen=True):
    """Delivered to every watcher when a watched actor identity stops for good.

    ``reason`` says why (see :data:`ExitReason`); ``error`` is the exception when the reason
    is ``failed`` or ``killed``. A restart by a supervisor is not a termination: the identity,
    and so the ref, lives on.
    """

    ref: Ref
    reason: ExitReason
    error: BaseException | None = None


def check_message_type(tp: type[Any]) -> None:
    """Raise ``TypeError`` unless ``tp`` is a frozen :class:`Message` subclass."""
    if not (isinstance(tp, type) and issubclass(tp, Message)):
        raise TypeError(
            f"{tp.__module__}.{tp.__qualname__} is not a message: messages are subclasses of "
            "understudy.Message (one-way) or understudy.Request[R] (with a reply)"
        )
    if not tp.__struct_config__.frozen:
        raise TypeError(
            f"message type {tp.__qualname__} is not frozen: declare it with frozen=True so no "
            "actor can change a message another actor also holds"
        )


def decode(data: bytes | str, tp: type[M], *, format: Literal["json", "msgpack"] = "json") -> M:
    """Decode outside input into the message type ``tp``, validating every field.

    Raises :class:`msgspec.ValidationError` (naming the path of the bad field) or
    :class:`msgspec.DecodeError` for malformed input. Never blocks.
    """
    check_message_type(tp)
    if format == "json":
        return msgspec.json.decode(data, type=tp)
    if format == "msgpack":
        if isinstance(data, str):
            raise TypeError("msgpack input must be bytes, not str")
        return msgspec.msgpack.decode(data, type=tp)
    raise ValueError(f"format must be 'json' or 'msgpack', not {format!r}")


__all__ = ["ExitReason", "Message", "Request", "Terminated", "check_message_type", "decode"]

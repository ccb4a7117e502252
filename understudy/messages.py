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

import collections
import collections.abc
import sys
import types
import typing
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, Union

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


_UNCHECKED: set[type] = set()
"""Message types whose field annotations could not be resolved at class creation."""

_MUTABLE: tuple[type, ...] = (list, dict, set, bytearray, collections.deque)
_MUTABLE_ORIGINS = (
    list,
    dict,
    set,
    collections.deque,
    collections.abc.MutableSequence,
    collections.abc.MutableMapping,
    collections.abc.MutableSet,
)
_INSTEAD = {
    list: "tuple[...]",
    dict: "a frozen Struct, or tuple[tuple[key, value], ...]",
    set: "frozenset[...]",
    bytearray: "bytes",
}


def _mutable_part(tp: Any, seen: set[int]) -> Any:
    """The mutable container type inside the annotation ``tp``, or None if it is deeply
    immutable as far as the runtime can tell (classes it does not know are accepted)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _mutable_part(typing.get_args(tp)[0], seen)
    if origin is Union or origin is types.UnionType or origin in (tuple, frozenset):
        for arg in typing.get_args(tp):
            if arg is not Ellipsis:
                found = _mutable_part(arg, seen)
                if found is not None:
                    return found
        return None
    if origin is Literal or origin is typing.ClassVar:
        return None
    if origin is not None:
        return tp if origin in _MUTABLE_ORIGINS or origin in _MUTABLE else None
    if not isinstance(tp, type):
        return None  # Any, a TypeVar, a string that could not be resolved
    if issubclass(tp, _MUTABLE):
        return tp
    if issubclass(tp, msgspec.Struct) and id(tp) not in seen:
        seen.add(id(tp))
        if not tp.__struct_config__.frozen:
            return tp
        try:
            hints = typing.get_type_hints(tp, include_extras=True)
        except Exception:
            return None
        for field_type in hints.values():
            found = _mutable_part(field_type, seen)
            if found is not None:
                return found
    return None


def _check_fields(cls: type, hints: dict[str, Any]) -> None:
    for name, annotation in hints.items():
        if typing.get_origin(annotation) is typing.ClassVar:
            continue
        found = _mutable_part(annotation, {id(cls)})
        if found is None:
            continue
        base = typing.get_origin(found) or found
        instead = next((v for k, v in _INSTEAD.items() if issubclass(base, k)), None)
        if isinstance(base, type) and issubclass(base, msgspec.Struct):
            instead = f"a frozen Struct (declare {base.__qualname__} with frozen=True)"
        shown = getattr(found, "__qualname__", None) if typing.get_origin(found) is None else None
        raise TypeError(
            f"message type {cls.__qualname__}: field {name!r} holds {shown or repr(found)}, a "
            "mutable container that sender and receiver would share (frozen=True freezes "
            "only the message itself). Use tuple, frozenset or frozen Structs"
            + (f": here {instead}" if instead else "")
        )


class Message(msgspec.Struct, frozen=True):
    """Base class of one-way messages. Subclasses must stay frozen, and *deeply* so: a field
    may not hold a mutable container (``list``, ``dict``, ``set``, ``bytearray``, a
    ``deque``, a non-frozen Struct), which receiver and sender would share. Use ``tuple``,
    ``frozenset`` and frozen Structs instead; refused with ``TypeError`` when the class is
    created (or, for an annotation that names a later class, when it is first used)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Annotations may name classes local to the function defining the message.
        caller = sys._getframe(1)
        while caller.f_code.co_name == "__init_subclass__" and caller.f_back is not None:
            caller = caller.f_back
        try:
            hints = typing.get_type_hints(cls, localns=dict(caller.f_locals), include_extras=True)
        except Exception:  # names a class defined later: checked at first use instead
            _UNCHECKED.add(cls)
            return
        _check_fields(cls, hints)


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
    """Raise ``TypeError`` unless ``tp`` is a frozen :class:`Message` subclass whose fields
    hold no mutable container."""
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
    if tp in _UNCHECKED:
        _UNCHECKED.discard(tp)
        try:
            hints = typing.get_type_hints(tp, include_extras=True)
        except Exception:  # still unresolvable (a local class): mypy's business
            return
        _check_fields(tp, hints)


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

"""Dispatch: an actor class's handler table and how a message finds its handler.

An actor's ``async def`` methods take one message each; the message parameter's annotation
(a message type, or a union of them) decides which messages the method handles. The table
from message type to handler (``Actor._handlers``) is built once, when the class is created
(:func:`_build_handlers`, which also refuses a malformed handler or ``State`` there, with an
error naming the class and the method), and dispatch is one dict lookup on ``type(msg)``,
inlined at each send. :func:`resolve_handler` is its slow path: the first message of a
subclass of a handled type (cached in the table from then on), or a clear ``TypeError``.

Bottom layer of the actor modules: imports no other of them at run time
(``dispatch`` ← ``actors`` ← ``refs`` ← ``context`` ← ``delivery`` ← ``cell``).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, Union

import msgspec

from understudy.messages import Message, Request, check_message_type

if TYPE_CHECKING:
    from understudy.actors import Actor

Handler = Callable[[Any, Any], Awaitable[Any]]

_LIFECYCLE = frozenset({"on_start", "on_stop", "on_restart"})


def _message_types(
    owner: type, attr: str, fn: Callable[..., Any], localns: dict[str, Any]
) -> tuple[type[Message], ...]:
    """The message types ``fn`` handles, or () if it is not a handler."""
    params = list(inspect.signature(fn).parameters.values())
    if len(params) < 2:
        return ()
    annotation = params[1].annotation
    if annotation is inspect.Parameter.empty:
        return ()
    if isinstance(annotation, str):
        try:
            annotation = typing.get_type_hints(fn, localns=localns)[params[1].name]
        except Exception as exc:
            raise TypeError(
                f"{owner.__qualname__}.{attr}: cannot resolve the annotation {annotation!r} "
                f"({exc}); define the message type before the actor class"
            ) from exc
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        candidates = typing.get_args(annotation)
    else:
        candidates = (annotation,)
    found = []
    for candidate in candidates:
        candidate = typing.get_origin(candidate) or candidate  # Request[int] -> Request
        if isinstance(candidate, type) and issubclass(candidate, Message):
            found.append(candidate)
    if not found:
        return ()
    if len(found) != len(candidates):
        raise TypeError(
            f"{owner.__qualname__}.{attr}: every member of the union {annotation!r} must be a "
            "message type"
        )
    required = [
        p
        for p in params[2:]
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if required:
        raise TypeError(
            f"{owner.__qualname__}.{attr}: a handler takes exactly one message; "
            f"it also requires {[p.name for p in required]}"
        )
    for tp in found:
        check_message_type(tp)
    return tuple(found)


def _check_state(cls: type, state: type[msgspec.Struct]) -> None:
    """Every field of a ``State`` needs a default: a new instance starts from ``State()``."""
    required = [field.name for field in msgspec.structs.fields(state) if field.required]
    if required:
        raise TypeError(
            f"{cls.__qualname__}.State: field(s) {required} have no default; every new "
            "instance (a restart included) starts from State(), so give each field a default "
            "(or a default_factory) and set real values in on_start"
        )


def _reply_type(tp: type[Message]) -> Any:
    """The ``R`` of a ``Request[R]`` subclass, or None when it is not one (or is generic)."""
    for klass in tp.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            if typing.get_origin(base) is Request:
                (arg,) = typing.get_args(base)
                return None if isinstance(arg, TypeVar) else arg
    return None


def _check_return(owner: type, attr: str, fn: Callable[..., Any], tp: type, localns: Any) -> None:
    """Refuse a handler whose return annotation is not its request's reply type."""
    expected = _reply_type(tp)
    if expected is None or expected is Any:
        return
    try:
        hints = typing.get_type_hints(fn, localns=localns)
    except Exception:  # an unresolvable annotation: mypy's business, not the runtime's
        return
    if "return" not in hints:
        return
    got = hints["return"]
    if got is Any or got == expected:
        return
    if expected is type(None) and got is None:
        return
    if isinstance(got, type) and isinstance(expected, type) and issubclass(got, expected):
        return
    expected_args = typing.get_args(expected)
    if typing.get_origin(expected) in (Union, types.UnionType) and got in expected_args:
        return
    name = getattr(expected, "__qualname__", None) or repr(expected)
    got_name = getattr(got, "__qualname__", None) or repr(got)
    raise TypeError(
        f"{owner.__qualname__}.{attr}() returns {got_name}, but {tp.__qualname__} is a "
        f"Request[{name}]: its handler must return {name}"
    )


def _build_handlers(cls: type[Actor], localns: dict[str, Any]) -> dict[type, Handler]:
    handlers: dict[type, Handler] = {}
    names: dict[type, str] = {}
    seen: set[str] = set()
    for klass in cls.__mro__:
        for attr in vars(klass):
            if attr in seen or attr.startswith("_") or attr in _LIFECYCLE:
                continue
            seen.add(attr)
            fn = getattr(cls, attr)
            if not inspect.iscoroutinefunction(fn):
                continue
            found = _message_types(cls, attr, fn, localns)
            for tp in found:
                if len(found) == 1:
                    _check_return(cls, attr, fn, tp, localns)
                if tp in handlers:
                    raise TypeError(
                        f"{cls.__qualname__}: {tp.__qualname__} is handled by both "
                        f"{names[tp]}() and {attr}(); one message type, one handler"
                    )
                handlers[tp] = fn
                names[tp] = attr
    return handlers


def _accepted(cls: type[Actor]) -> str:
    names = sorted({tp.__qualname__ for tp in cls._declared})
    return ", ".join(names) if names else "no messages"


def resolve_handler(cls: type[Actor], msg: object, label: str) -> Handler:
    """The handler of ``cls`` for ``msg`` (slow path of dispatch: first sight of a type).

    Raises ``TypeError`` naming the actor and the types it accepts when there is none.
    """
    tp = type(msg)
    if not isinstance(msg, Message):
        raise TypeError(
            f"{tp.__module__}.{tp.__qualname__} is not a message (sent to actor {label!r}); "
            "messages are frozen subclasses of understudy.Message or understudy.Request"
        )
    check_message_type(tp)
    for base in tp.__mro__[1:]:
        handler = cls._handlers.get(base)
        if handler is not None:
            cls._handlers[tp] = handler  # cache: the next message of this type is one lookup
            return handler
    raise TypeError(
        f"actor {label!r} ({cls.__qualname__}) has no handler for {tp.__qualname__}; "
        f"it accepts: {_accepted(cls)}"
    )

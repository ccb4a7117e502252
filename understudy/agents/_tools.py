"""Tools: actors whose request types are the tools' schemas.

A tool is a handler of a :class:`Tool` actor. Its request type, a frozen
``us.Request[R]``, is the tool: the class name in snake case is the tool's ``name`` (or
``tool_name = "..."`` in the class body), its docstring the ``description``, and
``msgspec.json.schema`` of it the ``input_schema``. What the handler returns (an ``R``) is
encoded as JSON into the ``tool_result`` the model reads (a ``str`` is sent as it is)::

    class GetWeather(us.Request[str], frozen=True):
        \"\"\"The weather forecast for a city.\"\"\"
        city: str
        days: int = 1

    class Weather(us.Tool):
        read_only = True                      # no side effects: no effect journal

        async def forecast(self, msg: GetWeather) -> str:
            return f"sunny in {msg.city}"

An actor may offer several tools (one per handler). A tool with side effects (the default)
gets the call's idempotency key as ``self.idempotency_key`` while it runs — pass it on to the
outside API — and may define :meth:`Tool.reconcile` to tell, after a crash, whether a call
whose result was never committed took effect.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Final

import msgspec

from understudy.actors import Actor
from understudy.messages import Message, Request


class NotRun:
    """The value :meth:`Tool.reconcile` returns when the call did not take effect."""

    _instance: ClassVar[NotRun | None] = None

    def __new__(cls) -> NotRun:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOT_RUN"


NOT_RUN: Final = NotRun()
"""Returned by :meth:`Tool.reconcile`: the call did not happen, so it is safe to run it."""


class ToolCall(Request[Any], frozen=True):
    """What an agent sends a tool actor: the decoded request and the call's idempotency key
    (``conversation:turn:tool_use_id``). Handled by :class:`Tool` itself."""

    request: Any
    key: str


class Reconcile(Request[Any], frozen=True):
    """Ask a tool whether the call with idempotency ``key`` took effect (after a crash)."""

    request: Any
    key: str


class Tool(Actor):
    """Base class of tool actors: each handler of a ``us.Request`` is one tool.

    Class attributes: ``read_only`` (True: no side effects, so no effect journal and a call
    may be re-run after a crash; default False). Override :meth:`reconcile` to resolve
    calls left in doubt by a crash.
    """

    read_only: ClassVar[bool] = False
    _specs: ClassVar[dict[str, tuple[ToolSpec, ...]] | None] = None
    idempotency_key: str | None = None
    """The idempotency key of the call being handled (None when asked directly)."""

    async def tool_call(self, msg: ToolCall) -> Any:
        """Run the tool of ``msg.request`` with ``self.idempotency_key`` set (used by agents)."""
        handler = type(self)._handlers.get(type(msg.request))
        if handler is None:
            raise TypeError(f"{type(self).__qualname__} has no tool {type(msg.request).__name__}")
        self.idempotency_key = msg.key
        try:
            return await handler(self, msg.request)
        finally:
            self.idempotency_key = None

    async def tool_reconcile(self, msg: Reconcile) -> Any:
        """Answer a :class:`Reconcile` with :meth:`reconcile` (used by agents)."""
        return await self.reconcile(msg.key, msg.request)

    async def reconcile(self, key: str, request: Any) -> Any:
        """After a crash, say whether the call ``request`` with idempotency ``key`` took
        effect: return its result if it did (it is replayed to the model), or
        :data:`NOT_RUN` if it did not (it is then run). Raising leaves it in doubt
        (:class:`~understudy.EffectInDoubt`). The default cannot tell: it raises."""
        raise NotImplementedError


def has_reconcile(cls: type[Tool]) -> bool:
    """Whether ``cls`` overrides :meth:`Tool.reconcile`."""
    return cls.reconcile is not Tool.reconcile


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_INTERNAL: frozenset[type] = frozenset({ToolCall, Reconcile})


def tool_name(tp: type) -> str:
    """The tool name of request type ``tp``: ``tool_name`` in its body, else its class name
    in snake case (``GetWeather`` → ``get_weather``)."""
    explicit = tp.__dict__.get("tool_name")
    if isinstance(explicit, str):
        return explicit
    return _CAMEL.sub("_", tp.__name__).lower()


class ToolSpec(msgspec.Struct, frozen=True):
    """One tool as the model sees it, and where its calls go.

    ``actor`` is the name of the actor serving it (resolved through the runtime's names at
    each call, so a restart or a pool behind the name is transparent).
    """

    name: str
    description: str
    input_schema: dict[str, Any]
    request: type
    actor: str
    read_only: bool
    reconcile: bool

    def param(self) -> dict[str, Any]:
        """The tool's entry in a Messages API request's ``tools``."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
        }


def request_types(cls: type[Actor]) -> list[type[Request[Any]]]:
    """The request types of ``cls``'s tools (its handlers of ``us.Request`` subclasses)."""
    return [
        tp
        for tp in cls._handlers
        if tp not in _INTERNAL and issubclass(tp, Request) and tp is not Message
    ]


def input_schema(tp: type, where: str) -> dict[str, Any]:
    """``tp``'s JSON Schema as a tool's ``input_schema``: one self-contained object schema.

    Raises ``TypeError`` naming ``where`` and the field when ``tp`` is not frozen or has a
    field JSON Schema cannot express.
    """
    if not (isinstance(tp, type) and issubclass(tp, msgspec.Struct)):
        raise TypeError(f"{where}: a tool's request type must be a msgspec.Struct, not {tp!r}")
    if not tp.__struct_config__.frozen:
        raise TypeError(
            f"{where}: tool request type {tp.__qualname__} is not frozen: declare it with "
            "frozen=True (a tool call is a message, shared and never changed)"
        )
    if tp.__struct_config__.array_like:
        raise TypeError(f"{where}: tool request type {tp.__qualname__} must not be array_like")
    hints = typing.get_type_hints(tp)
    for field in tp.__struct_fields__:
        try:
            msgspec.json.schema(hints[field])
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{where}: field {tp.__qualname__}.{field} ({hints[field]!r}) cannot be "
                f"expressed in JSON Schema, so the model could not fill it: {exc}"
            ) from exc
    try:
        schema = msgspec.json.schema(tp)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{where}: tool request type {tp.__qualname__} cannot be expressed in JSON Schema: "
            f"{exc}"
        ) from exc
    return _inline(schema, tp.__qualname__, where)


def _inline(schema: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    """Resolve msgspec's ``$ref``/``$defs`` into one object schema with ``$defs`` kept for
    nested types (the API accepts local references)."""
    defs: Mapping[str, Any] = schema.get("$defs", {})
    ref = schema.get("$ref")
    top = dict(defs[ref.rsplit("/", 1)[-1]]) if isinstance(ref, str) else dict(schema)
    top.pop("title", None)
    top.pop("description", None)  # the docstring is the tool's description instead
    if top.get("type") != "object":
        raise TypeError(f"{where}: tool request type {name} does not encode as a JSON object")
    others = {k: v for k, v in defs.items() if k != name}
    top.pop("$defs", None)
    if others:
        top["$defs"] = others
    return top


def tool_specs(cls: type[Actor], actor: str) -> list[ToolSpec]:
    """The tools that actor ``actor`` (of class ``cls``) offers (computed once per class
    and name: every conversation that starts asks for them).

    Raises ``TypeError`` when ``cls`` is not a :class:`Tool`, offers no tool, or one of its
    request types is not frozen, has an undocumented or unschematic field, or has a name the
    API refuses; ``ValueError`` when two of its tools share a name.
    """
    if isinstance(cls, type) and issubclass(cls, Tool):
        cached = cls.__dict__.get("_specs")  # kept on the class, like its handlers
        if cached is None:
            cached = {}
            cls._specs = cached
        found = cached.get(actor)
        if found is None:
            found = cached[actor] = _tool_specs(cls, actor)
        return list(found)
    return list(_tool_specs(cls, actor))


def _tool_specs(cls: type[Actor], actor: str) -> tuple[ToolSpec, ...]:
    where = f"tool actor {actor!r} ({cls.__qualname__})"
    if not (isinstance(cls, type) and issubclass(cls, Tool)):
        raise TypeError(
            f"{where} is not a tool: tool actors subclass understudy.Tool (agents can also be "
            "tools: list them with us.AgentTool)"
        )
    specs: list[ToolSpec] = []
    seen: dict[str, type] = {}
    for tp in request_types(cls):
        name = tool_name(tp)
        if not _TOOL_NAME.match(name):
            raise TypeError(
                f"{where}: tool name {name!r} (from {tp.__qualname__}) must match "
                "^[a-zA-Z0-9_-]{1,64}$; set tool_name = '...' in the request class"
            )
        if name in seen:
            raise ValueError(
                f"{where}: two tools are named {name!r} ({seen[name].__qualname__} and "
                f"{tp.__qualname__}); tool names must be unique"
            )
        seen[name] = tp
        description = (tp.__doc__ or "").strip()
        if not description:
            raise TypeError(
                f"{where}: tool request type {tp.__qualname__} has no docstring; the docstring "
                "is the tool's description, which tells the model when to use it"
            )
        specs.append(
            ToolSpec(
                name=name,
                description=description,
                input_schema=input_schema(tp, where),
                request=tp,
                actor=actor,
                read_only=cls.read_only,
                reconcile=has_reconcile(cls),
            )
        )
    if not specs:
        raise TypeError(f"{where} offers no tools: give it a handler of a us.Request subclass")
    return tuple(specs)


__all__ = [
    "NOT_RUN",
    "NotRun",
    "Reconcile",
    "Tool",
    "ToolCall",
    "ToolSpec",
    "has_reconcile",
    "input_schema",
    "request_types",
    "tool_name",
    "tool_specs",
]

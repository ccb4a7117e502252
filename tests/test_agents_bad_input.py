"""Bad input to the agent layer: clear errors naming what was wrong, nothing half-done."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

import understudy as us
from tests.agents_replies import fake, model, text
from understudy.agents import tool_specs

pytestmark = pytest.mark.anyio


class Ping(us.Request[str], frozen=True):
    """Ping."""

    host: str


class Pinger(us.Tool):
    read_only = True

    async def ping(self, msg: Ping) -> str:
        return "pong"


def test_a_non_frozen_tool_request_is_refused() -> None:
    class Loose(us.Request[str], frozen=False):  # not frozen
        """Loose."""

        x: int

    with pytest.raises(TypeError, match="Loose is not frozen"):

        class Bad(us.Tool):
            async def go(self, msg: Loose) -> str:
                return ""


def test_a_field_json_schema_cannot_express_is_refused() -> None:
    class Opaque(us.Request[str], frozen=True):
        """Takes a callback."""

        fn: Callable[[], None]

    class Bad(us.Tool):
        async def go(self, msg: Opaque) -> str:
            return ""

    with pytest.raises(TypeError, match=r"field .*Opaque\.fn .*cannot be expressed in JSON"):
        tool_specs(Bad, "bad")


def test_two_tools_with_one_name_in_one_actor_are_refused() -> None:
    class A(us.Request[str], frozen=True):
        """A."""

        tool_name = "same"

    class B(us.Request[str], frozen=True):
        """B."""

        tool_name = "same"

    class Twice(us.Tool):
        async def a(self, msg: A) -> str:
            return ""

        async def b(self, msg: B) -> str:
            return ""

    with pytest.raises(ValueError, match="two tools are named 'same'"):
        tool_specs(Twice, "twice")


def test_a_tool_without_a_docstring_is_refused() -> None:
    class Mute(us.Request[str], frozen=True):
        x: int

    class T(us.Tool):
        async def go(self, msg: Mute) -> str:
            return ""

    with pytest.raises(TypeError, match="has no docstring"):
        tool_specs(T, "t")


@pytest.mark.parametrize(
    ("attrs", "error", "match"),
    [
        ({"max_turns": 0}, ValueError, "max_turns must be an int >= 1, not 0"),
        ({"max_turns": 2.5}, ValueError, "max_turns must be an int >= 1"),
        ({"max_tokens": -1}, ValueError, "max_tokens must be an int >= 1"),
        ({"output": dict}, TypeError, "output must be a msgspec.Struct type"),
        ({"output_retries": -1}, ValueError, "output_retries must be an int >= 0"),
        ({"on_max_turns": "retry"}, ValueError, "on_max_turns must be 'error' or 'answer'"),
        ({"tools": ["a"]}, TypeError, "tools must be a tuple"),
        ({"tools": (3,)}, TypeError, "each must be the name of a tool actor"),
        ({"tool_timeout": 0}, ValueError, "tool_timeout must be positive"),
        ({"persistent": True}, TypeError, "do not make it persistent=True"),
    ],
)
def test_bad_agent_declarations(attrs: dict[str, object], error: type, match: str) -> None:
    with pytest.raises(error, match=re.escape(match) if "(" not in match else match):
        type("Bad", (us.Agent,), attrs)


def test_an_output_type_that_is_not_an_object_is_refused() -> None:
    class Pair(msgspec.Struct, array_like=True):
        a: int

    with pytest.raises(TypeError, match="must encode as a JSON object"):
        type("Bad", (us.Agent,), {"output": Pair})


def _agent(**attrs: object) -> type[us.Agent]:
    attrs.setdefault("model", model(fake(text("x"))))
    return type("Helper", (us.Agent,), attrs)


async def test_a_missing_tool_is_a_clear_error_at_start(tmp_path: Path) -> None:
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        with pytest.raises(LookupError, match="its tools name actor 'nope', which does not"):
            await rt.spawn(_agent(tools=("nope",)), name="c")
        assert "c" not in rt


async def test_an_actor_that_is_not_a_tool_is_refused_at_start(tmp_path: Path) -> None:
    class Plain(us.Actor):
        async def ping(self, msg: Ping) -> str:
            return ""

    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await rt.spawn(Plain, name="plain")
        with pytest.raises(TypeError, match="is not a tool: tool actors subclass"):
            await rt.spawn(_agent(tools=("plain",)), name="c")


async def test_two_actors_offering_one_tool_name_are_refused_at_start(tmp_path: Path) -> None:
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        await rt.spawn(Pinger, name="p1")
        await rt.spawn(Pinger, name="p2")
        with pytest.raises(ValueError, match=r"two tools are named 'ping' .*p1 and p2"):
            await rt.spawn(_agent(tools=("p1", "p2")), name="c")


async def test_no_store_no_model_no_name_bad_key(tmp_path: Path) -> None:
    async with us.Runtime() as rt:
        with pytest.raises(ValueError, match="the runtime has no store"):
            await rt.spawn(_agent(), name="c")
    async with us.Runtime(store=tmp_path / "a.db") as rt:
        with pytest.raises(ValueError, match="has no model"):
            await rt.spawn(type("M", (us.Agent,), {}), name="c")
        with pytest.raises(ValueError, match="an agent must be named for its conversation"):
            await rt.spawn(_agent())
        # the runtime's name check (understudy._checks) refuses these before the agent sees them
        with pytest.raises(ValueError, match="at most 255 characters"):
            await rt.spawn(_agent(), name="x" * 300)
        with pytest.raises(ValueError, match="printable"):
            await rt.spawn(_agent(), name="bad\nid")

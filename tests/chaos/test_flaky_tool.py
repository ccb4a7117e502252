"""The chaos suite's second scenario: a flaky tool behind a breaker and a fallback.

Chaos makes the tool fail; its breaker opens after ``failures`` failures and callers get
every answer from the fallback while it is open (skipping the tool at once). When the fault
is lifted, the breaker goes half-open after ``reset_after`` and closes after ``successes``
good trials, and answers come from the tool again.
"""

from __future__ import annotations

import anyio
import pytest

import understudy as us

pytestmark = pytest.mark.anyio


class Lookup(us.Request[str], frozen=True):
    query: str


class Tool(us.Actor):
    async def lookup(self, msg: Lookup) -> str:
        return f"tool:{msg.query}"


class Cache(us.Actor):
    async def lookup(self, msg: Lookup) -> str:
        return f"cache:{msg.query}"


async def test_callers_get_answers_from_the_fallback_while_the_breaker_is_open(
    anyio_backend: str,
) -> None:
    seed = 6 + (anyio_backend == "trio")
    breaker = us.Breaker(failures=3, reset_after=0.05, successes=2, jitter=0.0)
    async with us.Runtime() as rt:
        await rt.start(
            us.Supervisor(
                strategy=us.OneForOne(max_restarts=1_000, within=1.0),
                children=[
                    us.Child(Tool, name="tool", breaker=breaker),
                    us.Child(Cache, name="cache"),
                ],
            )
        )
        chaos = us.Chaos(rt, seed=seed)
        chain = us.first_of(rt.ref("tool"), rt.ref("cache"))
        with rt.events.subscribe(us.BreakerStateChanged) as events:
            fault = chaos.inject("tool", ConnectionError("tool is down"))
            during = [await chain.ask_with_source(Lookup(str(i)), timeout=2.0) for i in range(30)]
            assert rt.breaker("tool").state == "open", f"seed={seed}"
            assert chaos.counts["exception"] == 3, f"seed={seed}"  # then refused at once
            fault.cancel()
            after = []
            with anyio.fail_after(5):
                while rt.breaker("tool").state != "closed":
                    await anyio.sleep(0.06)  # past reset_after: the next ask is a trial
                    after.append(await chain.ask_with_source(Lookup("again"), timeout=2.0))
            transitions = [(e.previous, e.state) for e in iter(events.get_nowait, None)]
        assert [answer.value for answer in during] == [f"cache:{i}" for i in range(30)]
        assert {answer.name for answer in during} == {"cache"}
        assert all(name == "tool" for name, _ in during[0].failures)
        assert after[-1].value == "tool:again", f"seed={seed}"
        assert transitions[0] == ("closed", "open"), f"seed={seed} {transitions}"
        assert ("open", "half_open") in transitions, f"seed={seed} {transitions}"
        assert transitions[-1] == ("half_open", "closed"), f"seed={seed} {transitions}"
        assert await chain.ask(Lookup("last")) == "tool:last"

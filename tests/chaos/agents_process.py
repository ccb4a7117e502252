"""A process running agent conversations, to be SIGKILLed (tests/chaos/test_agents_sigkill.py).

``agents_process.py run DB OUTSIDE REQUESTS BACKEND N``: N conversations, each 4 model calls
(3 calls of a side-effecting ``record`` tool, then an answer), all at once, each in a loop
of asks with the same prompt id until it answers. The ``record`` tool appends its idempotency
key to the OUTSIDE file (the outside world) and fsyncs it; its ``reconcile`` looks the key up
there. Every model request is appended to REQUESTS (conversation, assistant turns seen). At
the end it prints one JSON line per conversation: its answer or its typed error.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import understudy as us
from tests.agents_replies import model as agent_model
from tests.agents_replies import text, tools, use
from understudy.testing import FakeMessagesAPI, Received, Reply


class Record(us.Request[str], frozen=True):
    """Record a number in the outside world."""

    n: int


def _seen(outside: str) -> list[str]:
    path = Path(outside)
    return path.read_text().split() if path.exists() else []


def main() -> None:
    _, db, outside, requests, backend, count = sys.argv[1:]

    def respond(request: Received) -> Reply:
        body = request.body
        turns = sum(1 for m in body["messages"] if m["role"] == "assistant")
        conv = body["metadata"]["user_id"]
        with open(requests, "a") as f:
            f.write(f"{conv} {turns}\n")
        if turns < 3:
            return tools(use("record", {"n": turns}, id=f"toolu_{conv}_{turns}"))
        return text(f"{conv} done")

    api = FakeMessagesAPI(respond=respond)

    class Recorder(us.Tool):
        async def record(self, msg: Record) -> str:
            assert self.idempotency_key is not None
            await anyio.sleep(0.002)
            fd = os.open(outside, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.write(fd, f"{self.idempotency_key}\n".encode())
            os.fsync(fd)
            os.close(fd)
            await anyio.sleep(0.002)
            return f"recorded {msg.n}"

        async def reconcile(self, key: str, request: Any) -> Any:
            seen = _seen(outside)
            return f"recorded {request.n}" if key in seen else us.NOT_RUN

    class Worker(us.Agent):
        model = agent_model(api, estimate="local")  # one request per model call
        tools = ("recorder",)

        async def prepare(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return messages

    Worker.params = {}

    async def run() -> None:
        async with us.Runtime(store=db) as rt:
            await rt.spawn(Recorder, name="recorder")
            results: dict[str, str] = {}

            async def conversation(i: int) -> None:
                name = f"c{i}"
                cls = type(f"Worker_{i}", (Worker,), {"params": {"metadata": {"user_id": name}}})
                await rt.start(us.Supervisor(
                    strategy=us.OneForOne(max_restarts=100, within=1.0),
                    children=[us.Child(cls, name=name, backoff=us.Backoff(min=0.001, max=0.001))],
                ))  # fmt: skip
                ref = rt.ref(name)
                for _ in range(20):
                    try:
                        reply = await ref.ask(us.Prompt("record three numbers", id="p1"))
                        results[name] = reply.text
                        return
                    except us.AgentError as exc:
                        results[name] = type(exc).__name__
                        return
                    except Exception:
                        await anyio.sleep(0.01)
                results[name] = "gave up"

            async with anyio.create_task_group() as group:
                for i in range(int(count)):
                    group.start_soon(conversation, i)
            print(json.dumps(results, sort_keys=True), flush=True)

    anyio.run(run, backend=backend)


if __name__ == "__main__":
    main()

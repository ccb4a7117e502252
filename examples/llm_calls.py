"""The README's LLM example: an agent actor calling a model, offline on the fake Messages API.

Run it: ``python examples/llm_calls.py [asyncio|trio]``.
"""

import sys

import understudy as us
from understudy.testing import FakeMessagesAPI


class Question(us.Request[str], frozen=True):
    text: str


class Assistant(us.Actor):
    def __init__(self, model: us.llm.Model) -> None:
        self.model = model

    async def answer(self, msg: Question) -> str:
        reply = await self.model.stream(  # ctx.heartbeat() on every event
            max_tokens=256,
            system=[
                {"type": "text", "text": "Answer briefly.", "cache_control": {"type": "ephemeral"}}
            ],
            messages=[{"role": "user", "content": msg.text}],
        )
        return "".join(block.text for block in reply.content if block.type == "text")


async def main() -> None:
    fake = FakeMessagesAPI(seed=1)  # in production: us.llm.Model("claude-sonnet-4-5", ...)
    fake.script(fake.overloaded(), fake.text("Paris."))  # a 529 first: retried by understudy
    model = fake.model("claude-sonnet-4-5", fallbacks=("claude-haiku-4-5",))
    async with us.Runtime() as rt:
        assistant = await rt.spawn(lambda: Assistant(model), name="assistant", idle_timeout=30)
        async with rt.budget(name="conv-1", seconds=30, usd=0.05) as budget:
            print("answer:", await assistant.ask(Question("What is the capital of France?")))
        (call,) = us.llm.call_log(rt).records
        print(f"attempts: {call.attempts}, outcome: {call.outcome}, agent: {call.agent}")
        print(f"settled: ${budget.spent.usd:.6f}, recorded: ${call.usd:.6f}")
        for row in await us.llm.costs(rt, by="conversation"):
            print(f"conversation {row['conversation']}: {row['calls']} call(s), ${row['usd']:.6f}")


if __name__ == "__main__":
    us.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")  # type: ignore[arg-type]

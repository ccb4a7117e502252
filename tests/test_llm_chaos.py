"""Chaos: 200 concurrent conversations through the fake, 20 % of its responses failing."""

from __future__ import annotations

import anyio
import pytest

import understudy as us
from understudy.testing import FakeMessagesAPI

pytestmark = pytest.mark.anyio

CONVERSATIONS = 200
DEADLINE = 8.0
RETRIES = 3


async def test_two_hundred_conversations_under_faults_end_in_time_and_add_up() -> None:
    fake = FakeMessagesAPI(seed=2026, latency=0.002, fault_rate=0.2, stall=60)
    model = fake.model(
        "claude-sonnet-4-5",
        retries=RETRIES,
        first_byte_timeout=0.3,
        idle_timeout=0.3,
        max_concurrency=100,
        breaker=None,  # measure the retry owner alone; the breaker has its own tests
        fallbacks=(),
    )
    ends: dict[str, tuple[float, float]] = {}
    budgets: dict[str, us.Budget] = {}
    outcomes: dict[str, list[str]] = {}
    async with us.Runtime() as rt:

        async def conversation(i: int) -> None:
            name = f"conv-{i}"
            outcomes[name] = []
            start = anyio.current_time()
            async with rt.budget(name=name, seconds=DEADLINE, usd=0.5) as budget:
                budgets[name] = budget
                messages = [{"role": "user", "content": f"question {i}"}]
                for turn in range(2):
                    try:
                        if turn == 0:
                            await model.stream(max_tokens=64, messages=messages)
                        else:
                            await model.create(max_tokens=64, messages=messages)
                        outcomes[name].append("ok")
                    except (us.LLMError, us.DeadlineExceeded, us.BudgetExceeded) as error:
                        outcomes[name].append(type(error).__name__)
            ends[name] = (start, anyio.current_time())

        with anyio.fail_after(DEADLINE + 10):
            async with anyio.create_task_group() as tg:
                for i in range(CONVERSATIONS):
                    tg.start_soon(conversation, i)
        records = list(us.llm.call_log(rt).records)

    assert len(ends) == CONVERSATIONS
    # every call ended within its conversation's deadline (a little scheduling slack)
    assert max(end - start for start, end in ends.values()) <= DEADLINE + 1.0
    # faults happened, were retried, and most conversations got their answers
    sent = [r for r in fake.requests if r.path == "/v1/messages"]
    assert sum(r.retry_count > 0 for r in sent) > 50
    assert sum(o.count("ok") for o in outcomes.values()) > 0.8 * 2 * CONVERSATIONS
    # attempts never exceed the retries, and every request sent is one recorded attempt
    assert len(records) == 2 * CONVERSATIONS
    assert max(r.attempts for r in records) <= RETRIES + 1
    assert max(r.retry_count for r in sent) <= RETRIES
    assert sum(r.attempts for r in records) == len(sent)
    # the records add up to what each budget settled, exactly, and nothing is held
    for name, budget in budgets.items():
        mine = [r for r in records if r.conversation == name]
        usd = 0.0
        for r in mine:
            usd += r.usd
        tokens = sum(
            r.input_tokens
            + r.output_tokens
            + r.cache_read_tokens
            + r.cache_write_5m_tokens
            + r.cache_write_1h_tokens
            for r in mine
        )
        assert budget.spent.usd == usd
        assert budget.spent.tokens == tokens
        assert budget.reserved.usd == 0 and budget.reserved.tokens == 0
    # nothing charged twice: each answered request is in one record only
    ok_ids = [r.request_id for r in records if r.outcome == "ok"]
    assert len(ok_ids) == len(set(ok_ids))
    answered = {r.request_id for r in sent if r.status == 200}
    assert set(ok_ids) <= answered

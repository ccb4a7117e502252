"""understudy.llm.Model against the fake Messages API, on asyncio and trio."""

from __future__ import annotations

from typing import Any

import anthropic
import anyio
import pytest

import understudy as us
from understudy.llm import Model, Price, PricingTable, Tokens, usage_buckets
from understudy.testing import FakeMessagesAPI

pytestmark = pytest.mark.anyio

HI = [{"role": "user", "content": "Hello"}]


def fake_model(fake: FakeMessagesAPI, **options: Any) -> Model:
    return fake.model("claude-sonnet-4-5", **options)


class Ask(us.Request[str], frozen=True):
    prompt: str


class Chatty(us.Actor):
    """Calls the model from its handler, streaming."""

    def __init__(self, model: Model, deltas: list[str]) -> None:
        self.model = model
        self.deltas = deltas

    async def ask(self, msg: Ask) -> str:
        reply = await self.model.stream(
            max_tokens=100,
            messages=[{"role": "user", "content": msg.prompt}],
            on_text=self.deltas.append,
        )
        block = reply.content[0]
        assert block.type == "text"
        return block.text


# -- pricing: the five buckets against hand-computed figures --------------------------------


def test_each_bucket_is_priced_at_its_own_rate() -> None:
    price = PricingTable.default().price("claude-sonnet-4-5")
    # $3 in, $15 out, $0.30 cache read, $3.75 5-minute write, $6 1-hour write per MTok
    assert price.cost(Tokens(input=1_000_000)) == pytest.approx(3.0)
    assert price.cost(Tokens(output=1_000_000)) == pytest.approx(15.0)
    assert price.cost(Tokens(cache_read=1_000_000)) == pytest.approx(0.30)
    assert price.cost(Tokens(cache_write_5m=1_000_000)) == pytest.approx(3.75)
    assert price.cost(Tokens(cache_write_1h=1_000_000)) == pytest.approx(6.0)
    mixed = Tokens(input=100, output=50, cache_read=2000, cache_write_5m=300, cache_write_1h=400)
    hand = (100 * 3 + 50 * 15 + 2000 * 0.3 + 300 * 3.75 + 400 * 6) / 1e6
    assert price.cost(mixed) == pytest.approx(hand)


def test_usage_input_excludes_cache_and_writes_are_split_by_lifetime() -> None:
    usage = {
        "input_tokens": 12,
        "output_tokens": 30,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 700,
        "cache_creation": {"ephemeral_5m_input_tokens": 300, "ephemeral_1h_input_tokens": 400},
    }
    tokens = usage_buckets(usage)
    assert tokens == Tokens(12, 30, 1000, 300, 400)
    assert tokens.total_input == 12 + 1000 + 700  # the sum of the three fields, once each
    # without the split, every write is a 5-minute write; missing fields are zero
    assert usage_buckets({"input_tokens": 5, "cache_creation_input_tokens": 9}) == Tokens(
        5, 0, 0, 9, 0
    )


def test_a_dated_model_id_is_priced_by_its_prefix_and_an_unknown_one_is_refused() -> None:
    table = PricingTable.default()
    assert table.price("claude-haiku-4-5-20251001") == table.price("claude-haiku-4-5")
    with pytest.raises(us.LLMConfigError, match="not in pricing table"):
        FakeMessagesAPI().model("gpt-99")
    free = FakeMessagesAPI().model("my-local-model", price=Price.zero())
    assert free.price.cost(Tokens(input=10**9)) == 0


def test_a_malformed_pricing_table_names_the_bad_entry() -> None:
    bad = {"version": "v1", "models": {"m": {"input": 1, "output": -2}}}
    with pytest.raises(us.LLMConfigError, match="no price for cache_read"):
        PricingTable.from_mapping(bad)
    bad["models"]["m"] = dict.fromkeys(us.llm.BUCKETS, 1.0) | {"output": "x"}
    with pytest.raises(us.LLMConfigError, match=r"m\.output must be a number"):
        PricingTable.from_mapping(bad)
    with pytest.raises(us.LLMConfigError, match="version"):
        PricingTable.from_mapping({"models": {"m": dict.fromkeys(us.llm.BUCKETS, 1.0)}})


def test_a_missing_api_key_is_an_error_when_the_model_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(us.LLMConfigError, match="ANTHROPIC_API_KEY"):
        Model("claude-sonnet-4-5")


# -- calls, budgets, records ------------------------------------------------------------------


async def test_a_reply_decodes_as_the_sdk_parses_it_even_with_an_unknown_block_type() -> None:
    blocks = (
        {"type": "text", "text": "Here."},
        {"type": "tool_use", "id": "toolu_1", "name": "look", "input": {"q": [1, {"a": None}]}},
    )
    # a block type newer than the SDK's models: the validated decode refuses it, and the
    # SDK's lenient parse must still give the caller the reply, as the bare SDK would
    future = ({"type": "text", "text": "Later."}, {"type": "hologram", "frames": [1, 2]})
    workspace = (("anthropic-workspace-id", "wrk_1"),)
    replies = [
        FakeMessagesAPI.message(blocks, stop_reason="tool_use", headers=workspace),
        FakeMessagesAPI.message(future, headers=workspace),
    ]
    fake = FakeMessagesAPI(seed=5).script(*(r for r in replies for _ in "ab"))  # ours, bare
    model = fake_model(fake)
    bare = fake.client()
    for _ in replies:
        ours = await model.create(max_tokens=64, messages=HI)
        sdk = await bare.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=HI)  # type: ignore[arg-type]
        assert isinstance(ours, anthropic.types.Message)
        assert ours.model_dump(warnings=False) == sdk.model_dump(warnings=False)
        assert [type(b) for b in ours.content] == [type(b) for b in sdk.content]
        assert ours._request_id == fake.requests[-2].request_id
        assert ours._workspace_id == sdk._workspace_id == "wrk_1"
    assert [b.type for b in ours.content] == ["text", "hologram"]


async def test_a_call_reserves_then_settles_the_priced_usage_and_records_it() -> None:
    fake = FakeMessagesAPI(seed=3).script(FakeMessagesAPI.text("Bonjour!"))
    model = fake_model(fake)
    async with us.Runtime() as rt:
        async with rt.budget(name="conv-1", usd=1.0) as budget:
            reply = await model.create(max_tokens=64, messages=HI)
            assert budget.reserved.usd == 0  # settled: nothing held any more
        assert isinstance(reply, anthropic.types.Message)
        assert reply.content[0].type == "text" and reply.content[0].text == "Bonjour!"
        tokens = usage_buckets(reply.usage)
        expected = model.price.cost(tokens)
        assert budget.spent.usd == pytest.approx(expected) and expected > 0
        assert budget.spent.tokens == tokens.total
        (record,) = us.llm.call_log(rt).records
        assert record.conversation == "conv-1" and record.outcome == "ok"
        assert record.usd == budget.spent.usd and record.attempts == 1
        assert record.request_id == fake.requests[-1].request_id
        assert record.price_version == model.pricing.version
        text = rt.metrics.exposition()
    assert 'understudy_llm_requests_total{agent_type="none",error_type="",' in text
    assert 'token_type="output"' in text and "understudy_llm_cost_usd_total" in text


async def test_budget_exceeded_is_raised_before_anything_is_sent() -> None:
    fake = FakeMessagesAPI()
    model = fake_model(fake, estimate="local")
    async with us.Runtime() as rt, rt.budget(name="tiny", usd=0.0001) as budget:
        with pytest.raises(us.BudgetExceeded):
            await model.create(max_tokens=4000, messages=HI)  # 4000 x $15/MTok = $0.06
        assert [r.path for r in fake.requests] == []
        assert budget.spent.usd == 0 and budget.reserved.usd == 0
        assert us.llm.call_log(rt).records[-1].outcome == "refused"


async def test_a_hundred_conversations_sharing_a_budget_never_settle_past_its_limit() -> None:
    fake = FakeMessagesAPI(seed=5, latency=0.005)
    model = fake_model(fake, max_concurrency=100)
    outcomes: list[str] = []
    async with us.Runtime() as rt, rt.budget(name="shared", usd=0.02) as budget:

        async def conversation(i: int) -> None:
            try:
                await model.create(
                    max_tokens=200, messages=[{"role": "user", "content": f"question {i}"}]
                )
                outcomes.append("ok")
            except us.BudgetExceeded:
                outcomes.append("refused")

        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(conversation, i)
        assert budget.spent.usd <= 0.02
        assert "ok" in outcomes and "refused" in outcomes
        records = us.llm.call_log(rt).records
        assert sum(r.usd for r in records) == pytest.approx(budget.spent.usd)
        sent = [r for r in fake.requests if r.path == "/v1/messages"]
        assert len(sent) == outcomes.count("ok")


async def test_calls_from_a_handler_are_recorded_with_the_actor_and_heartbeat() -> None:
    fake = FakeMessagesAPI(seed=1).script(
        FakeMessagesAPI.text("a fairly long streamed answer", idle_stall=(4, 0.05))
    )
    deltas: list[str] = []
    model = fake_model(fake)
    async with us.Runtime() as rt:
        # idle_timeout 0.2 s: the stream beats on every event, so only a real stall trips it
        ref = await rt.spawn(lambda: Chatty(model, deltas), name="chatty", idle_timeout=0.2)
        assert await ref.ask(Ask("hi")) == "a fairly long streamed answer"
        (record,) = us.llm.call_log(rt).records
    assert "".join(deltas) == "a fairly long streamed answer"
    assert record.agent == "chatty" and record.agent_type == "Chatty"
    assert record.ttft is not None and record.ttft < record.latency


# -- the retry owner ------------------------------------------------------------------------


async def test_retryable_errors_are_retried_with_the_retry_count_header() -> None:
    fake = FakeMessagesAPI().script(
        FakeMessagesAPI.overloaded(),
        FakeMessagesAPI.error(500),
        FakeMessagesAPI.error(504),
        FakeMessagesAPI.rate_limited(retry_after=0.01),
        FakeMessagesAPI.text("finally"),
    )
    model = fake_model(fake, retries=4, estimate="local")
    reply = await model.create(max_tokens=10, messages=HI)
    assert reply.content[0].type == "text" and reply.content[0].text == "finally"
    assert [r.retry_count for r in fake.requests] == [0, 1, 2, 3, 4]
    assert [r.status for r in fake.requests] == [529, 500, 504, 429, 200]
    (record,) = model._own_log.records
    assert record.attempts == 5 and record.outcome == "ok"


@pytest.mark.parametrize(
    ("reply", "error", "error_type"),
    [
        (FakeMessagesAPI.error(400), us.LLMRequestError, "invalid_request_error"),
        (FakeMessagesAPI.error(401), us.LLMRequestError, "authentication_error"),
        (FakeMessagesAPI.error(403), us.LLMRequestError, "permission_error"),
        (FakeMessagesAPI.error(402), us.LLMRequestError, "billing_error"),
        (FakeMessagesAPI.spend_limit(), us.SpendLimitReached, "rate_limit_error"),
        (FakeMessagesAPI.error(500, should_retry=False), us.LLMRetriesExhausted, "api_error"),
    ],
)
async def test_errors_that_must_not_be_retried_are_not(
    reply: Any, error: type[Exception], error_type: str
) -> None:
    fake = FakeMessagesAPI().script(reply)
    model = fake_model(fake, estimate="local")
    with pytest.raises(error) as caught:
        await model.create(max_tokens=10, messages=HI)
    assert isinstance(caught.value, us.LLMError) and caught.value.error_type == error_type
    assert caught.value.request_id == fake.requests[0].request_id
    assert len(fake.requests) == 1


async def test_retries_are_bounded_and_the_breaker_counts_overload_not_4xx() -> None:
    fake = FakeMessagesAPI().script(*[FakeMessagesAPI.overloaded()] * 3)
    model = fake_model(fake, retries=2, estimate="local", breaker=us.Breaker(failures=3))
    with pytest.raises(us.LLMRetriesExhausted) as caught:
        await model.create(max_tokens=10, messages=HI)
    assert caught.value.attempts == 3 and len(fake.requests) == 3
    assert model.breaker is not None and model.breaker.state == "open"
    with pytest.raises(us.CircuitOpen):
        await model.create(max_tokens=10, messages=HI)
    assert len(fake.requests) == 3  # refused without a request

    fake4 = FakeMessagesAPI().script(*[FakeMessagesAPI.error(400)] * 3)
    model4 = fake_model(fake4, estimate="local", breaker=us.Breaker(failures=2))
    for _ in range(3):
        with pytest.raises(us.LLMRequestError):
            await model4.create(max_tokens=10, messages=HI)
    assert model4.breaker is not None and model4.breaker.state == "closed"


async def test_a_retry_after_past_the_deadline_fails_at_once() -> None:
    fake = FakeMessagesAPI().script(FakeMessagesAPI.rate_limited(retry_after=3600))
    model = fake_model(fake, estimate="local")
    async with us.Runtime() as rt, rt.budget(seconds=2.0):
        with anyio.fail_after(1.0):
            with pytest.raises(us.DeadlineExceeded, match="past the deadline"):
                await model.create(max_tokens=10, messages=HI)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("fault", ["stream_error", "reset", "idle_stall", "first_byte_stall"])
async def test_a_stream_failing_before_any_text_is_retried(fault: str) -> None:
    fake = FakeMessagesAPI(stall=30)
    faults = {
        "stream_error": fake.stream_error(after=1),
        "reset": fake.reset(after=1),
        "idle_stall": fake.idle_stall(after=1),
        "first_byte_stall": fake.first_byte_stall(),
    }
    fake.script(faults[fault], fake.text("second try"))
    model = fake_model(fake, estimate="local", first_byte_timeout=0.2, idle_timeout=0.2)
    with anyio.fail_after(5):
        reply = await model.stream(max_tokens=20, messages=HI)
    assert reply.content[0].type == "text" and reply.content[0].text == "second try"
    assert [r.retry_count for r in fake.requests] == [0, 1]


@pytest.mark.parametrize("fault", ["stream_error", "reset", "idle_stall"])
async def test_a_stream_failing_after_text_reached_the_caller_is_not_retried(fault: str) -> None:
    fake = FakeMessagesAPI(stall=30)
    faults = {
        "stream_error": fake.stream_error(after=5),
        "reset": fake.reset(after=5),
        "idle_stall": fake.idle_stall(after=5),
    }
    fake.script(faults[fault])
    model = fake_model(fake, estimate="local", idle_timeout=0.2)
    seen: list[str] = []
    with anyio.fail_after(5), pytest.raises(us.LLMStreamInterrupted) as caught:
        await model.stream(max_tokens=20, messages=HI, on_text=seen.append)
    assert seen and len(fake.requests) == 1
    expected = {"stream_error": "overloaded_error", "reset": "connection_error"}
    assert caught.value.error_type == expected.get(fault, "stream_stalled")


async def test_a_non_streaming_stall_is_bounded_by_the_deadline() -> None:
    fake = FakeMessagesAPI(stall=3600)
    fake.script(fake.first_byte_stall())
    model = fake_model(fake, estimate="local")
    async with us.Runtime() as rt, rt.budget(seconds=0.3):
        with anyio.fail_after(2), pytest.raises(us.DeadlineExceeded):
            await model.create(max_tokens=10, messages=HI)
        assert us.llm.call_log(rt).records[-1].outcome == "timeout"


# -- fallbacks ---------------------------------------------------------------------------------


async def test_an_overloaded_model_falls_back_to_the_next_one() -> None:
    fake = FakeMessagesAPI().script(
        *[FakeMessagesAPI.overloaded()] * 2, FakeMessagesAPI.text("from haiku")
    )
    model = fake_model(fake, retries=1, estimate="local", fallbacks=("claude-haiku-4-5",))
    async with us.Runtime() as rt, rt.budget(name="conv"):
        with rt.events.subscribe(us.llm.LLMFallback) as events:
            reply = await model.create(max_tokens=10, messages=HI)
            event = events.get_nowait()
            assert isinstance(event, us.llm.LLMFallback)
        records = us.llm.call_log(rt).records
        text = rt.metrics.exposition()
    assert reply.content[0].type == "text" and reply.content[0].text == "from haiku"
    assert [r.body["model"] for r in fake.requests] == ["claude-sonnet-4-5"] * 2 + [
        "claude-haiku-4-5"
    ]
    assert event.reason == "overloaded_error" and event.fallback == "claude-haiku-4-5"
    assert [(r.model, r.outcome) for r in records] == [
        ("claude-sonnet-4-5", "error"),
        ("claude-haiku-4-5", "ok"),
    ]
    assert 'understudy_llm_fallbacks_total{fallback="claude-haiku-4-5"' in text


async def test_a_budget_too_small_for_the_big_model_takes_the_cheaper_one() -> None:
    fake = FakeMessagesAPI()
    model = fake.model("claude-opus-4-1", estimate="local", fallbacks=("claude-haiku-4-5",))
    async with us.Runtime() as rt, rt.budget(usd=0.01):
        # opus: 200 x $75/MTok = $0.015 > $0.01; haiku: 200 x $5/MTok = $0.001
        reply = await model.create(max_tokens=200, messages=HI)
    assert reply.model == "claude-haiku-4-5"
    assert [r.body["model"] for r in fake.requests] == ["claude-haiku-4-5"]


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"messages": HI}, "max_tokens must be a positive int"),
        ({"max_tokens": -1, "messages": HI}, "max_tokens must be a positive int"),
        ({"max_tokens": 5, "messages": []}, "messages must be a non-empty list"),
        (
            {"max_tokens": 5, "messages": [*HI, {"role": "user", "content": "again"}]},
            "roles must alternate",
        ),
        (
            {
                "max_tokens": 5,
                "messages": [
                    *HI,
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
                        ],
                    },
                    {"role": "user", "content": "no result"},
                ],
            },
            "unanswered: toolu_1",
        ),
    ],
)
async def test_requests_the_client_can_check_are_refused_before_sending(
    params: dict[str, Any], match: str
) -> None:
    fake = FakeMessagesAPI()
    with pytest.raises(us.InvalidLLMRequest, match=match):
        await fake_model(fake).create(**params)
    assert fake.requests == []


def test_llm_errors_form_one_hierarchy() -> None:
    for error in (
        us.LLMConfigError,
        us.InvalidLLMRequest,
        us.LLMRequestError,
        us.SpendLimitReached,
        us.LLMRetriesExhausted,
        us.LLMStreamInterrupted,
    ):
        assert issubclass(error, us.LLMError) and issubclass(error, us.UnderstudyError)
    assert issubclass(us.SpendLimitReached, us.LLMRequestError)


async def test_an_actors_idle_timeout_catches_a_stalled_stream() -> None:
    fake = FakeMessagesAPI(stall=30)
    fake.script(fake.idle_stall(after=4))
    model = fake_model(fake, estimate="local", idle_timeout=60)  # the Model's own is longer
    deltas: list[str] = []
    async with us.Runtime() as rt:
        ref = await rt.spawn(lambda: Chatty(model, deltas), name="chatty", idle_timeout=0.3)
        with anyio.fail_after(5), pytest.raises(us.IdleTimeout):
            await ref.ask(Ask("hi"))
        (record,) = us.llm.call_log(rt).records
    assert (record.outcome, record.error_type, record.agent) == ("timeout", "cancelled", "chatty")
    assert model.in_flight == 0  # the slot was given back


async def test_a_conversation_s_next_turn_is_estimated_from_its_counted_prefix() -> None:
    """count_tokens is cached per prompt prefix: the first turn is counted, the next one
    (the same system and earlier messages, more after them) is estimated from that count
    plus a local over-estimate of the new messages, with no count request; the reservation
    is settled from the usage."""
    fake = FakeMessagesAPI()
    model = fake.model(estimate="count_tokens")
    system = "You are terse. " * 40
    turn1 = [{"role": "user", "content": "What is the capital of France?"}]
    fake.script(FakeMessagesAPI.text("Paris."), FakeMessagesAPI.text("About 2.1 million."))
    async with us.Runtime() as rt, rt.budget(tokens=100_000) as budget:
        await model.create(max_tokens=50, system=system, messages=turn1)
        counts = [r for r in fake.requests if r.path.endswith("count_tokens")]
        assert len(counts) == 1
        turn2 = [
            *turn1,
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And its population?"},
        ]
        first = budget.spent.tokens
        reply = await model.create(max_tokens=50, system=system, messages=turn2)
        assert [r for r in fake.requests if r.path.endswith("count_tokens")] == counts  # none new
        used = reply.usage.input_tokens + reply.usage.output_tokens
        assert budget.spent.tokens == first + used  # settled from the usage
        assert budget.reserved.tokens == 0  # and the estimate's hold released
    # a different system prompt shares no prefix: it is counted
    fake.script(FakeMessagesAPI.text("ok"))
    async with us.Runtime() as rt, rt.budget(tokens=100_000):
        await model.create(max_tokens=5, system="Other.", messages=turn1)
    assert len([r for r in fake.requests if r.path.endswith("count_tokens")]) == 2
    # with no budget to reserve from (and no token rate limit) nothing is counted
    fake.script(FakeMessagesAPI.text("ok"))
    await model.create(max_tokens=5, system="Unbudgeted.", messages=turn1)
    assert len([r for r in fake.requests if r.path.endswith("count_tokens")]) == 2


class Draft(us.Request[str], frozen=True):
    text: str


class Writer(us.Actor):
    """An actor that answers through one model (the shape that composes with first_of)."""

    def __init__(self, model: Model) -> None:
        self.model = model

    async def draft(self, msg: Draft) -> str:
        reply = await self.model.create(
            max_tokens=20, messages=[{"role": "user", "content": msg.text}]
        )
        return "".join(block.text for block in reply.content if block.type == "text")


async def test_models_compose_with_first_of_through_the_actors_that_call_them() -> None:
    """A model's failures are answers of the actor that calls it, so ``us.first_of`` over
    such actors falls back from a failing model to another: first on its exhausted retries,
    then at once on its open breaker (no request sent), and the actor is never restarted."""
    primary, backup = FakeMessagesAPI(), FakeMessagesAPI()
    primary.script(FakeMessagesAPI.overloaded(), FakeMessagesAPI.overloaded())
    backup.script(*(FakeMessagesAPI.text("from the backup") for _ in range(3)))
    big = primary.model(
        "claude-sonnet-4-5",
        retries=0,
        estimate="local",
        breaker=us.Breaker(failures=2, reset_after=60.0),
    )
    small = backup.model("claude-haiku-4-5", estimate="local")
    async with us.Runtime() as rt:
        await rt.spawn(lambda: Writer(big), name="big")
        await rt.spawn(lambda: Writer(small), name="small")
        chain = us.first_of(rt.ref("big"), rt.ref("small"))
        answers = [await chain.ask_with_source(Draft("hi"), timeout=5) for _ in range(3)]
        restarts = {info.name: info.restarts for info in rt.tree()}
    assert [a.value for a in answers] == ["from the backup"] * 3
    assert all(a.source is not None and a.source.name == "small" for a in answers)
    why = [type(a.failures[0][1]) for a in answers]
    assert why == [us.LLMRetriesExhausted, us.LLMRetriesExhausted, us.CircuitOpen]
    assert len([r for r in primary.requests if r.path == "/v1/messages"]) == 2
    assert restarts == {"big": 0, "small": 0}

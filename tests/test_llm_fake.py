"""The fake Messages API: the real AsyncAnthropic client against its mock transport and its
loopback server, on asyncio and trio."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import anyio
import httpx2
import pytest

import understudy as us
from understudy.testing import FakeMessagesAPI

pytestmark = pytest.mark.anyio

HI = [{"role": "user", "content": "Hello"}]
BIG_SYSTEM = [
    {
        "type": "text",
        "text": "You are a careful assistant. " * 40,
        "cache_control": {"type": "ephemeral"},
    }
]


async def test_tool_use_streams_as_input_json_deltas_split_mid_token() -> None:
    fake = FakeMessagesAPI(seed=11).script(
        FakeMessagesAPI.tool_use("get_weather", {"location": "Paris", "unit": "celsius"})
    )
    client = fake.client()
    partials: list[str] = []
    async with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=100, messages=HI
    ) as stream:
        async for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                partials.append(event.delta.partial_json)
        message = await stream.get_final_message()
    block = message.content[0]
    assert block.type == "tool_use" and block.input == {"location": "Paris", "unit": "celsius"}
    assert message.stop_reason == "tool_use"
    assert partials[0] == ""  # the first delta may be empty
    # at least one piece ends inside a token (a string or a key is cut in two)
    assert any(p.count('"') % 2 == 1 for p in partials[1:])
    assert "".join(partials) == json.dumps({"location": "Paris", "unit": "celsius"})


async def test_the_same_seed_gives_the_same_responses() -> None:
    async def run(seed: int) -> list[Any]:
        fake = FakeMessagesAPI(seed=seed).script(
            FakeMessagesAPI.tool_use("f", {"a": 1, "b": "xyz"})
        )
        client = fake.client()
        message = await client.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=HI)
        return [message.id, message.content[0].id, fake.requests[0].request_id]  # type: ignore[union-attr]

    assert await run(1) == await run(1)
    assert await run(1) != await run(2)


@pytest.mark.parametrize(
    ("reply", "stop_reason"),
    [
        (FakeMessagesAPI.refusal("I can't help with that."), "refusal"),
        (FakeMessagesAPI.pause_turn(), "pause_turn"),
        (FakeMessagesAPI.text("cut", stop_reason="max_tokens"), "max_tokens"),
        (
            FakeMessagesAPI.text("x", stop_reason="model_context_window_exceeded"),
            "model_context_window_exceeded",
        ),
        (FakeMessagesAPI.thinking("Let me think.", "42"), "end_turn"),
    ],
)
async def test_stop_reasons_stream_and_parse(reply: Any, stop_reason: str) -> None:
    for stream in (False, True):
        fake = FakeMessagesAPI().script(reply)
        client = fake.client()
        if stream:
            async with client.messages.stream(
                model="claude-sonnet-4-5", max_tokens=50, messages=HI
            ) as events:
                message = await events.get_final_message()
        else:
            message = await client.messages.create(
                model="claude-sonnet-4-5", max_tokens=50, messages=HI
            )
        assert message.stop_reason == stop_reason
        if stop_reason == "refusal":
            assert message.stop_details is not None


async def test_max_tokens_in_the_middle_of_a_tool_use_leaves_incomplete_json() -> None:
    fake = FakeMessagesAPI().script(FakeMessagesAPI.max_tokens_in_tool_use("f", {"query": "long"}))
    client = fake.client()
    response = await client.messages.create(
        model="claude-sonnet-4-5", max_tokens=50, messages=HI, stream=True
    )
    kinds, partial = [], ""
    async for event in response:
        kinds.append(event.type)
        if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
            partial += event.delta.partial_json
        if event.type == "message_delta":
            assert event.delta.stop_reason == "max_tokens"
    with pytest.raises(json.JSONDecodeError):
        json.loads(partial)
    assert "content_block_stop" not in kinds and kinds[-1] == "message_stop"


async def test_count_tokens_agrees_with_usage_and_a_repeated_prefix_reads_from_cache() -> None:
    fake = FakeMessagesAPI()
    client = fake.client()
    counted = await client.messages.count_tokens(
        model="claude-sonnet-4-5",
        system=BIG_SYSTEM,
        messages=HI,  # type: ignore[arg-type]
    )
    first = await client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=20,
        system=BIG_SYSTEM,
        messages=HI,  # type: ignore[arg-type]
    )
    second = await client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=20,
        system=BIG_SYSTEM,
        messages=HI,  # type: ignore[arg-type]
    )
    u1, u2 = first.usage, second.usage
    assert u1.cache_creation_input_tokens and not u1.cache_read_input_tokens
    assert u2.cache_read_input_tokens == u1.cache_creation_input_tokens
    for usage in (u1, u2):
        total = (
            usage.input_tokens
            + (usage.cache_creation_input_tokens or 0)
            + (usage.cache_read_input_tokens or 0)
        )
        assert total == counted.input_tokens


async def test_one_hour_cache_writes_are_reported_apart_and_priced_apart() -> None:
    system = [dict(BIG_SYSTEM[0], cache_control={"type": "ephemeral", "ttl": "1h"})]
    fake = FakeMessagesAPI()
    model = fake.model("claude-sonnet-4-5", estimate="local")
    async with us.Runtime() as rt, rt.budget(name="c") as budget:
        reply = await model.create(max_tokens=20, system=system, messages=HI)
        records = us.llm.call_log(rt).records
    assert reply.usage.cache_creation is not None
    w1h = reply.usage.cache_creation.ephemeral_1h_input_tokens
    assert w1h and records[0].cache_write_1h_tokens == w1h and records[0].cache_write_5m_tokens == 0
    hand = (reply.usage.input_tokens * 3 + w1h * 6 + reply.usage.output_tokens * 15) / 1e6
    assert budget.spent.usd == pytest.approx(hand)


async def test_the_api_rules_are_enforced_with_400s() -> None:
    fake = FakeMessagesAPI()
    client = fake.client()
    unanswered = [
        *HI,
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}}],
        },
        {"role": "user", "content": "ignored the tool"},
    ]
    with pytest.raises(anthropic.BadRequestError, match="toolu_9"):
        await client.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=unanswered)  # type: ignore[arg-type]
    with pytest.raises(anthropic.BadRequestError, match="alternate"):
        await client.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=HI + HI)  # type: ignore[arg-type]


async def test_requests_are_recorded_with_unique_request_ids_and_rate_limit_headers() -> None:
    fake = FakeMessagesAPI()
    client = fake.client()
    raw = await client.messages.with_raw_response.create(
        model="claude-sonnet-4-5", max_tokens=5, messages=HI
    )
    await client.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=HI)
    assert raw.headers["anthropic-ratelimit-requests-limit"] == "4000"
    assert "anthropic-ratelimit-tokens-reset" in raw.headers
    ids = [r.request_id for r in fake.requests]
    assert len(set(ids)) == 2 and raw.headers["request-id"] == ids[0]
    assert fake.requests[0].body["max_tokens"] == 5


async def test_an_unknown_event_type_is_tolerated() -> None:
    from dataclasses import replace

    fake = FakeMessagesAPI().script(replace(FakeMessagesAPI.text("ok"), unknown_event=True))
    model = fake.model(estimate="local")
    reply = await model.stream(max_tokens=5, messages=HI)
    assert reply.content[0].type == "text" and reply.content[0].text == "ok"


async def test_the_loopback_server_serves_streams_errors_and_resets() -> None:
    fake = FakeMessagesAPI(seed=2)
    async with fake.serve() as url:
        assert url.startswith("http://127.0.0.1:")
        client = fake.client(base_url=url)
        fake.script(FakeMessagesAPI.text("over the wire"))
        message = await client.messages.create(
            model="claude-sonnet-4-5", max_tokens=20, messages=HI
        )
        assert message.content[0].type == "text" and message.content[0].text == "over the wire"
        fake.script(FakeMessagesAPI.tool_use("f", {"x": [1, 2, 3]}))
        async with client.messages.stream(
            model="claude-sonnet-4-5", max_tokens=20, messages=HI
        ) as s:
            streamed = await s.get_final_message()
        assert streamed.content[0].type == "tool_use" and streamed.content[0].input == {
            "x": [1, 2, 3]
        }
        fake.script(FakeMessagesAPI.overloaded())
        with pytest.raises(anthropic.APIStatusError) as caught:
            await client.messages.create(model="claude-sonnet-4-5", max_tokens=20, messages=HI)
        assert caught.value.status_code == 529 and caught.value.type == "overloaded_error"
        # a connection dropped mid-stream escapes the SDK as a raw httpx2 error
        fake.script(fake.reset(after=3))
        with pytest.raises(httpx2.HTTPError):
            async with client.messages.stream(
                model="claude-sonnet-4-5", max_tokens=20, messages=HI
            ) as s:
                await s.get_final_message()
        # and understudy's Model retries it, end to end
        model = us.llm.Model(
            "claude-sonnet-4-5", client=client, backoff=0.001, estimate="count_tokens"
        )
        fake.script(fake.reset(after=2), FakeMessagesAPI.text("recovered"))
        reply = await model.stream(max_tokens=20, messages=HI)
        assert reply.content[0].type == "text" and reply.content[0].text == "recovered"
        assert [r.retry_count for r in fake.requests if r.path == "/v1/messages"][-2:] == [0, 1]


async def test_the_fake_killed_mid_stream_fails_the_call_within_its_deadline() -> None:
    fake = FakeMessagesAPI(stall=30)
    fake.script(fake.idle_stall(after=3))
    model: us.llm.Model | None = None
    errors: list[BaseException] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            server = fake.serve()
            url = await server.__aenter__()
            model = us.llm.Model(
                "claude-sonnet-4-5",
                client=fake.client(base_url=url),
                retries=1,
                backoff=0.001,
                estimate="local",
                idle_timeout=10,
            )

            async def call() -> None:
                assert model is not None
                try:
                    async with us.Runtime() as rt, rt.budget(seconds=3):
                        await model.stream(max_tokens=20, messages=HI, on_text=lambda _: None)
                except Exception as error:
                    errors.append(error)

            tg.start_soon(call)
            await anyio.sleep(0.3)
            await server.__aexit__(None, None, None)  # kill the fake mid-stream
    (error,) = errors
    assert isinstance(error, (us.LLMStreamInterrupted, us.LLMRetriesExhausted, us.DeadlineExceeded))


async def test_parallel_tool_uses_stream_each_input_whole_and_usage_can_be_fixed() -> None:
    fake = FakeMessagesAPI(seed=12).script(
        FakeMessagesAPI.tool_uses(
            FakeMessagesAPI.use("get_weather", {"city": "Paris"}, tool_id="t1"),
            FakeMessagesAPI.use("convert", {"amount": 10, "to": "EUR"}),
            text="Checking.",
            input_tokens=10,
            output_tokens=5,
        ),
        FakeMessagesAPI.message(
            [{"type": "text", "text": "Let me"}, FakeMessagesAPI.use("get_weather", {})],
            stop_reason="max_tokens",
        ),
    )
    respond_calls: list[int] = []

    async with fake.client().messages.stream(
        model="claude-sonnet-4-5", max_tokens=100, messages=HI
    ) as stream:
        message = await stream.get_final_message()
    text, first, second = message.content
    assert text.type == "text" and text.text == "Checking."
    assert first.type == "tool_use" and first.id == "t1" and first.input == {"city": "Paris"}
    assert second.type == "tool_use" and second.input == {"amount": 10, "to": "EUR"}
    assert second.id.startswith("toolu_") and message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (10, 5)
    cut = await fake.client().messages.create(model="m", max_tokens=100, messages=HI)
    assert cut.stop_reason == "max_tokens" and [b.type for b in cut.content] == ["text", "tool_use"]

    # respond: a reply chosen from the request, after the script, before the default
    def respond(request: Any) -> Any:
        respond_calls.append(len(request.body["messages"]))
        return FakeMessagesAPI.text("two messages") if len(request.body["messages"]) > 1 else None

    fake = FakeMessagesAPI(respond=respond, default=FakeMessagesAPI.text("default"))
    client = fake.client()
    one = await client.messages.create(model="m", max_tokens=10, messages=HI)
    two = await client.messages.create(
        model="m",
        max_tokens=10,
        messages=[*HI, {"role": "assistant", "content": "Hi"}, {"role": "user", "content": "?"}],
    )
    assert (one.content[0].text, two.content[0].text) == ("default", "two messages")  # type: ignore[union-attr]
    assert respond_calls == [1, 3]

"""Test helpers: a faithful fake of Anthropic's Messages API.

Test your own agents against it with the real ``anthropic.AsyncAnthropic`` client::

    from understudy.testing import FakeMessagesAPI

    fake = FakeMessagesAPI(seed=1)
    fake.script(
        fake.tool_use("get_weather", {"city": "Paris"}),   # streamed as split input_json_delta
        fake.overloaded(),                                  # a 529, retried by understudy
        fake.text("It is sunny in Paris."),
    )
    model = fake.model("claude-sonnet-4-5")                 # an understudy.llm.Model on it
    client = fake.client()                                  # or a bare AsyncAnthropic on it
    ...
    assert [r.retry_count for r in fake.requests] == [0, 0, 1]

``fake.client()`` and ``fake.model()`` use an in-process ``httpx2.MockTransport`` (SDK 2.x's
HTTP package is ``httpx2``). ``async with fake.serve() as url:`` serves the same fake on
127.0.0.1 (a free port) for end-to-end tests: ``fake.client(base_url=url)``.

Scripted replies are used in order, one per ``/v1/messages`` request; unscripted requests
get ``default`` (or, with ``fault_rate``, a seeded fault). The fake implements
``/v1/messages`` (JSON and SSE with the API's event grammar), ``/v1/messages/count_tokens``
(consistent with the usage it reports), prompt caching (a repeated prefix ending in a
``cache_control`` block is read from cache), unique ``request-id`` headers, rate-limit
headers, and the 400s the API gives for unalternating roles or an unanswered ``tool_use``.
``fake.requests`` records every request with its ``x-stainless-retry-count``.
"""

from understudy.testing._fake import FAULTS, FakeMessagesAPI, Received, Reply, count_text_tokens

__all__ = ["FAULTS", "FakeMessagesAPI", "Received", "Reply", "count_text_tokens"]

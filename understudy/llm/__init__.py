"""LLM calls that cannot overspend, hang or storm.

Declare a model once and call it from any handler with the Messages API's own parameters::

    model = us.llm.Model("claude-sonnet-4-5", fallbacks=("claude-haiku-4-5",))

    class Planner(us.Actor):
        async def handle_ask(self, msg: Ask) -> str:
            messages = [{"role": "user", "content": msg.question}]
            reply = await model.create(max_tokens=512, messages=messages)
            return reply.content[0].text

Every call reserves its worst case on the message's budget before it is sent (estimated
input x input price + ``max_tokens`` x output price; :class:`~understudy.BudgetExceeded`
before the call, never after), settles with the usage priced in five buckets
(:mod:`understudy.llm.pricing`), stays inside the message's deadline, is retried by
understudy alone (the SDK's retries are off) according to ``error.type``, goes through the
model's concurrency and rate limits and circuit breaker, and leaves a :class:`CallRecord`
in the runtime's store (``understudy costs DB``) and in its metrics.
"""

from understudy.llm._metrics import DURATION_BUCKETS, TTFT_BUCKETS, LLMMetrics
from understudy.llm._model import (
    RETRYABLE,
    LLMFallback,
    Model,
    check_request,
    classify,
    conversation,
)
from understudy.llm._records import GROUPINGS, CallLog, CallRecord, read_records, summarize
from understudy.llm.costs import call_log, costs
from understudy.llm.pricing import BUCKETS, Price, PricingTable, Tokens, usage_buckets

__all__ = [
    "BUCKETS",
    "DURATION_BUCKETS",
    "GROUPINGS",
    "RETRYABLE",
    "TTFT_BUCKETS",
    "CallLog",
    "CallRecord",
    "LLMFallback",
    "LLMMetrics",
    "Model",
    "Price",
    "PricingTable",
    "Tokens",
    "call_log",
    "check_request",
    "classify",
    "conversation",
    "costs",
    "read_records",
    "summarize",
    "usage_buckets",
]

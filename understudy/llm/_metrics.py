"""LLM metrics: plain counters updated per call, turned into Prometheus families at scrape.

Names follow Prometheus' conventions (base units, ``_total`` counters); meanings follow
OpenTelemetry's GenAI conventions: request duration is ``gen_ai.client.operation.duration``
(with its bucket boundaries), time to first token is ``gen_ai.server.time_to_first_token``,
tokens are ``gen_ai.client.token.usage`` split by bucket (input = uncached input only; the
OTel total input is the sum of ``input``, ``cache_read`` and both cache writes).
Labels are bounded: model, agent type (actor class), token type, outcome, error type,
retry reason. Never a conversation or correlation id.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from understudy.breaker import STATES

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from understudy.llm._model import Model

DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
"""OTel GenAI's boundaries for ``gen_ai.client.operation.duration`` (seconds)."""

TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
"""OTel GenAI's boundaries for ``gen_ai.server.time_to_first_token`` (seconds)."""


class _Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, n in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, float(total)))
        return out


class LLMMetrics(Collector):
    """The LLM families of one runtime (registered in its metrics registry on first use)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str, str], int] = {}
        self.retries: dict[tuple[str, str], int] = {}
        self.tokens: dict[tuple[str, str, str], int] = {}
        self.cost: dict[tuple[str, str], float] = {}
        self.duration: dict[str, _Histogram] = {}
        self.ttft: dict[str, _Histogram] = {}
        self.limit_waits: dict[str, list[float]] = {}
        self.fallbacks: dict[tuple[str, str, str], int] = {}
        self.models: dict[str, Model] = {}

    def call(
        self,
        model: str,
        agent_type: str,
        outcome: str,
        error_type: str,
        duration: float,
        ttft: float | None,
        buckets: tuple[tuple[str, int], ...],
        usd: float,
    ) -> None:
        key = (model, agent_type, outcome, error_type)
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.duration.get(model)
        if hist is None:
            hist = self.duration[model] = _Histogram(DURATION_BUCKETS)
        hist.observe(duration)
        if ttft is not None:
            first = self.ttft.get(model)
            if first is None:
                first = self.ttft[model] = _Histogram(TTFT_BUCKETS)
            first.observe(ttft)
        for bucket, n in buckets:
            if n:
                tkey = (model, agent_type, bucket)
                self.tokens[tkey] = self.tokens.get(tkey, 0) + n
        if usd:
            ckey = (model, agent_type)
            self.cost[ckey] = self.cost.get(ckey, 0.0) + usd

    def retry(self, model: str, reason: str) -> None:
        key = (model, reason)
        self.retries[key] = self.retries.get(key, 0) + 1

    def waited(self, model: str, seconds: float) -> None:
        entry = self.limit_waits.get(model)
        if entry is None:
            entry = self.limit_waits[model] = [0.0, 0.0]
        entry[0] += 1
        entry[1] += seconds

    def fallback(self, model: str, to: str, reason: str) -> None:
        key = (model, to, reason)
        self.fallbacks[key] = self.fallbacks.get(key, 0) + 1

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        model: Any  # the Model in the last loop
        yield _counter(
            "understudy_llm_requests",
            "Model calls (their retries included), by outcome (ok, error, refused, timeout) "
            "and error type",
            ["model", "agent_type", "outcome", "error_type"],
            self.requests,
        )
        yield _counter(
            "understudy_llm_retries",
            "Requests sent again after a retryable failure, by reason (the error type)",
            ["model", "reason"],
            self.retries,
        )
        yield _counter(
            "understudy_llm_tokens",
            "Tokens used, by bucket: input (uncached), output, cache_read, cache_write_5m, "
            "cache_write_1h",
            ["model", "agent_type", "token_type"],
            self.tokens,
        )
        yield _counter(
            "understudy_llm_cost_usd",
            "Dollars settled for model calls",
            ["model", "agent_type"],
            self.cost,
        )
        yield _histogram(
            "understudy_llm_request_duration_seconds",
            "Duration of model calls, retries and waits included (OTel "
            "gen_ai.client.operation.duration)",
            self.duration,
        )
        yield _histogram(
            "understudy_llm_time_to_first_token_seconds",
            "Time from sending a streamed request to its first event (OTel "
            "gen_ai.server.time_to_first_token)",
            self.ttft,
        )
        waits = CounterMetricFamily(
            "understudy_llm_rate_limit_waits",
            "Calls that waited for the model's rate limiter",
            labels=["model"],
        )
        wait_s = CounterMetricFamily(
            "understudy_llm_rate_limit_wait_seconds",
            "Seconds calls waited for the model's rate limiter",
            labels=["model"],
        )
        for model, (n, seconds) in self.limit_waits.items():
            waits.add_metric([model], n)
            wait_s.add_metric([model], seconds)
        yield waits
        yield wait_s
        yield _counter(
            "understudy_llm_fallbacks",
            "Calls that went on to a fallback model, by reason",
            ["model", "fallback", "reason"],
            self.fallbacks,
        )
        state = GaugeMetricFamily(
            "understudy_llm_breaker_state",
            "1 for the state each model's circuit breaker is in",
            labels=["model", "state"],
        )
        in_flight = GaugeMetricFamily(
            "understudy_llm_in_flight", "Requests being sent or streamed now", labels=["model"]
        )
        for name, model in self.models.items():
            current = model.breaker.state if model.breaker is not None else "closed"
            for s in STATES:
                state.add_metric([name, s], 1.0 if s == current else 0.0)
            in_flight.add_metric([name], model.in_flight)
        yield state
        yield in_flight


def _counter(
    name: str, doc: str, labels: list[str], values: Mapping[Any, float]
) -> CounterMetricFamily:
    """A counter family with one sample per label tuple of ``values``."""
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, n in values.items():
        family.add_metric(list(key), n)
    return family


def _histogram(name: str, doc: str, values: Mapping[str, Any]) -> HistogramMetricFamily:
    """A histogram family labelled by model, one sample per model of ``values``."""
    family = HistogramMetricFamily(name, doc, labels=["model"])
    for model, hist in values.items():
        family.add_metric([model], hist.buckets(), hist.sum)
    return family

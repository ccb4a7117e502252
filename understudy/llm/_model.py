"""``Model``: every LLM call understudy makes goes through one of these."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import anthropic
import anyio
import httpx2
import pydantic
from anthropic.types import Message

from understudy.actors import Cell, Scope, _current
from understudy.breaker import Breaker
from understudy.errors import (
    BudgetExceeded,
    CircuitOpen,
    DeadlineExceeded,
    InvalidLLMRequest,
    LLMConfigError,
    LLMError,
    LLMRequestError,
    LLMRetriesExhausted,
    LLMStreamInterrupted,
    SpendLimitReached,
)
from understudy.events import Event
from understudy.llm._limiter import RateLimiter
from understudy.llm._metrics import LLMMetrics
from understudy.llm._records import CallLog, CallRecord
from understudy.llm.pricing import Price, PricingTable, Tokens, usage_buckets

if TYPE_CHECKING:
    from understudy.budgets import Budget, Reservation

RETRYABLE = frozenset(
    {
        "overloaded_error",
        "rate_limit_error",
        "api_error",
        "timeout_error",
        "connection_error",
        "stream_stalled",
    }
)
"""Error types retried with backoff inside the deadline. Every other ``error.type``
(``invalid_request_error``, ``authentication_error``, ``permission_error``,
``billing_error``, ``not_found_error``, ...) and a spend-limit 429 are never retried."""

_BREAKER_COUNTS = frozenset(
    {"overloaded_error", "api_error", "timeout_error", "connection_error", "stream_stalled"}
)
"""Failures that say the model is unhealthy (a 4xx, rate limits included, says nothing)."""

SPEND_LIMIT_CODES = frozenset(
    {"enforced_spend_limit_reached", "contract_spend_limit_reached", "ramp_limit_exceeded"}
)

_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class LLMFallback(Event, frozen=True, kw_only=True):
    """A call to ``model`` went on to ``fallback`` because of ``reason`` (``circuit_open``,
    ``budget_exceeded``, or the error type that outlasted the retries)."""

    model: str
    fallback: str
    reason: str


class _Failure(Exception):
    """One failed attempt, classified (internal)."""

    def __init__(
        self,
        error_type: str,
        cause: BaseException,
        *,
        status: int = 0,
        request_id: str = "",
        retry_after: float | None = None,
        should_retry: bool | None = None,
        spend_limit: bool = False,
        usage: Tokens | None = None,
    ) -> None:
        super().__init__(error_type)
        self.usage = usage if usage is not None else Tokens()
        self.error_type = error_type
        self.cause = cause
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        self.should_retry = should_retry
        self.spend_limit = spend_limit

    @property
    def retryable(self) -> bool:
        if self.spend_limit or self.should_retry is False:
            return False
        return self.error_type in RETRYABLE


def _read_headers(headers: Any) -> dict[str, str]:
    """The response headers a Model reads (``request-id``, ``anthropic-workspace-id``,
    ``anthropic-ratelimit-*``), in one pass over the raw list: each ``httpx``
    ``Headers.get`` scans and decodes them all."""
    raw = getattr(headers, "raw", None)
    if raw is None:
        return {k.lower(): v for k, v in dict(headers).items()}
    found: dict[str, str] = {}
    for key, value in raw:
        low = key.lower()
        if (
            low == b"request-id"
            or low.startswith(b"anthropic-ratelimit-")
            or low == b"anthropic-workspace-id"
        ):
            found[low.decode("latin-1")] = value.decode("latin-1")
    return found


def _decode(body: bytes) -> Message | None:
    """The response body as the SDK's ``Message``, validated by pydantic-core in one pass
    over the JSON; ``None`` when it does not validate (a content block type newer than the
    SDK's models, a field of an unexpected type, not JSON), for the SDK's own lenient parse.

    Why not the SDK's parse every time: it builds the models field by field in Python
    (``construct_type``, 140-190 µs for a two-block reply on these machines) where the
    validator takes 50 µs, the largest share of a fast turn after the request building."""
    try:
        return Message.model_validate_json(body)
    except pydantic.ValidationError:
        return None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    seconds = headers.get("retry-after")
    if seconds:
        try:
            return max(float(seconds), 0.0)
        except ValueError:
            import email.utils

            try:
                when = email.utils.parsedate_to_datetime(seconds)
            except (TypeError, ValueError):
                return None
            return max(when.timestamp() - time.time(), 0.0)
    return None


def classify(error: BaseException) -> _Failure:
    """The error type of a failed attempt, by ``error.type`` (the status only when the body
    has none), with the server's retry hints."""
    if isinstance(error, _Failure):
        return error
    if isinstance(error, anthropic.APIStatusError):
        headers = error.response.headers
        error_type = error.type or _STATUS_TYPES.get(error.status_code, "")
        if not error_type:
            error_type = "api_error" if error.status_code >= 500 else "invalid_request_error"
        hint = headers.get("x-should-retry")
        return _Failure(
            str(error_type),
            error,
            status=error.status_code,
            request_id=error.request_id or headers.get("request-id") or "",
            retry_after=_retry_after(headers),
            should_retry=None if hint is None else hint.strip().lower() == "true",
            spend_limit=(error.error_code or "") in SPEND_LIMIT_CODES,
        )
    if isinstance(error, (anthropic.APITimeoutError, httpx2.TimeoutException)):
        return _Failure("timeout_error", error)
    if isinstance(error, (anthropic.APIConnectionError, httpx2.TransportError)):
        return _Failure("connection_error", error)
    raise error


_ALLOWED_ROLES = ("user", "assistant")
_PROMPT_KEYS = ("system", "messages", "tools", "tool_choice", "thinking")


def check_request(params: Mapping[str, Any], where: str) -> int:
    """Check what the client can check of a request; its ``max_tokens``. Raises
    :class:`InvalidLLMRequest` naming the offending field."""
    max_tokens = params.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidLLMRequest(
            f"{where}: max_tokens must be a positive int, not {max_tokens!r}",
            error_type="invalid_request",
        )
    messages = params.get("messages")
    if not isinstance(messages, (list, tuple)) or not messages:
        raise InvalidLLMRequest(
            f"{where}: messages must be a non-empty list, not {messages!r}",
            error_type="invalid_request",
        )
    previous = ""
    pending: set[str] = set()
    for i, message in enumerate(messages):
        mapping = type(message) is dict or isinstance(message, Mapping)  # dict: no ABC check
        role = message.get("role") if mapping else None
        if role not in _ALLOWED_ROLES:
            raise InvalidLLMRequest(
                f"{where}: messages[{i}].role must be 'user' or 'assistant', not {role!r}",
                error_type="invalid_request",
            )
        if role == previous:
            raise InvalidLLMRequest(
                f"{where}: messages[{i}] is a second {role!r} turn in a row: roles must "
                "alternate between 'user' and 'assistant'",
                error_type="invalid_request",
            )
        content = message.get("content")
        blocks = content if isinstance(content, (list, tuple)) else ()
        if pending:
            answered = {
                _field(b, "tool_use_id") for b in blocks if _field(b, "type") == "tool_result"
            }
            missing = pending - answered
            if missing:
                raise InvalidLLMRequest(
                    f"{where}: messages[{i}] must answer every tool_use of messages[{i - 1}] "
                    f"with a tool_result; unanswered: {', '.join(sorted(missing))}",
                    error_type="invalid_request",
                )
            pending = set()
        if role == "assistant":
            pending = {str(_field(b, "id")) for b in blocks if _field(b, "type") == "tool_use"}
        previous = role
    return max_tokens


def _field(block: Any, name: str) -> Any:
    """A content block's field, whether the block is a dict or an SDK model."""
    if type(block) is dict or isinstance(block, Mapping):
        return block.get(name)
    return getattr(block, name, None)


def _local_estimate(params: Mapping[str, Any]) -> int:
    """A conservative local estimate of input tokens (no request): one token per 3 bytes of
    the prompt's JSON, which over-counts English (about 4 characters per token)."""
    prompt = {k: params.get(k) for k in ("system", "messages", "tools") if params.get(k)}
    return math.ceil(len(json.dumps(prompt, default=str).encode()) / 3) + 8


def _prefix_keys(prompt: Mapping[str, Any]) -> list[bytes]:
    """Keys of a prompt's prefixes: everything but the messages plus the first message, the
    first two, ..., the whole prompt (last). One incremental hash: linear in the prompt."""
    head = {k: v for k, v in prompt.items() if k != "messages"}
    digest = hashlib.blake2b(repr(sorted(head.items())).encode(), digest_size=16)
    keys: list[bytes] = []
    for message in prompt.get("messages") or ():
        digest.update(b"\x00" + repr(message).encode())
        keys.append(digest.digest())
    return keys or [digest.digest()]


def _uses_cache(params: Mapping[str, Any]) -> bool:
    if params.get("cache_control"):
        return True
    return '"cache_control"' in json.dumps(
        [params.get("system"), params.get("tools"), params.get("messages")], default=str
    )


_conversation: ContextVar[str] = ContextVar("understudy_llm_conversation", default="")


@contextlib.contextmanager
def conversation(name: str) -> Iterator[None]:
    """Attribute the calls made inside this block (in this task and the tasks it starts) to
    conversation ``name``: their :class:`CallRecord`'s ``conversation`` (``understudy costs
    DB --by conversation``). Outside any block a call's conversation is its budget's name.
    An agent sets it to its conversation id around each model call."""
    if not isinstance(name, str):
        raise TypeError(f"llm.conversation: name must be a str, not {type(name).__name__}")
    token = _conversation.set(name)
    try:
        yield
    finally:
        _conversation.reset(token)


class _Here:
    """Where a call is made: the actor, its message's budget, deadline and correlation id."""

    __slots__ = ("agent", "agent_type", "budget", "cell", "correlation_id", "deadline", "runtime")

    def __init__(self, fallback_runtime: Any) -> None:
        current = _current.get()
        cell = current if isinstance(current, Cell) else None
        if isinstance(current, Scope):
            cell = current.cell
        self.cell = cell
        envelope = current.current if current is not None else None
        limits = envelope[5] if envelope is not None else None
        self.budget: Budget | None = limits[1] if limits is not None else None
        self.deadline: float = limits[0] if limits is not None else 0.0
        self.correlation_id = format(envelope[3], "x") if envelope is not None else ""
        self.agent = cell.label if cell is not None else ""
        self.agent_type = cell.actor_class.__qualname__ if cell is not None else ""
        runtime = cell.system if cell is not None else None
        if runtime is None and self.budget is not None:
            runtime = self.budget._runtime
        self.runtime = runtime if runtime is not None else fallback_runtime

    def time_left(self) -> float:
        if not self.deadline or self.runtime is None:
            return math.inf
        return float(self.deadline - self.runtime.clock())

    def heartbeat(self) -> None:
        cell = self.cell
        if cell is not None and cell.guard is not None:
            cell.guard.heartbeat()


class _Hub:
    """A runtime's LLM state: its call log and metrics (made on first use)."""

    __slots__ = ("log", "metrics")

    def __init__(self, log: CallLog, metrics: LLMMetrics) -> None:
        self.log = log
        self.metrics = metrics


def hub_of(runtime: Any) -> _Hub:
    """The LLM call log and metrics of ``runtime`` (attached on first use)."""
    hub: _Hub | None = getattr(runtime, "llm", None)
    if hub is None:
        hub = _Hub(CallLog(runtime.store), LLMMetrics())
        runtime.llm = hub
        runtime.metrics.add_source(hub.metrics)
    return hub


class Model:
    """A model to call, with its client, limits, retries, breaker, price and fallbacks.

    ``name`` is the API's model id. ``client`` is an ``anthropic.AsyncAnthropic`` to use
    (its own retries should be off); without one, a client is made from ``api_key`` (default
    ``ANTHROPIC_API_KEY``: a missing key is an :class:`LLMConfigError` here, not at the first
    call) and ``base_url``, with ``max_retries=0``: understudy is the only retry owner.

    Limits: ``max_concurrency`` requests in flight at once; ``requests_per_minute`` and
    ``tokens_per_minute`` (input tokens, as estimated) as token buckets, closed further
    while the API's ``anthropic-ratelimit-*`` headers report a bucket empty.

    Retries: ``retries`` more attempts after the first for :data:`RETRYABLE` failures, with
    exponential backoff from ``backoff`` to ``max_backoff`` seconds (jitter 0.75-1x); a
    ``retry-after``/``retry-after-ms`` is honoured but never waited past the deadline.
    ``x-stainless-retry-count`` is sent on every attempt. A stream is retried only if no text
    reached ``on_text``. ``timeout`` bounds one non-streaming attempt; ``first_byte_timeout``
    and ``idle_timeout`` bound a stream's wait for its first event and between events.

    ``breaker`` (default: open after 5 overloads/5xx/timeouts in a row, for 30 s; None: no
    breaker) is per model. ``pricing`` is the table to price with (default: the shipped
    one); ``price`` overrides this model's entry (``Price.zero()`` opts an unlisted model in
    as free); an unlisted model is an :class:`LLMConfigError`. ``fallbacks`` are model names
    (or Models) tried in order when this one's breaker is open, its retries ran out, or the
    budget cannot cover it. ``estimate`` is ``"count_tokens"`` (the API's free endpoint,
    cached per prompt prefix) or ``"local"`` (bytes / 3, no request). ``runtime`` records and
    meters calls made outside any actor (calls inside an actor use the actor's runtime).
    """

    def __init__(
        self,
        name: str,
        *,
        client: anthropic.AsyncAnthropic | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        max_concurrency: int = 64,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        timeout: float = 600.0,
        first_byte_timeout: float = 60.0,
        idle_timeout: float = 60.0,
        breaker: Breaker | str | None = "default",
        pricing: PricingTable | None = None,
        price: Price | None = None,
        fallbacks: Iterable[str | Model] = (),
        estimate: str = "count_tokens",
        runtime: Any = None,
        seed: int | None = None,
    ) -> None:
        where = f"Model({name!r})"
        if not isinstance(name, str) or not name:
            raise LLMConfigError(f"Model: name must be a non-empty str, not {name!r}")
        self.name = name
        for option, value in (("max_concurrency", max_concurrency), ("retries", retries)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise LLMConfigError(f"{where}: {option} must be a non-negative int, not {value!r}")
        if max_concurrency < 1:
            raise LLMConfigError(f"{where}: max_concurrency must be at least 1")
        for option, number in (
            ("backoff", backoff),
            ("max_backoff", max_backoff),
            ("timeout", timeout),
            ("first_byte_timeout", first_byte_timeout),
            ("idle_timeout", idle_timeout),
        ):
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not number > 0:
                raise LLMConfigError(f"{where}: {option} must be a positive number, not {number!r}")
        for option, rate in (
            ("requests_per_minute", requests_per_minute),
            ("tokens_per_minute", tokens_per_minute),
        ):
            if rate is not None and (isinstance(rate, bool) or not rate > 0):
                raise LLMConfigError(f"{where}: {option} must be positive or None, not {rate!r}")
        if estimate not in ("count_tokens", "local"):
            raise LLMConfigError(f"{where}: estimate must be 'count_tokens' or 'local'")
        self.pricing = pricing if pricing is not None else PricingTable.default()
        self.price = price if price is not None else self.pricing.price(name)
        if client is None:
            key = api_key if api_key is not None else os.environ.get("ANTHROPIC_API_KEY")
            if not key:
                raise LLMConfigError(
                    f"{where}: no API key: set ANTHROPIC_API_KEY or pass api_key= or client="
                )
            client = anthropic.AsyncAnthropic(api_key=key, base_url=base_url, max_retries=0)
        self.client = client
        self._timed_client: tuple[anthropic.AsyncAnthropic, anthropic.AsyncAnthropic] | None = None
        self.max_concurrency = max_concurrency
        self.retries = retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.timeout = float(timeout)
        self.first_byte_timeout = float(first_byte_timeout)
        self.idle_timeout = float(idle_timeout)
        if breaker == "default":
            breaker = Breaker(failures=5, reset_after=30.0, name=f"llm:{name}")
        elif breaker is not None and not isinstance(breaker, Breaker):
            raise LLMConfigError(f"{where}: breaker must be a Breaker or None, not {breaker!r}")
        self.breaker: Breaker | None = breaker
        self.estimate = estimate
        self.runtime = runtime
        self.in_flight = 0
        self.limiter = RateLimiter(requests_per_minute, tokens_per_minute, time.monotonic)
        self._waiting: deque[anyio.Event] = deque()
        self._rng = random.Random(seed)
        self._counts: OrderedDict[bytes, tuple[int, bool]] = OrderedDict()
        self._own_log = CallLog()
        self._own_metrics = LLMMetrics()
        self._siblings: dict[str, Model] = {}
        self._options = {
            "max_concurrency": max_concurrency,
            "requests_per_minute": requests_per_minute,
            "tokens_per_minute": tokens_per_minute,
            "retries": retries,
            "backoff": backoff,
            "max_backoff": max_backoff,
            "timeout": timeout,
            "first_byte_timeout": first_byte_timeout,
            "idle_timeout": idle_timeout,
            "pricing": self.pricing,
            "estimate": estimate,
            "runtime": runtime,
            "seed": seed,
        }
        self.fallbacks: tuple[Model, ...] = tuple(self._resolve(f) for f in fallbacks)

    def __repr__(self) -> str:
        return f"<Model {self.name!r}>"

    def _resolve(self, fallback: str | Model) -> Model:
        if isinstance(fallback, Model):
            return fallback
        if not isinstance(fallback, str) or not fallback:
            raise LLMConfigError(f"Model({self.name!r}): a fallback must be a name or a Model")
        sibling = self._siblings.get(fallback)
        if sibling is None:
            options: dict[str, Any] = dict(self._options)
            sibling = self._siblings[fallback] = Model(fallback, client=self.client, **options)
        return sibling

    # -- the public calls --------------------------------------------------------------------

    async def create(self, **params: Any) -> Message:
        """Send a Messages API request (the API's own keyword parameters; ``model``
        defaults to this model; ``max_tokens`` is required) and return its ``Message``.

        Charges the current message's budget (a reservation before each attempt, settled
        with the usage after), bounded by its deadline, recorded in the runtime's call log,
        retried and failed over as the class says. ``fallbacks=`` (names or Models) replaces
        the Model's own for this call. Raises :class:`BudgetExceeded` (before sending),
        :class:`DeadlineExceeded`, :class:`CircuitOpen`, :class:`InvalidLLMRequest`,
        :class:`LLMRequestError` / :class:`SpendLimitReached` (never retried) or
        :class:`LLMRetriesExhausted`.
        """
        return await self._call(params, None, stream=False)

    async def stream(
        self, *, on_text: Callable[[str], object] | None = None, **params: Any
    ) -> Message:
        """:meth:`create`, streamed: ``on_text(delta)`` for each text delta, the actor's
        ``ctx.heartbeat()`` on every event, ``first_byte_timeout`` and ``idle_timeout`` as
        stall limits; returns the final ``Message``. A failure after text reached
        ``on_text`` is :class:`LLMStreamInterrupted` (not retried)."""
        return await self._call(params, on_text, stream=True)

    # -- the call ----------------------------------------------------------------------------

    async def _call(
        self, params: dict[str, Any], on_text: Callable[[str], object] | None, *, stream: bool
    ) -> Message:
        fallbacks = params.pop("fallbacks", None)
        chain = [self, *(self.fallbacks if fallbacks is None else map(self._resolve, fallbacks))]
        name = params.pop("model", None)
        if name is not None and name != self.name:
            chain[0] = self._resolve(name)
        max_tokens = check_request(params, f"{chain[0].name}: create")
        here = _Here(self.runtime)
        for i, model in enumerate(chain):
            try:
                reply: Message = await model._call_one(params, max_tokens, here, on_text, stream)
                return reply
            except (CircuitOpen, BudgetExceeded, LLMRetriesExhausted) as error:
                if i == len(chain) - 1:
                    raise
                reason = (
                    "circuit_open"
                    if isinstance(error, CircuitOpen)
                    else "budget_exceeded"
                    if isinstance(error, BudgetExceeded)
                    else error.error_type
                )
                model._fell_back(here, chain[i + 1].name, reason)
        raise AssertionError("unreachable")

    def _fell_back(self, here: _Here, to: str, reason: str) -> None:
        _, metrics = self._sinks(here)
        metrics.fallback(self.name, to, reason)
        runtime = here.runtime
        if runtime is not None and runtime.events.active:
            runtime.events.publish(
                LLMFallback(actor=here.agent, model=self.name, fallback=to, reason=reason)
            )

    def _sinks(self, here: _Here) -> tuple[CallLog, LLMMetrics]:
        runtime = here.runtime
        if runtime is None:
            return self._own_log, self._own_metrics
        hub = hub_of(runtime)
        return hub.log, hub.metrics

    async def _estimate(self, params: dict[str, Any], time_left: float) -> tuple[int, bool, bytes]:
        """(estimated input tokens, whether the prompt asks for caching, the prompt's key).

        Counts are cached per prompt *prefix*: a prompt that extends one already counted
        (the next turn of a conversation: the same system, tools and earlier messages) is
        estimated as that prefix's count plus a local over-estimate of the messages after
        it, with no request; only a prompt with no counted prefix is sent to
        ``count_tokens``. After each call the usage's exact input count is remembered for
        its whole prompt (:meth:`_remember`), so the next turn's prefix is exact."""
        prompt = {k: params[k] for k in _PROMPT_KEYS if k in params}
        keys = _prefix_keys(prompt)
        full = keys[-1]
        counts = self._counts
        top = bool(params.get("cache_control"))  # not part of the prompt's key
        cached = counts.get(full)
        if cached is not None:
            counts.move_to_end(full)
            return cached[0], top or cached[1], full
        messages = prompt.get("messages") or ()
        for i in range(len(keys) - 2, -1, -1):
            hit = counts.get(keys[i])
            if hit is not None:  # messages[: i + 1] were counted: estimate the rest locally
                counts.move_to_end(keys[i])
                rest = {"messages": list(messages)[i + 1 :]}
                caching = top or hit[1] or _uses_cache(rest)  # only the new messages to look at
                return hit[0] + _local_estimate(rest), caching, full
        caching = _uses_cache(params)
        tokens = _local_estimate(params)
        if self.estimate == "count_tokens":
            try:
                with anyio.fail_after(min(time_left, self.timeout, 30.0)):
                    counted = await self.client.messages.count_tokens(model=self.name, **prompt)
                tokens = int(counted.input_tokens)
            except (anthropic.APIError, httpx2.HTTPError, TimeoutError):
                return tokens, caching, full  # the local estimate still gates the call
            self._remember(full, tokens, caching)
        return tokens, caching, full

    def _remember(self, key: bytes, tokens: int, caching: bool) -> None:
        """Cache the exact input count of the prompt whose key is ``key`` (bounded LRU)."""
        counts = self._counts
        counts[key] = (tokens, caching)
        counts.move_to_end(key)
        if len(counts) > 4096:
            counts.popitem(last=False)

    async def _call_one(
        self,
        params: dict[str, Any],
        max_tokens: int,
        here: _Here,
        on_text: Callable[[str], object] | None,
        stream: bool,
    ) -> Message:
        log, metrics = self._sinks(here)
        metrics.models.setdefault(self.name, self)
        started = time.perf_counter()
        attempts = 0
        tokens = Tokens()
        usd = 0.0
        outcome, error_type, stop_reason, request_id = "error", "", "", ""
        ttft: float | None = None
        budget = here.budget
        try:
            left = here.time_left()
            if left <= 0:
                outcome, error_type = "timeout", "deadline"
                raise DeadlineExceeded(f"{self.name}: the deadline passed before the call")
            if budget is not None or self.limiter.tpm:
                estimate, caching, prompt_key = await self._estimate(params, left)
            else:  # no budget to reserve from, no token limit: nothing an estimate gates
                estimate, caching, prompt_key = 0, False, b""
            in_price = self.price.max_input if caching else self.price.input
            hold_usd = (estimate * in_price + max_tokens * self.price.output) / 1_000_000.0
            request = {**params, "model": self.name}
            while True:
                if self.breaker is not None:
                    refusal = self.breaker.refusal()  # admitted: holds a trial slot if half-open
                    if refusal is not None:
                        outcome, error_type = "refused", "circuit_open"
                        raise refusal
                reservation: Reservation | None = None
                if budget is not None:
                    try:
                        reservation = budget.reserve(tokens=estimate + max_tokens, usd=hold_usd)
                    except BudgetExceeded as error:
                        if self.breaker is not None:
                            self.breaker.release()
                        outcome, error_type = "refused", "budget_exceeded"
                        if error.kind == "time":
                            outcome = "timeout"
                        raise
                emitted = [False]
                try:
                    wait = self.limiter.reserve(estimate)
                    if wait > 0:
                        if wait > here.time_left():
                            raise DeadlineExceeded(
                                f"{self.name}: the rate limiter needs {wait:.3g} s, past the "
                                "deadline"
                            )
                        metrics.waited(self.name, wait)
                        await anyio.sleep(wait)
                    message, used, request_id, first = await self._attempt(
                        request, attempts, here, on_text, emitted, stream
                    )
                except _Failure as failure:
                    attempts += 1
                    used = failure.usage
                    request_id = failure.request_id or request_id
                    error_type = failure.error_type
                    self._record_health(failure)
                    if failure.retry_after and failure.error_type == "rate_limit_error":
                        self.limiter.back_off(failure.retry_after)
                    tokens += used
                    usd += self._settle(reservation, used, budget)
                    if emitted[0]:
                        raise LLMStreamInterrupted(
                            f"{self.name}: the stream failed ({failure.error_type}) after text "
                            "reached the caller; not retried",
                            model=self.name,
                            error_type=failure.error_type,
                            status=failure.status,
                            request_id=failure.request_id,
                        ) from failure.cause
                    if not failure.retryable:
                        raise self._final(failure, attempts) from failure.cause
                    if attempts > self.retries:
                        raise LLMRetriesExhausted(
                            f"{self.name}: {failure.error_type} on {attempts} attempts "
                            f"(retries={self.retries})",
                            attempts=attempts,
                            model=self.name,
                            error_type=failure.error_type,
                            status=failure.status,
                            request_id=failure.request_id,
                        ) from failure.cause
                    wait = self._backoff(attempts)
                    if failure.retry_after is not None:
                        wait = max(wait, failure.retry_after)
                    if wait >= here.time_left():
                        outcome = "timeout"
                        raise DeadlineExceeded(
                            f"{self.name}: retrying after {failure.error_type} needs a "
                            f"{wait:.3g} s wait, past the deadline"
                        ) from failure.cause
                    metrics.retry(self.name, failure.error_type)
                    await anyio.sleep(wait)
                    continue
                except BaseException:
                    # cancelled, or the deadline passed mid-attempt: the usage is unknown,
                    # so nothing is charged, and the hold is freed
                    attempts += 1
                    if reservation is not None:
                        reservation.release()
                    if self.breaker is not None:
                        self.breaker.release()
                    raise
                attempts += 1
                cost = self._settle(reservation, used, budget)
                if prompt_key and self.estimate == "count_tokens":  # the next turn's prefix
                    total = used.input + used.cache_read + used.cache_write_5m + used.cache_write_1h
                    if total:
                        self._remember(prompt_key, total, caching)
                if self.breaker is not None:
                    self.breaker.record_success()
                if first is not None:
                    ttft = first
                tokens += used
                usd += cost
                outcome, error_type = "ok", ""
                stop_reason = str(message.stop_reason or "")
                return message
        except BaseException as error:
            if isinstance(error, DeadlineExceeded):
                outcome = "timeout" if outcome == "error" else outcome
                error_type = error_type or "deadline"
            elif isinstance(error, anyio.get_cancelled_exc_class()):
                # cancelled from outside (the caller's scope, an actor's timeout)
                outcome, error_type = "timeout", "cancelled"
            raise
        finally:
            latency = time.perf_counter() - started
            record = CallRecord(
                time=time.time(),
                model=self.name,
                agent=here.agent,
                agent_type=here.agent_type,
                conversation=_conversation.get() or (budget.name if budget is not None else ""),
                correlation_id=here.correlation_id,
                input_tokens=tokens.input,
                output_tokens=tokens.output,
                cache_read_tokens=tokens.cache_read,
                cache_write_5m_tokens=tokens.cache_write_5m,
                cache_write_1h_tokens=tokens.cache_write_1h,
                usd=usd,
                price_version=self.pricing.version,
                latency=latency,
                ttft=ttft,
                stop_reason=stop_reason,
                outcome=outcome,
                error_type=error_type,
                attempts=attempts,
                request_id=request_id,
            )
            log.add(record)
            metrics.call(
                self.name,
                here.agent_type or "none",
                outcome,
                error_type,
                latency,
                ttft,
                tokens.buckets(),
                usd,
            )

    def _settle(
        self, reservation: Reservation | None, used: Tokens, budget: Budget | None
    ) -> float:
        """Settle ``used`` (or charge it, without a reservation); its cost."""
        cost = self.price.cost(used)
        if reservation is not None:
            reservation.settle(tokens=used.total, usd=cost)
        elif budget is not None and (used.total or cost):
            budget.charge(tokens=used.total, usd=cost)
        return cost

    def _record_health(self, failure: _Failure) -> None:
        breaker = self.breaker
        if breaker is None:
            return
        if failure.error_type in _BREAKER_COUNTS or failure.status >= 500:
            breaker.record_failure(failure.cause)
        else:
            breaker.release()

    def _backoff(self, attempts: int) -> float:
        base = min(self.backoff * 2.0 ** (attempts - 1), self.max_backoff)
        return base * (0.75 + 0.25 * self._rng.random())

    def _final(self, failure: _Failure, attempts: int) -> LLMError:
        fields: dict[str, Any] = {
            "model": self.name,
            "error_type": failure.error_type,
            "status": failure.status,
            "request_id": failure.request_id,
        }
        detail = str(failure.cause)
        if failure.spend_limit:
            return SpendLimitReached(f"{self.name}: spend limit reached: {detail}", **fields)
        if failure.error_type in RETRYABLE:  # the server said not to retry
            return LLMRetriesExhausted(
                f"{self.name}: {failure.error_type}, and the API said not to retry: {detail}",
                attempts=attempts,
                **fields,
            )
        return LLMRequestError(f"{self.name}: {failure.error_type}: {detail}", **fields)

    async def _attempt(
        self,
        request: dict[str, Any],
        attempt: int,
        here: _Here,
        on_text: Callable[[str], object] | None,
        emitted: list[bool],
        stream: bool,
    ) -> tuple[Message, Tokens, str, float | None]:
        """One request; returns (message, usage, request id, time to first event). Raises
        :class:`_Failure` for anything the retry loop classifies."""
        # the SDK sends x-stainless-retry-count: 0 itself (its retries are off): only a
        # retry of ours needs it set (extra headers cost a merge of every header)
        headers = {"x-stainless-retry-count": str(attempt)} if attempt else None
        left = here.time_left()
        if not stream and left == math.inf:
            # no deadline: the HTTP client's own timeouts bound the attempt, and a cancel
            # scope (a fifth of a fast call's overhead) is not needed
            await self._take_slot()
            try:
                return await self._send(request, headers, self.timeout)
            finally:
                self._free_slot()
        hard = anyio_clock() + left  # the deadline in anyio's clock (inf: none)
        with anyio.CancelScope(deadline=hard) as scope:  # the wait for a slot counts too
            await self._take_slot()
            try:
                if stream:
                    return await self._stream(request, headers, here, on_text, emitted, hard)
                scope.deadline = min(hard, anyio_clock() + self.timeout)
                return await self._send(request, headers, min(left, self.timeout))
            finally:
                self._free_slot()
        assert scope.cancelled_caught
        if anyio_clock() < hard:
            raise _Failure("timeout_error", TimeoutError(f"no response in {self.timeout:g} s"))
        raise DeadlineExceeded(f"{self.name}: the deadline passed during the call")

    async def _send(
        self, request: dict[str, Any], headers: dict[str, str] | None, timeout: float
    ) -> tuple[Message, Tokens, str, float | None]:
        """One non-streaming request; its response headers feed the rate limiter."""
        timed = self._timed_client
        if timed is None or timed[0] is not self.client:
            # a copy of the client with this Model's timeout: no per-request Timeout to build
            timed = self._timed_client = (
                self.client,
                self.client.with_options(timeout=self.timeout),
            )
        options: dict[str, Any] = {} if timeout == self.timeout else {"timeout": timeout}
        try:
            raw = await timed[1].messages.with_raw_response.create(
                **request, extra_headers=headers, **options
            )
            message = _decode(await raw.read())
            if message is None:
                message = await raw.parse()
        except (anthropic.APIError, httpx2.HTTPError) as error:
            raise classify(error) from error
        headers = _read_headers(raw.headers)
        self.limiter.observe(headers)
        request_id = headers.get("request-id") or ""
        # as the SDK's own parse sets them (a validated Message has neither yet)
        message._request_id = request_id or None
        message._workspace_id = headers.get("anthropic-workspace-id")
        return message, usage_buckets(message.usage), request_id, None

    async def _take_slot(self) -> None:
        """One of ``max_concurrency`` slots; without a checkpoint when one is free (an
        anyio semaphore yields twice per acquire, a measurable share of a fast call)."""
        if self.in_flight < self.max_concurrency and not self._waiting:
            self.in_flight += 1
            return
        turn = anyio.Event()
        self._waiting.append(turn)
        try:
            await turn.wait()  # the releaser handed its slot over
        except BaseException:
            if turn.is_set():
                self._free_slot()
            else:
                self._waiting.remove(turn)
            raise

    def _free_slot(self) -> None:
        if self._waiting:
            self._waiting.popleft().set()  # in_flight unchanged: the slot changes hands
        else:
            self.in_flight -= 1

    async def _stream(
        self,
        request: dict[str, Any],
        headers: dict[str, str] | None,
        here: _Here,
        on_text: Callable[[str], object] | None,
        emitted: list[bool],
        hard: float,
    ) -> tuple[Message, Tokens, str, float | None]:
        sent = anyio_clock()
        first: float | None = None
        request_id = ""
        stream_cm = self.client.messages.stream(**request, extra_headers=headers)
        scope = anyio.CancelScope(deadline=min(hard, sent + self.first_byte_timeout))
        snapshot: Any = None
        try:
            with scope:
                async with stream_cm as events:
                    seen = _read_headers(events.response.headers)
                    request_id = seen.get("request-id", "")
                    self.limiter.observe(seen)
                    async for item in events:
                        event: Any = item  # dispatched on .type: unknown types pass through
                        now = anyio_clock()
                        if first is None:
                            first = now - sent
                        scope.deadline = min(hard, now + self.idle_timeout)
                        here.heartbeat()
                        kind = event.type
                        if kind == "message_start":
                            snapshot = event.message.usage
                        elif kind == "message_delta":
                            snapshot = event.usage
                        elif kind == "text" and on_text is not None:
                            emitted[0] = True
                            on_text(event.text)
                    message = await events.get_final_message()
        except (anthropic.APIError, httpx2.HTTPError) as error:
            failure = classify(error)
            failure.request_id = failure.request_id or request_id
            failure.usage = _partial(snapshot)
            raise failure from error
        if scope.cancelled_caught:
            if anyio_clock() >= hard:
                raise DeadlineExceeded(f"{self.name}: the deadline passed mid-stream")
            stage = "first event" if first is None else "next event"
            failure = _Failure(
                "stream_stalled",
                TimeoutError(f"{self.name}: the stream stalled waiting for its {stage}"),
                request_id=request_id,
            )
            failure.usage = _partial(snapshot)
            raise failure
        return message, usage_buckets(message.usage), request_id, first


def _partial(usage: Any) -> Tokens:
    """The usage a broken stream reported before it broke (input from ``message_start``,
    output so far from ``message_delta``)."""
    return usage_buckets(usage) if usage is not None else Tokens()


def anyio_clock() -> float:
    return anyio.current_time()

"""The fake Messages API: scripted replies, the exact SSE grammar, faults, a record of requests."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    import anthropic
    import httpx2

    from understudy.llm import Model


@dataclass(frozen=True)
class Reply:
    """One scripted response (made by the :class:`FakeMessagesAPI` helpers).

    ``kind`` is ``"message"`` (content blocks and a stop reason) or ``"error"`` (an HTTP error
    status and ``error.type``). Faults compose with either: ``first_byte_stall`` (seconds of
    silence before the response headers), ``idle_stall`` (``(after_events, seconds)``: silence
    between two stream events), ``reset_after`` (the connection drops after that many stream
    events), ``error_event_after`` (a 200 stream ends with an SSE ``error`` event after that
    many events). ``input_tokens`` / ``output_tokens`` (when set) replace the usage the fake
    would compute, for tests that assert exact token counts. ``headers`` are sent with the
    response, error or not, after the fake's own (``request-id``, rate limits).
    """

    kind: str = "message"
    blocks: tuple[dict[str, Any], ...] = ()
    stop_reason: str = "end_turn"
    stop_sequence: str | None = None
    stop_details: dict[str, Any] | None = None
    status: int = 200
    error_type: str = ""
    error_message: str = ""
    error_code: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    first_byte_stall: float = 0.0
    idle_stall: tuple[int, float] | None = None
    reset_after: int | None = None
    error_event_after: int | None = None
    error_event_type: str = "overloaded_error"
    truncate_json: bool = False
    unknown_event: bool = False
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass
class Received:
    """A request the fake received: ``path``, ``headers`` (lower-case names), ``body`` (the
    decoded JSON), ``retry_count`` (its ``x-stainless-retry-count``), the ``request_id`` and
    ``status`` it was answered with, and ``reply`` (the scripted reply used, or None)."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    retry_count: int
    request_id: str = ""
    status: int = 0
    reply: Reply | None = None


@dataclass
class Plan:
    """How to answer one request: the status, headers, and the body as chunks; a float in
    ``chunks`` is a pause, ``RESET`` drops the connection."""

    status: int
    headers: list[tuple[str, str]]
    chunks: list[bytes | float | object] = field(default_factory=list)
    delay: float = 0.0
    stream: bool = False


Scripted = Callable[[Received], Reply | None]
"""A ``respond`` function: the reply to a request (None: the fake's usual answer)."""

RESET = object()
"""In a plan's chunks: drop the connection here."""

_STATUS_OF = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_TYPE_OF = {status: error_type for error_type, status in _STATUS_OF.items()}

FAULTS = (
    "overloaded",
    "rate_limited",
    "api_error",
    "timeout_error",
    "stream_error",
    "first_byte_stall",
    "idle_stall",
    "reset",
)
"""The faults a seeded fault rate draws from (``FakeMessagesAPI(fault_rate=...)``)."""


def count_text_tokens(text: str) -> int:
    """The fake's tokenizer: one token per 4 characters, rounded up (deterministic)."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class FakeMessagesAPI:
    """A faithful fake of Anthropic's Messages API, for tests and demos; see
    :mod:`understudy.testing`.

    ``seed`` makes everything random (ids, how JSON is split into deltas, which requests a
    ``fault_rate`` fails) a function of the seed and the request. ``latency`` is seconds
    before each response. ``fault_rate`` (0..1) fails that share of the requests that have no
    scripted reply, with a fault drawn from ``faults`` (default :data:`FAULTS`); the draw
    depends on the request body and its retry count, not on arrival order, so concurrent
    tests stay deterministic. ``stall`` is how long the stall faults stay silent.
    ``default`` is the reply to an unscripted request (a short text). ``respond`` (a
    function of the :class:`Received` request returning a :class:`Reply`, or None for the
    usual answer) answers the unscripted requests whose reply depends on what they ask, e.g.
    on the conversation in ``metadata`` or the turns so far; it runs before ``fault_rate``.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        latency: float = 0.0,
        fault_rate: float = 0.0,
        faults: Iterable[str] = FAULTS,
        stall: float = 3600.0,
        default: Reply | None = None,
        requests_limit: int = 4000,
        tokens_limit: int = 2_000_000,
        respond: Scripted | None = None,
    ) -> None:
        if not 0 <= fault_rate <= 1:
            raise ValueError(f"FakeMessagesAPI: fault_rate must be in [0, 1], not {fault_rate}")
        faults = tuple(faults)
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"FakeMessagesAPI: unknown faults {sorted(unknown)}; known: {FAULTS}")
        self.seed = seed
        self.latency = latency
        self.fault_rate = fault_rate
        self.faults = faults
        self.stall = stall
        self.default = default if default is not None else self.text("Hello from the fake.")
        self.respond = respond
        self.requests: list[Received] = []
        """Every request received, in arrival order."""
        self.requests_limit = requests_limit
        self.tokens_limit = tokens_limit
        self._script: deque[Reply] = deque()
        self._ids = itertools.count(1)
        self._cache: dict[str, float] = {}  # prompt prefix digest -> expiry (unix time)

    # -- scripting ---------------------------------------------------------------------------

    def script(self, *replies: Reply) -> FakeMessagesAPI:
        """Answer the next requests with ``replies``, in order (then the default again)."""
        self._script.extend(replies)
        return self

    @property
    def pending(self) -> int:
        """Scripted replies not used yet."""
        return len(self._script)

    @staticmethod
    def text(text: str, *, stop_reason: str = "end_turn", **faults: Any) -> Reply:
        """A text reply (``stop_reason`` may be ``max_tokens``, ``stop_sequence``,
        ``model_context_window_exceeded``...)."""
        return Reply(blocks=({"type": "text", "text": text},), stop_reason=stop_reason, **faults)

    @staticmethod
    def tool_use(
        name: str, input: dict[str, Any], *, text: str = "", tool_id: str = "", **faults: Any
    ) -> Reply:
        """A ``tool_use`` reply (streamed as ``input_json_delta`` pieces split mid-token),
        after an optional text block."""
        blocks: list[dict[str, Any]] = []
        if text:
            blocks.append({"type": "text", "text": text})
        blocks.append({"type": "tool_use", "id": tool_id, "name": name, "input": input})
        return Reply(blocks=tuple(blocks), stop_reason="tool_use", **faults)

    @staticmethod
    def use(name: str, input: dict[str, Any], *, tool_id: str = "") -> dict[str, Any]:
        """One ``tool_use`` block, for :meth:`tool_uses` and :meth:`message` (no ``tool_id``:
        the fake makes one)."""
        return {"type": "tool_use", "id": tool_id, "name": name, "input": input}

    @staticmethod
    def tool_uses(*uses: dict[str, Any], text: str = "", **faults: Any) -> Reply:
        """A ``tool_use`` reply with several (parallel) calls, each made by :meth:`use`,
        after an optional text block."""
        blocks = ([{"type": "text", "text": text}] if text else []) + [dict(u) for u in uses]
        return Reply(blocks=tuple(blocks), stop_reason="tool_use", **faults)

    @staticmethod
    def message(
        blocks: Iterable[dict[str, Any]], *, stop_reason: str = "end_turn", **faults: Any
    ) -> Reply:
        """A reply of any content blocks (``{"type": "text", ...}``, :meth:`use`...) and any
        stop reason (e.g. ``max_tokens`` after a complete ``tool_use`` block)."""
        return Reply(blocks=tuple(dict(b) for b in blocks), stop_reason=stop_reason, **faults)

    @staticmethod
    def max_tokens_in_tool_use(name: str, input: dict[str, Any]) -> Reply:
        """``max_tokens`` reached in the middle of a ``tool_use``: the stream's JSON is cut."""
        block = {"type": "tool_use", "id": "", "name": name, "input": input}
        return Reply(blocks=(block,), stop_reason="max_tokens", truncate_json=True)

    @staticmethod
    def refusal(text: str = "", category: str = "general_harms") -> Reply:
        """A ``refusal`` with ``stop_details``."""
        details = {"type": "refusal", "category": category, "explanation": "declined"}
        blocks = ({"type": "text", "text": text},) if text else ()
        return Reply(blocks=blocks, stop_reason="refusal", stop_details=details)

    @staticmethod
    def pause_turn(text: str = "Searching...") -> Reply:
        """A ``pause_turn`` (a long server-tool turn paused)."""
        return Reply(blocks=({"type": "text", "text": text},), stop_reason="pause_turn")

    @staticmethod
    def thinking(thinking: str, text: str) -> Reply:
        """A thinking block (with its signature) and a text block."""
        blocks = (
            {"type": "thinking", "thinking": thinking, "signature": "sig_" + "a" * 16},
            {"type": "text", "text": text},
        )
        return Reply(blocks=blocks)

    @staticmethod
    def error(
        status: int,
        error_type: str | None = None,
        *,
        retry_after: float | None = None,
        retry_after_ms: int | None = None,
        should_retry: bool | None = None,
        message: str = "",
        error_code: str = "",
    ) -> Reply:
        """An HTTP error: 429 ``rate_limit_error``, 529 ``overloaded_error``, 500 ``api_error``,
        504 ``timeout_error``, 400 ``invalid_request_error``... with ``retry-after`` (seconds),
        ``retry-after-ms`` and ``x-should-retry`` headers when given."""
        headers: list[tuple[str, str]] = []
        if retry_after is not None:
            headers.append(("retry-after", format(retry_after, "g")))
        if retry_after_ms is not None:
            headers.append(("retry-after-ms", str(retry_after_ms)))
        if should_retry is not None:
            headers.append(("x-should-retry", "true" if should_retry else "false"))
        kind = error_type or _TYPE_OF.get(status, "api_error")
        return Reply(
            kind="error",
            status=status,
            error_type=kind,
            error_message=message or ("Overloaded" if kind == "overloaded_error" else kind),
            error_code=error_code,
            headers=tuple(headers),
        )

    @classmethod
    def rate_limited(cls, retry_after: float | None = 1.0) -> Reply:
        """A 429 ``rate_limit_error`` with ``retry-after`` (None: without it)."""
        return cls.error(429, retry_after=retry_after)

    @classmethod
    def spend_limit(cls) -> Reply:
        """A monthly spend-limit 429 (``enforced_spend_limit_reached``, no ``retry-after``)."""
        return cls.error(
            429,
            "rate_limit_error",
            message="You have reached your specified API usage limits.",
            error_code="enforced_spend_limit_reached",
        )

    @classmethod
    def overloaded(cls) -> Reply:
        """A 529 ``overloaded_error``."""
        return cls.error(529)

    @staticmethod
    def stream_error(after: int = 3, error_type: str = "overloaded_error") -> Reply:
        """A 200 stream that ends in an SSE ``error`` event after ``after`` events (a
        non-streaming request gets the error as its HTTP status)."""
        return Reply(
            blocks=({"type": "text", "text": "Partial answer that will not finish."},),
            error_event_after=after,
            error_event_type=error_type,
        )

    def first_byte_stall(self, seconds: float | None = None) -> Reply:
        """Silence before the response headers (``seconds``, default the fake's ``stall``)."""
        return replace(self.default, first_byte_stall=self.stall if seconds is None else seconds)

    def idle_stall(self, after: int = 3, seconds: float | None = None) -> Reply:
        """A stream that goes silent after ``after`` events."""
        return replace(self.default, idle_stall=(after, self.stall if seconds is None else seconds))

    def reset(self, after: int = 3) -> Reply:
        """A stream whose connection drops after ``after`` events (a non-streaming request:
        before its response)."""
        return replace(self.default, reset_after=after)

    # -- clients -----------------------------------------------------------------------------

    def transport(self) -> httpx2.MockTransport:
        """An ``httpx2.MockTransport`` answering like the API (for ``AsyncAnthropic``'s
        ``http_client``)."""
        from understudy.testing._transport import mock_transport

        return mock_transport(self)

    def client(self, *, base_url: str | None = None, **options: Any) -> anthropic.AsyncAnthropic:
        """An ``AsyncAnthropic`` talking to this fake (over its mock transport, or to
        ``base_url`` when given, e.g. ``fake.serve()``'s URL), with the SDK's retries off."""
        import anthropic

        options.setdefault("api_key", "sk-ant-fake")
        options.setdefault("max_retries", 0)
        if base_url is None:
            options["http_client"] = anthropic.DefaultAsyncHttpxClient(transport=self.transport())
        return anthropic.AsyncAnthropic(base_url=base_url, **options)

    def model(self, name: str = "claude-sonnet-4-5", **options: Any) -> Model:
        """An :class:`understudy.llm.Model` named ``name`` wired to this fake (fast test
        defaults: backoff 1 ms); ``options`` are the Model's own."""
        from understudy.llm import Model

        options.setdefault("backoff", 0.001)
        options.setdefault("max_backoff", 0.01)
        return Model(name, client=self.client(), **options)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Any:
        """``async with fake.serve() as url:`` serves this fake over HTTP on a loopback port
        (port 0: a free one) until the block exits; connections still open are dropped."""
        from understudy.testing._server import serve

        return serve(self, host, port)

    # -- answering -----------------------------------------------------------------------------

    def _rng(self, body: bytes, retry: int) -> random.Random:
        digest = hashlib.blake2b(body, digest_size=8, key=str(self.seed).encode()).digest()
        return random.Random(int.from_bytes(digest, "big") ^ retry)

    def _request_id(self, rng: random.Random) -> str:
        return f"req_{next(self._ids):06d}{rng.getrandbits(48):012x}"

    def answer(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Plan:
        """Plan the response to one request (both transports call this)."""
        try:
            retry = int(headers.get("x-stainless-retry-count", "0"))
        except ValueError:
            retry = 0
        rng = self._rng(raw, retry)
        request_id = self._request_id(rng)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        received = Received(path=path, headers=headers, body=body, retry_count=retry)
        self.requests.append(received)
        received.request_id = request_id
        plan = self._plan(method, path, headers, body, rng, request_id, received)
        received.status = plan.status
        plan.delay += self.latency
        return plan

    def _plan(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: dict[str, Any],
        rng: random.Random,
        request_id: str,
        received: Received,
    ) -> Plan:
        base = [("request-id", request_id), *self._limit_headers()]
        if method != "POST" or path not in ("/v1/messages", "/v1/messages/count_tokens"):
            return _error_plan(404, "not_found_error", f"{method} {path} not found", base)
        if not (headers.get("x-api-key") or headers.get("authorization")):
            return _error_plan(401, "authentication_error", "missing API key", base)
        problem = _check_request(body, count_only=path.endswith("count_tokens"))
        if problem:
            return _error_plan(400, "invalid_request_error", problem, base)
        if path.endswith("count_tokens"):
            total = self.count(body)
            return Plan(
                200,
                [*base, ("content-type", "application/json")],
                [_json_bytes({"input_tokens": total})],
            )
        reply = self._script.popleft() if self._script else None
        if reply is None and self.respond is not None:
            reply = self.respond(received)
        if reply is None:
            reply = self._draw(rng)
        received.reply = reply
        stream = bool(body.get("stream"))
        if reply.kind == "error":
            return _error_plan(
                reply.status,
                reply.error_type,
                reply.error_message,
                [*base, *reply.headers],
                reply.error_code,
                request_id,
            )
        if not stream and reply.error_event_after is not None:
            kind = reply.error_event_type
            return _error_plan(_STATUS_OF.get(kind, 500), kind, kind, base)
        usage = self._usage(body)
        message = self._message(reply, body, usage, rng)
        if not stream:
            plan = Plan(200, [*base, *reply.headers, ("content-type", "application/json")])
            if reply.reset_after is not None:
                plan.chunks.append(RESET)
            else:
                plan.chunks.append(_json_bytes(message))
            plan.delay = reply.first_byte_stall
            return plan
        plan = Plan(
            200, [*base, *reply.headers, ("content-type", "text/event-stream")], stream=True
        )
        plan.delay = reply.first_byte_stall
        events = self._events(reply, message, rng)
        for i, event in enumerate(events):
            if reply.idle_stall is not None and i == reply.idle_stall[0]:
                plan.chunks.append(float(reply.idle_stall[1]))
            if reply.reset_after is not None and i == reply.reset_after:
                plan.chunks.append(RESET)
                return plan
            if reply.error_event_after is not None and i == reply.error_event_after:
                error = {
                    "type": "error",
                    "error": {"type": reply.error_event_type, "message": "Overloaded"},
                    "request_id": request_id,
                }
                plan.chunks.append(_sse("error", error))
                return plan
            plan.chunks.append(_sse(event["type"], event))
        return plan

    def _draw(self, rng: random.Random) -> Reply:
        if not self.fault_rate or rng.random() >= self.fault_rate:
            return self.default
        fault = self.faults[rng.randrange(len(self.faults))]
        if fault == "overloaded":
            return self.overloaded()
        if fault == "rate_limited":
            return self.rate_limited(retry_after=0.001)
        if fault == "api_error":
            return self.error(500)
        if fault == "timeout_error":
            return self.error(504)
        if fault == "stream_error":
            return self.stream_error(after=2)
        if fault == "first_byte_stall":
            return self.first_byte_stall()
        if fault == "idle_stall":
            return self.idle_stall(after=2)
        return self.reset(after=2)

    def _limit_headers(self) -> list[tuple[str, str]]:
        now = time.time()
        reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - now % 60 + 60))
        used = len(self.requests)
        return [
            ("anthropic-ratelimit-requests-limit", str(self.requests_limit)),
            ("anthropic-ratelimit-requests-remaining", str(max(self.requests_limit - used, 0))),
            ("anthropic-ratelimit-requests-reset", reset),
            ("anthropic-ratelimit-tokens-limit", str(self.tokens_limit)),
            ("anthropic-ratelimit-tokens-remaining", str(self.tokens_limit)),
            ("anthropic-ratelimit-tokens-reset", reset),
        ]

    # -- tokens and caching --------------------------------------------------------------------

    def _pieces(self, body: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None]]:
        """The prompt as (canonical text, cache_control or None) pieces, in prompt order:
        tools, system, then each message's blocks."""
        pieces: list[tuple[str, dict[str, Any] | None]] = []
        for tool in body.get("tools") or ():
            pieces.append((_canonical(tool), tool.get("cache_control")))
        system = body.get("system")
        if isinstance(system, str):
            pieces.append((system, None))
        elif isinstance(system, list):
            for block in system:
                pieces.append((_canonical(block), block.get("cache_control")))
        for message in body.get("messages") or ():
            content = message.get("content")
            if isinstance(content, str):
                pieces.append((message.get("role", "") + ":" + content, None))
            elif isinstance(content, list):
                for block in content:
                    if isinstance(block, dict):
                        pieces.append((_canonical(block), block.get("cache_control")))
        return pieces

    def count(self, body: dict[str, Any]) -> int:
        """The input tokens of a request (what ``count_tokens`` answers and usage totals)."""
        return sum(count_text_tokens(text) for text, _ in self._pieces(body)) + 3

    def _usage(self, body: dict[str, Any]) -> dict[str, Any]:
        pieces = self._pieces(body)
        total = sum(count_text_tokens(text) for text, _ in pieces) + 3
        breakpoint_at, ttl = -1, "5m"
        for i, (_, control) in enumerate(pieces):
            if control:
                breakpoint_at, ttl = i, str(control.get("ttl", "5m"))
        top = body.get("cache_control")
        if top and pieces:  # automatic caching: the breakpoint is the last block
            breakpoint_at, ttl = len(pieces) - 1, str(top.get("ttl", "5m"))
        read = w5 = w1h = 0
        if breakpoint_at >= 0:
            prefix = pieces[: breakpoint_at + 1]
            cached = sum(count_text_tokens(text) for text, _ in prefix)
            digest = hashlib.sha256(
                (str(body.get("model")) + "\x00".join(text for text, _ in prefix)).encode()
            ).hexdigest()
            now = time.time()
            if self._cache.get(digest, 0.0) > now:
                read = cached
            elif ttl == "1h":
                w1h = cached
            else:
                w5 = cached
            self._cache[digest] = now + (3600.0 if ttl == "1h" else 300.0)
        return {
            "input_tokens": total - read - w5 - w1h,
            "cache_creation_input_tokens": w5 + w1h,
            "cache_read_input_tokens": read,
            "cache_creation": {"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": w1h},
            "output_tokens": 0,
            "service_tier": "standard",
        }

    def _message(
        self, reply: Reply, body: dict[str, Any], usage: dict[str, Any], rng: random.Random
    ) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        output = 0
        for block in reply.blocks:
            block = dict(block)
            if block["type"] == "tool_use":
                if not block.get("id"):
                    block["id"] = f"toolu_{rng.getrandbits(64):016x}"
                output += count_text_tokens(_canonical(block["input"])) + 8
                if reply.truncate_json:
                    block["input"] = {}
            elif block["type"] == "text":
                output += count_text_tokens(block["text"])
            elif block["type"] == "thinking":
                output += count_text_tokens(block["thinking"])
            content.append(block)
        max_tokens = body.get("max_tokens")
        output = max(output, 1)
        if isinstance(max_tokens, int) and max_tokens > 0:
            output = min(output, max_tokens)
        if reply.output_tokens is not None:
            output = reply.output_tokens
        usage = {**usage, "output_tokens": output}
        if reply.input_tokens is not None:
            usage.update(
                input_tokens=reply.input_tokens,
                cache_creation_input_tokens=0,
                cache_read_input_tokens=0,
                cache_creation={"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            )
        return {
            "id": f"msg_{rng.getrandbits(64):016x}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", ""),
            "content": content,
            "stop_reason": reply.stop_reason,
            "stop_sequence": reply.stop_sequence,
            "stop_details": reply.stop_details,
            "usage": usage,
        }

    def _events(
        self, reply: Reply, message: dict[str, Any], rng: random.Random
    ) -> list[dict[str, Any]]:
        usage = message["usage"]
        start_usage = {**usage, "output_tokens": 1}
        start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
        start["usage"] = start_usage
        start.pop("stop_details", None)
        events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
        events.append({"type": "ping"})
        if reply.unknown_event:
            events.append({"type": "future_event_type", "detail": "ignored by clients"})
        for index, block in enumerate(message["content"]):
            kind = block["type"]
            if kind == "text":
                events.append(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    }
                )
                for piece in _split(block["text"], rng, 2, 8):
                    events.append(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": piece},
                        }
                    )
            elif kind == "thinking":
                events.append(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                    }
                )
                for piece in _split(block["thinking"], rng, 4, 12):
                    events.append(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "thinking_delta", "thinking": piece},
                        }
                    )
                events.append(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "signature_delta", "signature": block["signature"]},
                    }
                )
            elif kind == "tool_use":
                original = reply.blocks[index]["input"]  # as scripted (not truncated)
                text = json.dumps(original)
                if reply.truncate_json:
                    text = text[: max(len(text) // 2, 1)]
                events.append(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": block["id"],
                            "name": block["name"],
                            "input": {},
                        },
                    }
                )
                # the first delta may be empty; the others split the JSON mid-token
                for piece in ["", *_split(text, rng, 1, 6)]:
                    events.append(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        }
                    )
                if reply.truncate_json:
                    break  # max_tokens: the block never stops
            events.append({"type": "content_block_stop", "index": index})
        delta = {
            "stop_reason": message["stop_reason"],
            "stop_sequence": message["stop_sequence"],
        }
        if message.get("stop_details") is not None:
            delta["stop_details"] = message["stop_details"]
        events.append({"type": "message_delta", "delta": delta, "usage": dict(usage)})
        events.append({"type": "message_stop"})
        return events


def _split(text: str, rng: random.Random, low: int, high: int) -> list[str]:
    pieces = []
    i = 0
    while i < len(text):
        n = rng.randint(low, high)
        pieces.append(text[i : i + n])
        i += n
    return pieces or [""]


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _error_plan(
    status: int,
    error_type: str,
    message: str,
    headers: list[tuple[str, str]],
    error_code: str = "",
    request_id: str = "",
) -> Plan:
    error: dict[str, Any] = {"type": error_type, "message": message}
    if error_code:
        error["details"] = {"error_code": error_code}
    if not request_id:
        request_id = next((v for k, v in headers if k == "request-id"), "")
    body = {"type": "error", "error": error, "request_id": request_id}
    return Plan(status, [*headers, ("content-type", "application/json")], [_json_bytes(body)])


def _check_request(body: dict[str, Any], *, count_only: bool) -> str:
    """What the API would refuse with a 400 in this request ("" when nothing)."""
    if not isinstance(body.get("model"), str) or not body.get("model"):
        return "model: Field required"
    if not count_only:
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            return "max_tokens: Field required (a positive integer)"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    previous = ""
    pending: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: must be 'user' or 'assistant'"
        if role == previous:
            return 'messages: roles must alternate between "user" and "assistant"'
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        if role == "user" and pending:
            answered = {
                b.get("tool_use_id")
                for b in blocks
                if isinstance(b, dict) and b.get("type") == "tool_result"
            }
            if not pending <= answered:
                missing = ", ".join(sorted(pending - answered))
                return (
                    "messages: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {missing}"
                )
            pending = set()
        if role == "assistant":
            pending = {
                str(b.get("id"))
                for b in blocks
                if isinstance(b, dict) and b.get("type") == "tool_use"
            }
        previous = role
    return ""


async def play(plan: Plan) -> AsyncIterator[bytes | object]:
    """The plan's chunks with its pauses waited out (``RESET`` is yielded, not acted on)."""
    for chunk in plan.chunks:
        if isinstance(chunk, float):
            await anyio.sleep(chunk)
        else:
            yield chunk

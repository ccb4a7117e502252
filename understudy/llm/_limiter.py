"""A model's rate limiter: token buckets for requests and input tokens per minute, and the
waits the API's ``anthropic-ratelimit-*`` headers ask for."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Mapping

import anyio

from understudy.errors import DeadlineExceeded


def _reset_in(value: str | None) -> float | None:
    """Seconds until an RFC 3339 reset time (None when absent or unreadable)."""
    if not value:
        return None
    try:
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(when.timestamp() - time.time(), 0.0)


class RateLimiter:
    """Requests and tokens per minute, as token buckets that may go into debt: a call takes
    its share at once and waits until the bucket is back above zero, so concurrent callers
    queue in arrival order without a lock. ``observe`` reads response headers: a bucket the
    API reports empty stays closed until its reset time. Never blocks but in ``acquire``."""

    __slots__ = ("_blocked_until", "_clock", "_req", "_req_at", "_tok", "_tok_at", "rpm", "tpm")

    def __init__(self, rpm: float | None, tpm: float | None, clock: Callable[[], float]) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self._clock = clock
        now = clock()
        self._req = float(rpm or 0)
        self._tok = float(tpm or 0)
        self._req_at = self._tok_at = now
        self._blocked_until = 0.0

    def _refill(self, now: float) -> None:
        if self.rpm:
            self._req = min(self._req + (now - self._req_at) * self.rpm / 60.0, self.rpm)
            self._req_at = now
        if self.tpm:
            self._tok = min(self._tok + (now - self._tok_at) * self.tpm / 60.0, self.tpm)
            self._tok_at = now

    def reserve(self, tokens: int) -> float:
        """Take one request and ``tokens`` now; the seconds to wait before sending."""
        now = self._clock()
        wait = max(self._blocked_until - now, 0.0)
        if not (self.rpm or self.tpm):
            return wait
        self._refill(now)
        if self.rpm:
            self._req -= 1
            if self._req < 0:
                wait = max(wait, -self._req * 60.0 / self.rpm)
        if self.tpm:
            self._tok -= min(tokens, self.tpm)
            if self._tok < 0:
                wait = max(wait, -self._tok * 60.0 / self.tpm)
        return wait

    async def acquire(self, tokens: int, time_left: float) -> float:
        """Wait for room for one request of ``tokens`` input tokens; the seconds waited.
        Raises :class:`DeadlineExceeded` at once when the wait would outlast ``time_left``."""
        wait = self.reserve(tokens)
        if wait <= 0:
            return 0.0
        if wait > time_left:
            raise DeadlineExceeded(
                f"the rate limiter needs {wait:.3g} s, past the deadline ({time_left:.3g} s left)"
            )
        await anyio.sleep(wait)
        return wait

    def observe(self, headers: Mapping[str, str]) -> None:
        """Read ``anthropic-ratelimit-*`` headers: an exhausted requests or tokens bucket
        closes this limiter until its reset time."""
        for kind in ("requests", "tokens", "input-tokens"):
            remaining = headers.get(f"anthropic-ratelimit-{kind}-remaining")
            if remaining is None or remaining.strip() not in ("0", "0.0"):
                continue
            reset = _reset_in(headers.get(f"anthropic-ratelimit-{kind}-reset"))
            if reset:
                self._blocked_until = max(self._blocked_until, self._clock() + reset)

    def back_off(self, seconds: float) -> None:
        """A 429 asked for ``seconds`` of quiet: every call to this model waits them out."""
        self._blocked_until = max(self._blocked_until, self._clock() + seconds)

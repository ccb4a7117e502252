"""Prices of models, in five buckets, and what a call's usage costs.

The table shipped with the package (``understudy/llm/pricing.json``) has a ``version``
(recorded with every call) and, per model, dollars per million tokens for ``input``,
``output``, ``cache_read``, ``cache_write_5m`` and ``cache_write_1h``. A dated model id
(``claude-sonnet-4-5-20250929``) is priced by its longest listed prefix. Override it with
:meth:`PricingTable.from_mapping` (your negotiated rates) or extend it with
:meth:`PricingTable.with_prices`.

On Anthropic, ``usage.input_tokens`` counts only the *uncached* input: cache reads and cache
writes are separate fields, and the total input is the sum of the three. Cache writes are
split by lifetime in ``usage.cache_creation`` (5 minutes, 1 hour). :func:`usage_buckets`
reads a usage into the five buckets once, so nothing double counts or drops a bucket.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from understudy.errors import LLMConfigError

BUCKETS = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")
"""The five token buckets, in the order :class:`Tokens` and the metrics use."""

_MILLION = 1_000_000.0


@dataclass(frozen=True, slots=True)
class Price:
    """Dollars per million tokens in each bucket."""

    input: float
    output: float
    cache_read: float
    cache_write_5m: float
    cache_write_1h: float

    @classmethod
    def zero(cls) -> Price:
        """A model that costs nothing (an explicit opt-in for unlisted or local models)."""
        return cls(0.0, 0.0, 0.0, 0.0, 0.0)

    def cost(self, tokens: Tokens) -> float:
        """The dollars ``tokens`` cost at this price."""
        return (
            tokens.input * self.input
            + tokens.output * self.output
            + tokens.cache_read * self.cache_read
            + tokens.cache_write_5m * self.cache_write_5m
            + tokens.cache_write_1h * self.cache_write_1h
        ) / _MILLION

    @property
    def max_input(self) -> float:
        """The dearest way an input token can be billed (a cache write may cost more than
        plain input): what a reservation prices estimated input at when caching is asked."""
        return max(self.input, self.cache_write_5m, self.cache_write_1h, self.cache_read)


@dataclass(frozen=True, slots=True)
class Tokens:
    """A call's tokens by bucket. ``input`` is uncached input only."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0

    @property
    def total_input(self) -> int:
        """Every input token: uncached, read from cache, written to cache."""
        return self.input + self.cache_read + self.cache_write_5m + self.cache_write_1h

    @property
    def total(self) -> int:
        return self.total_input + self.output

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(
            self.input + other.input,
            self.output + other.output,
            self.cache_read + other.cache_read,
            self.cache_write_5m + other.cache_write_5m,
            self.cache_write_1h + other.cache_write_1h,
        )

    def buckets(self) -> tuple[tuple[str, int], ...]:
        return tuple(zip(BUCKETS, self.as_tuple(), strict=True))

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        return (self.input, self.output, self.cache_read, self.cache_write_5m, self.cache_write_1h)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _getter(obj: Any) -> Callable[[str], Any]:
    if isinstance(obj, Mapping):
        return obj.get

    def get(name: str) -> Any:
        return getattr(obj, name, None)

    return get


def usage_buckets(usage: Any) -> Tokens:
    """The five buckets of an SDK ``Usage`` (or a dict of the same fields).

    ``cache_creation_input_tokens`` is split by ``cache_creation.ephemeral_5m_input_tokens``
    / ``ephemeral_1h_input_tokens`` when the API gives the split; without it every write is
    a 5-minute write (the default lifetime). Missing fields count as zero.
    """
    if usage is None:
        return Tokens()
    if not isinstance(usage, Mapping):  # the SDK's Usage: plain attributes, the fast path
        writes = getattr(usage, "cache_creation_input_tokens", 0) or 0
        split = getattr(usage, "cache_creation", None)
        w1h = (getattr(split, "ephemeral_1h_input_tokens", 0) or 0) if split is not None else 0
        return Tokens(
            getattr(usage, "input_tokens", 0) or 0,
            getattr(usage, "output_tokens", 0) or 0,
            getattr(usage, "cache_read_input_tokens", 0) or 0,
            max(writes - w1h, 0),
            w1h,
        )
    get = _getter(usage)
    writes = _int(get("cache_creation_input_tokens"))
    split = get("cache_creation")
    if split is not None:
        sget = _getter(split)
        w5, w1h = _int(sget("ephemeral_5m_input_tokens")), _int(sget("ephemeral_1h_input_tokens"))
        # a split that does not account for every write: the rest were 5-minute writes
        w5 += max(writes - w5 - w1h, 0)
    else:
        w5, w1h = writes, 0
    return Tokens(
        input=_int(get("input_tokens")),
        output=_int(get("output_tokens")),
        cache_read=_int(get("cache_read_input_tokens")),
        cache_write_5m=w5,
        cache_write_1h=w1h,
    )


def _price(name: str, entry: object, where: str) -> Price:
    if not isinstance(entry, Mapping):
        raise LLMConfigError(f"{where}: the prices of {name!r} must be an object, not {entry!r}")
    missing = [bucket for bucket in BUCKETS if bucket not in entry]
    if missing:
        raise LLMConfigError(f"{where}: {name!r} has no price for {', '.join(missing)}")
    values = []
    for bucket in BUCKETS:
        value = entry[bucket]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LLMConfigError(f"{where}: {name}.{bucket} must be a number, not {value!r}")
        if not 0 <= value < math.inf:
            raise LLMConfigError(
                f"{where}: {name}.{bucket} must be finite and not negative, not {value!r}"
            )
        values.append(float(value))
    unknown = set(entry) - set(BUCKETS)
    if unknown:
        raise LLMConfigError(f"{where}: {name!r} has unknown fields {sorted(unknown)}")
    return Price(*values)


class PricingTable:
    """Prices by model name, with the table's ``version``. Immutable."""

    __slots__ = ("_prices", "version")

    def __init__(self, version: str, prices: Mapping[str, Price]) -> None:
        if not isinstance(version, str) or not version:
            raise LLMConfigError(f"pricing table: version must be a non-empty str, not {version!r}")
        self.version = version
        self._prices = dict(prices)

    def __repr__(self) -> str:
        return f"<PricingTable {self.version!r}: {len(self._prices)} models>"

    @classmethod
    def from_mapping(cls, data: object, *, where: str = "pricing table") -> PricingTable:
        """A table from ``{"version": ..., "models": {name: {bucket: usd_per_mtok}}}``.

        Raises :class:`~understudy.LLMConfigError` naming the bad entry."""
        if not isinstance(data, Mapping):
            raise LLMConfigError(f"{where}: must be an object with version and models")
        models = data.get("models")
        if not isinstance(models, Mapping) or not models:
            raise LLMConfigError(f"{where}: 'models' must be a non-empty object")
        version = data.get("version")
        if not isinstance(version, str) or not version:
            raise LLMConfigError(f"{where}: 'version' must be a non-empty string")
        return cls(version, {str(n): _price(str(n), e, where) for n, e in models.items()})

    @classmethod
    def default(cls) -> PricingTable:
        """The table shipped with understudy."""
        text = resources.files("understudy.llm").joinpath("pricing.json").read_text("utf-8")
        return cls.from_mapping(json.loads(text), where="understudy/llm/pricing.json")

    def with_prices(self, version: str, **prices: Price) -> PricingTable:
        """A copy with ``prices`` added or replaced (model name → :class:`Price`)."""
        return PricingTable(version, {**self._prices, **prices})

    def models(self) -> list[str]:
        return sorted(self._prices)

    def lookup(self, model: str) -> Price | None:
        """The price of ``model``: an exact entry, else the longest listed prefix of it."""
        price = self._prices.get(model)
        if price is not None:
            return price
        best = ""
        for name in self._prices:
            if model.startswith(name + "-") and len(name) > len(best):
                best = name
        return self._prices[best] if best else None

    def price(self, model: str) -> Price:
        """Like :meth:`lookup`, but an unlisted model is a :class:`LLMConfigError`."""
        price = self.lookup(model)
        if price is None:
            raise LLMConfigError(
                f"model {model!r} is not in pricing table {self.version!r} "
                f"(listed: {', '.join(self.models())}); pass pricing= with its prices, "
                "or price=Price.zero() to opt in to counting it as free",
                model=model,
            )
        return price


__all__ = ["BUCKETS", "Price", "PricingTable", "Tokens", "usage_buckets"]

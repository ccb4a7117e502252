"""Argument checks shared by the public entry points (one place, one wording).

Every check returns the value in its canonical type or raises ``TypeError`` (wrong type) or
``ValueError`` (right type, bad value) with a message that starts with ``what`` — the call
and option at fault, e.g. ``"Breaker(reset=)"`` — and shows the value given. ``bool`` is
never accepted as a number. Nothing here blocks or keeps state.
"""

from __future__ import annotations

import math

MAX_NAME = 255
"""Longest actor name, in characters (names are metric labels, store keys and log fields)."""


def number(value: object, what: str) -> float:
    """``value`` as a float if it is an int or a float (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, not {value!r}")
    return float(value)


def positive(value: object, what: str) -> float:
    """A positive number (``inf`` allowed; NaN refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, not {value!r}")
    if not value > 0:  # also refuses NaN
        raise ValueError(f"{what} must be positive, not {value!r}")
    return float(value)


def finite_seconds(value: object, what: str) -> float:
    """A positive, finite number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {value!r}")
    if not 0 < value < math.inf:  # also refuses NaN
        raise ValueError(f"{what} must be a positive, finite number of seconds, not {value!r}")
    return float(value)


def optional_seconds(value: object, what: str) -> float | None:
    """None, or a positive, finite number of seconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds or None, not {value!r}")
    if not 0 < value < math.inf:
        raise ValueError(f"{what} must be a positive, finite number of seconds, not {value!r}")
    return float(value)


def count(value: object, what: str, minimum: int = 1) -> int:
    """An int (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {value!r}")
    if value < minimum:
        raise ValueError(f"{what} must be at least {minimum}, not {value}")
    return value


def group_name(name: object, where: str) -> str:
    """A pool or entity type name: a non-empty str without ``/`` (entity keys use it)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"{where}: name must be a non-empty str, not {name!r}")
    if "/" in name:
        raise ValueError(f"{where}: name must not contain '/', got {name!r}")
    return name


def probability(value: object, what: str) -> float:
    """A number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number in [0, 1], not {value!r}")
    if not 0 <= value <= 1:
        raise ValueError(f"{what} must be in [0, 1], not {value!r}")
    return float(value)


def rate(value: object, what: str) -> float:
    """A finite number of events per second, >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of events per second, not {value!r}")
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{what} must be a finite number >= 0, not {value!r}")
    return float(value)


def check_name(name: object, what: str) -> str:
    """An actor name: a non-empty str of at most :data:`MAX_NAME` printable characters that
    encodes to UTF-8 (no lone surrogates, no control characters: a name is a metric label,
    a store key, a log field and a line in ``understudy inspect``)."""
    if not isinstance(name, str):
        raise TypeError(f"{what}: a name must be a str, not {name!r}")
    if not name:
        raise ValueError(f"{what}: a name must not be empty")
    if len(name) > MAX_NAME:
        raise ValueError(
            f"{what}: a name must be at most {MAX_NAME} characters, not {len(name)} "
            f"({name[:40]!r}...)"
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{what}: the name {name!r} cannot be encoded to UTF-8 (position {exc.start}: "
            "a lone surrogate)"
        ) from None
    if not name.isprintable():
        bad = next(ch for ch in name if not ch.isprintable())
        raise ValueError(
            f"{what}: the name {name!r} contains the unprintable character {bad!r}; "
            "names are printable text"
        )
    return name


__all__ = [
    "MAX_NAME",
    "check_name",
    "count",
    "finite_seconds",
    "number",
    "optional_seconds",
    "positive",
    "probability",
    "rate",
]

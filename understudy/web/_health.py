"""Liveness and readiness of a runtime, as an orchestrator's probes read them.

``/healthz`` (liveness) answers whether the process is worth keeping: 200 while the runtime
runs (also while it stops gracefully), 503 once it is not running or a root supervisor gave up
(nothing in the process will bring that tree back: restart the process).

``/readyz`` (readiness) answers whether to send it traffic: 200 while the runtime runs, no
root supervisor gave up or is giving up, and it is not shutting down; 503 with the reason
otherwise (starting, stopping, stopped, a root that gave up).

Both are snapshots read from the runtime without blocking.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import msgspec

from understudy.metrics._collector import state_of

if TYPE_CHECKING:
    from understudy.actors import Cell
    from understudy.metrics import Metrics

Status = Literal["alive", "ready", "stopping", "stopped", "failed"]


class RootInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """A root supervisor: its name (or id) and state (``running``, ``stopped``...)."""

    name: str
    state: str
    gave_up: bool = False


class Health(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a probe answers: ``status``, the ``reason`` when it is not good, the roots."""

    status: Status
    reason: str | None = None
    roots: list[RootInfo] = msgspec.field(default_factory=list)


def _roots(metrics: Metrics) -> list[Cell]:
    from understudy.supervision import SupervisorActor

    return [
        cell
        for cell in list(metrics.cells.values())
        if cell.parent is None and issubclass(cell.actor_class, SupervisorActor)
    ]


def _failure(metrics: Metrics, roots: list[Cell]) -> str | None:
    """Why the runtime cannot serve for good (a root gave up or is giving up), else None."""
    runtime = metrics.runtime
    error = runtime.failure if runtime is not None else None
    if error is not None:
        return f"a root supervisor gave up: {error}"
    for cell in roots:
        if cell.meter.give_ups:
            return f"root supervisor {cell.label!r} is giving up (restart intensity exceeded)"
    return None


def _info(roots: list[Cell]) -> list[RootInfo]:
    return [
        RootInfo(cell.label, state_of(cell), gave_up=bool(cell.meter.give_ups)) for cell in roots
    ]


def liveness(metrics: Metrics) -> tuple[int, Health]:
    """``(HTTP status, body)`` of ``/healthz``: a stopping runtime is still alive. Never
    blocks."""
    return _health(metrics, stopping=200, ok="alive")


def readiness(metrics: Metrics) -> tuple[int, Health]:
    """``(HTTP status, body)`` of ``/readyz``: a stopping runtime takes no new work. Never
    blocks."""
    return _health(metrics, stopping=503, ok="ready")


def _health(metrics: Metrics, *, stopping: int, ok: Status) -> tuple[int, Health]:
    runtime = metrics.runtime
    if runtime is None or runtime.closed:
        return 503, Health("stopped", "the runtime is not running")
    roots = _roots(metrics)
    failure = _failure(metrics, roots)
    if failure is not None:
        return 503, Health("failed", failure, _info(roots))
    if runtime.shutting_down:
        return stopping, Health("stopping", "the runtime is shutting down", _info(roots))
    return 200, Health(ok, None, _info(roots))

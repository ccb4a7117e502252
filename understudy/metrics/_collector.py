"""The scrape-time collector: sums the actor cells' meters per label into metric families."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from understudy.events import DEAD_LETTER_REASONS
from understudy.meter import BUCKETS, Meter, clock

if TYPE_CHECKING:
    from understudy.actors import Cell
    from understudy.metrics import Metrics

OUTCOMES = ("ok", "error", "timeout", "rejected")
"""Outcomes of ``understudy_messages_total``: ``timeout`` is a handler cancelled by its
actor's ``timeout`` or ``idle_timeout`` (counted apart from ``error``)."""

_HANDLER_TIMEOUTS = ("timeout", "idle_timeout")

_BOUNDS = (*(repr(bound) for bound in BUCKETS), "+Inf")


def label_of(cell: Cell) -> str:
    """The ``actor`` label: a pool's name or an entity type for their workers, else a named
    actor's name, else its class (bounded cardinality)."""
    if cell.group is not None:  # understudy.pools / understudy.entities
        return cell.group
    name = cell.name
    return name if name is not None else cell.actor_class.__qualname__


def state_of(cell: Cell) -> str:
    """An actor identity's state: ``running``, ``backing_off`` (waiting out a supervisor's
    backoff before its restart), ``restarting`` (between two instances) or ``stopped``."""
    if cell.terminated:
        return "stopped"
    if cell.instance is None:
        return "backing_off" if cell.meter.backoff_until > clock() else "restarting"
    return "running"


@dataclass(frozen=True)
class ActorMetric:
    """A per-actor counter or gauge that another layer adds to the runtime's metrics.

    ``read(cell)`` is called at scrape time for each live actor cell; the values are summed
    per ``actor`` label (the name of a named actor, else its class). For a ``counter`` the
    value of an actor that stops is kept in a retired total, so the counter never goes
    backwards; ``name`` must then end in ``_total``. ``read`` must be cheap and must not
    block. Register it with ``rt.metrics.add_actor_metric``.
    """

    name: str
    documentation: str
    read: Callable[[Cell], float]
    kind: Literal["counter", "gauge"] = "counter"

    def __post_init__(self) -> None:
        if not self.name.startswith("understudy_"):
            raise ValueError(f"metric name {self.name!r} must start with 'understudy_'")
        if self.kind == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name!r} must end with '_total'")
        if self.kind not in ("counter", "gauge"):
            raise ValueError(f"kind must be 'counter' or 'gauge', not {self.kind!r}")


def _add_buckets(into: list[int] | None, counts: list[int] | None) -> list[int] | None:
    if counts is None:
        return into
    if into is None:
        return list(counts)
    for i, n in enumerate(counts):
        into[i] += n
    return into


class Totals:
    """One label's sums: counters (kept for stopped actors too) and live gauges."""

    __slots__ = (
        "ask_timeouts",
        "backoff_seconds",
        "backoff_waits",
        "capacity",
        "depth",
        "errors",
        "fill",
        "give_ups",
        "handled_fast",
        "handled_seconds",
        "handled_slow",
        "rejected",
        "restarts",
        "states",
        "terminated",
        "timeouts",
        "wait_fast",
        "wait_seconds",
        "wait_slow",
    )

    def __init__(self) -> None:
        self.handled_fast = 0
        self.handled_slow: list[int] | None = None
        self.handled_seconds = 0.0
        self.wait_fast = 0
        self.wait_slow: list[int] | None = None
        self.wait_seconds = 0.0
        self.errors = 0
        self.rejected = 0
        self.ask_timeouts = 0
        self.restarts: dict[str, int] = {}
        self.terminated: dict[str, int] = {}
        self.timeouts: dict[str, int] = {}
        self.give_ups: int | None = None
        self.backoff_waits: list[int] | None = None
        self.backoff_seconds = 0.0
        self.depth = 0
        self.capacity = 0
        self.fill = 0.0
        self.states: dict[str, int] = {}

    def add_meter(self, meter: Meter) -> None:
        self.handled_fast += meter.handled_fast
        if meter.handled_slow is not None:
            self.handled_slow = _add_buckets(self.handled_slow, meter.handled_slow)
        self.handled_seconds += meter.handled_seconds
        self.wait_fast += meter.wait_fast
        if meter.wait_slow is not None:
            self.wait_slow = _add_buckets(self.wait_slow, meter.wait_slow)
        self.wait_seconds += meter.wait_seconds
        self.errors += meter.errors
        self.rejected += meter.rejected
        self.ask_timeouts += meter.ask_timeouts
        if meter.restarts:
            for reason, n in meter.restarts.items():
                self.restarts[reason] = self.restarts.get(reason, 0) + n
        if meter.timeouts:
            for reason, n in meter.timeouts.items():
                self.timeouts[reason] = self.timeouts.get(reason, 0) + n
        if meter.give_ups is not None:
            self.give_ups = (self.give_ups or 0) + meter.give_ups
        if meter.backoff_waits is not None:
            self.backoff_waits = _add_buckets(self.backoff_waits, meter.backoff_waits)
            self.backoff_seconds += meter.backoff_seconds

    def add_counters(self, other: Totals) -> None:
        self.handled_fast += other.handled_fast
        self.handled_slow = _add_buckets(self.handled_slow, other.handled_slow)
        self.handled_seconds += other.handled_seconds
        self.wait_fast += other.wait_fast
        self.wait_slow = _add_buckets(self.wait_slow, other.wait_slow)
        self.wait_seconds += other.wait_seconds
        self.errors += other.errors
        self.rejected += other.rejected
        self.ask_timeouts += other.ask_timeouts
        for reason, n in other.restarts.items():
            self.restarts[reason] = self.restarts.get(reason, 0) + n
        for reason, n in other.terminated.items():
            self.terminated[reason] = self.terminated.get(reason, 0) + n
        for reason, n in other.timeouts.items():
            self.timeouts[reason] = self.timeouts.get(reason, 0) + n
        if other.give_ups is not None:
            self.give_ups = (self.give_ups or 0) + other.give_ups
        self.backoff_waits = _add_buckets(self.backoff_waits, other.backoff_waits)
        self.backoff_seconds += other.backoff_seconds


def _histogram(fast: int, slow: list[int] | None) -> tuple[list[tuple[str, float]], int]:
    """Cumulative ``(le, count)`` buckets from the first bucket and the others' counts."""
    running = fast
    buckets: list[tuple[str, float]] = [(_BOUNDS[0], running)]
    for i, bound in enumerate(_BOUNDS[1:]):
        if slow is not None:
            running += slow[i]
        buckets.append((bound, running))
    return buckets, running


class RuntimeCollector:
    """A ``prometheus_client`` collector over one runtime's actor cells and counters.

    A scrape costs work proportional to the live actors plus the label values; it takes no
    lock the actors take and never blocks.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterator[Metric]:
        """The families, without samples (lets a registry detect a duplicate runtime)."""
        extras = self._metrics.actor_metrics
        yield from self._families(None, extras, [{} for _ in extras])

    def collect(self) -> Iterator[Metric]:
        metrics = self._metrics
        totals: dict[str, Totals] = {}
        extras = metrics.actor_metrics
        extra_values: list[dict[str, float]] = [dict(metrics.retired_extra(m)) for m in extras]
        for label, retired in metrics.retired.items():
            totals[label] = Totals()
            totals[label].add_counters(retired)
        for cell in metrics.cells.values():
            label = label_of(cell)
            into: Totals | None = totals.get(label)
            if into is None:
                into = totals[label] = Totals()
            into.add_meter(cell.meter)
            mailbox = cell.mailbox
            depth = len(mailbox.queue)
            into.depth += depth
            into.capacity += mailbox.capacity
            fill = depth / mailbox.capacity
            if fill > into.fill:
                into.fill = fill
            state = state_of(cell)
            into.states[state] = into.states.get(state, 0) + 1
            for values, extra in zip(extra_values, extras, strict=True):
                values[label] = values.get(label, 0.0) + extra.read(cell)
        yield from self._families(totals, extras, extra_values)

    def _families(
        self,
        totals: dict[str, Totals] | None = None,
        extras: Iterable[ActorMetric] = (),
        extra_values: Iterable[dict[str, float]] = (),
    ) -> Iterator[Metric]:
        metrics = self._metrics
        on = metrics.on
        describe = totals is None
        totals = totals or {}

        info = GaugeMetricFamily(
            "understudy_build_info", "understudy's version (always 1).", labels=["version"]
        )
        if not describe:
            info.add_metric([metrics.version], 1)
        yield info

        actors = GaugeMetricFamily(
            "understudy_actors", "Live actor identities by state.", labels=["actor", "state"]
        )
        messages = CounterMetricFamily(
            "understudy_messages",
            "Messages by outcome: ok (handler returned), error (handler raised), "
            "timeout (handler cancelled by its time limit), "
            "rejected (refused by a full mailbox or evicted from it).",
            labels=["actor", "outcome"],
        )
        handler = HistogramMetricFamily(
            "understudy_handler_duration_seconds",
            "Time from a handler's start to its return or exception.",
            labels=["actor"],
        )
        wait = HistogramMetricFamily(
            "understudy_mailbox_wait_seconds",
            "Time sampled messages waited in the mailbox before their handler started.",
            labels=["actor"],
        )
        depth = GaugeMetricFamily(
            "understudy_mailbox_depth", "User messages queued in mailboxes.", labels=["actor"]
        )
        capacity = GaugeMetricFamily(
            "understudy_mailbox_capacity", "Bound of the mailboxes' user lane.", labels=["actor"]
        )
        fill = GaugeMetricFamily(
            "understudy_mailbox_fill_ratio",
            "Depth over capacity of the fullest mailbox (0 to 1).",
            labels=["actor"],
        )
        restarts = CounterMetricFamily(
            "understudy_restarts",
            "Restarts of actor identities by the exit reason of the instance replaced.",
            labels=["actor", "reason"],
        )
        terminated = CounterMetricFamily(
            "understudy_actors_terminated",
            "Actor identities that stopped for good, by exit reason.",
            labels=["actor", "reason"],
        )
        ask_timeouts = CounterMetricFamily(
            "understudy_ask_timeouts",
            "Asks whose caller's timeout ran out before the reply.",
            labels=["actor"],
        )
        give_ups = CounterMetricFamily(
            "understudy_supervisor_give_ups",
            "Times a supervisor exceeded its restart intensity, stopped its children and failed.",
            labels=["actor"],
        )
        timeouts = CounterMetricFamily(
            "understudy_timeouts",
            "Messages a time limit stopped, by kind: expired (deadline passed in the "
            "mailbox), queue_timeout, timeout (handler cancelled), idle_timeout.",
            labels=["actor", "kind"],
        )
        backoff = HistogramMetricFamily(
            "understudy_backoff_wait_seconds",
            "Backoff delays a supervisor made an actor wait before restarting it.",
            labels=["actor"],
        )
        for label in sorted(totals):
            t = totals[label]
            for state, n in sorted(t.states.items()):
                actors.add_metric([label, state], n)
            if on:
                buckets, count = _histogram(t.handled_fast, t.handled_slow)
                cut = sum(t.timeouts.get(kind, 0) for kind in _HANDLER_TIMEOUTS)
                messages.add_metric([label, "ok"], count - t.errors)
                messages.add_metric([label, "error"], t.errors - cut)
                messages.add_metric([label, "timeout"], cut)
                handler.add_metric([label], buckets, t.handled_seconds)
                buckets, _ = _histogram(t.wait_fast, t.wait_slow)
                wait.add_metric([label], buckets, t.wait_seconds)
            messages.add_metric([label, "rejected"], t.rejected)
            if t.states:
                depth.add_metric([label], t.depth)
                capacity.add_metric([label], t.capacity)
                fill.add_metric([label], t.fill)
            for reason, n in sorted(t.restarts.items()):
                restarts.add_metric([label, reason], n)
            for reason, n in sorted(t.terminated.items()):
                terminated.add_metric([label, reason], n)
            ask_timeouts.add_metric([label], t.ask_timeouts)
            for kind, n in sorted(t.timeouts.items()):
                timeouts.add_metric([label, kind], n)
            if t.give_ups is not None:
                give_ups.add_metric([label], t.give_ups)
            if t.backoff_waits is not None:
                buckets, _ = _histogram(t.backoff_waits[0], t.backoff_waits[1:])
                backoff.add_metric([label], buckets, t.backoff_seconds)
        yield actors
        yield messages
        if on or describe:
            yield handler
            yield wait
        yield depth
        yield capacity
        yield fill
        yield restarts
        yield terminated
        yield ask_timeouts
        yield timeouts
        yield give_ups
        yield backoff

        dead = CounterMetricFamily(
            "understudy_dead_letters",
            "Messages that could not be delivered or processed, by reason.",
            labels=["reason"],
        )
        if not describe:
            counts = metrics.dead_letters.counts
            for reason in sorted({*DEAD_LETTER_REASONS, *counts}):
                dead.add_metric([reason], counts.get(reason, 0))
        yield dead
        dropped = CounterMetricFamily(
            "understudy_event_stream_dropped",
            "Events not delivered because a subscriber's buffer was full.",
        )
        if not describe:
            dropped.add_metric([], metrics.events.dropped)
        yield dropped

        for extra, values in zip(extras, extra_values, strict=True):
            family: CounterMetricFamily | GaugeMetricFamily
            if extra.kind == "counter":
                family = CounterMetricFamily(
                    extra.name.removesuffix("_total"), extra.documentation, labels=["actor"]
                )
            else:
                family = GaugeMetricFamily(extra.name, extra.documentation, labels=["actor"])
            for label in sorted(values):
                family.add_metric([label], values[label])
            yield family

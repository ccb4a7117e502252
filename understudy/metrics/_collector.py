"""The scrape: the runtime's own families written as Prometheus text straight from the cells.

A scrape is a plan (:class:`Scrape`) made in one pass over the live cells, then the text of
each family written from it in chunks of :data:`CHUNK` actors, so that an async caller can let
the event loop run between chunks (:meth:`understudy.metrics.Metrics.scrape`). Nothing goes
through ``prometheus_client`` objects on this path: a named actor costs a handful of formatted
lines, not a few dozen ``Sample`` tuples. ``prometheus_client`` consumers of the registry get
the same families parsed back from that text (:class:`RuntimeCollector`).

What a label costs: ``understudy_actors``, ``understudy_messages_total{outcome="ok"}`` and the
three mailbox gauges; the other per-actor series appear with their first non-zero value. The
two latency histograms are labelled by ``class`` (the actor's class), not by ``actor``: their
15 buckets each per named actor were most of the old 3.3 KiB per actor.

A cell whose reading raises (a broken extension metric, a name that cannot be encoded) is left
out of that scrape, logged once per scrape and counted in ``understudy_scrape_errors_total``;
the rest is served.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString as _go_float

from understudy.events import DEAD_LETTER_REASONS
from understudy.meter import BUCKETS, Meter, clock

if TYPE_CHECKING:
    from understudy.actors import Cell
    from understudy.metrics import Metrics

logger = logging.getLogger("understudy.metrics")

OUTCOMES = ("ok", "error", "timeout", "rejected")
"""Outcomes of ``understudy_messages_total``: ``timeout`` is a handler cancelled by its
actor's ``timeout`` or ``idle_timeout`` (counted apart from ``error``)."""

CHUNK = 1000
"""Actors written per chunk of a family's text (the event loop runs between chunks)."""

_HANDLER_TIMEOUTS = ("timeout", "idle_timeout")


def floatToGoString(value: float) -> str:
    """``prometheus_client``'s formatting of a float (Go's), typed."""
    text: str = _go_float(value)  # type: ignore[no-untyped-call]
    return text


_BOUNDS = (*(floatToGoString(bound) for bound in BUCKETS), "+Inf")


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


def label_value(value: str) -> str:
    """``value`` escaped for a label in the text format (backslash, quote, newline), and made
    encodable: a lone surrogate becomes its ``\\udXXX`` spelling instead of failing the
    whole scrape."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def number(value: float) -> str:
    """A sample value as ``prometheus_client`` writes it (Go's float formatting)."""
    if type(value) is int and 0 <= value < 1_000_000:
        return f"{value}.0"
    return floatToGoString(value)


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
        "crashes",
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
        self.crashes = 0
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
        self.add_histograms(meter)
        self.errors += meter.errors
        self.crashes += meter.crashes
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

    def add_histograms(self, meter: Meter | Totals) -> None:
        """Add the handler-duration and mailbox-wait histograms of ``meter``."""
        self.handled_fast += meter.handled_fast
        if meter.handled_slow is not None:
            self.handled_slow = _add_buckets(self.handled_slow, meter.handled_slow)
        self.handled_seconds += meter.handled_seconds
        self.wait_fast += meter.wait_fast
        if meter.wait_slow is not None:
            self.wait_slow = _add_buckets(self.wait_slow, meter.wait_slow)
        self.wait_seconds += meter.wait_seconds

    def add_counters(self, other: Totals) -> None:
        self.add_histograms(other)
        self.errors += other.errors
        self.crashes += other.crashes
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

    def add_live(self, cell: Cell) -> None:
        """Add a live cell's counters and gauges."""
        self.add_meter(cell.meter)
        mailbox = cell.mailbox
        depth = len(mailbox.queue)
        self.depth += depth
        self.capacity += mailbox.capacity
        fill = depth / mailbox.capacity
        if fill > self.fill:
            self.fill = fill
        state = state_of(cell)
        self.states[state] = self.states.get(state, 0) + 1


def _histogram(
    name: str, label: str, fast: int, slow: list[int] | None, seconds: float
) -> Iterator[str]:
    """The text lines of one histogram series from its first bucket and the others' counts."""
    running = fast
    yield f'{name}_bucket{{{label},le="{_BOUNDS[0]}"}} {number(running)}\n'
    for i, bound in enumerate(_BOUNDS[1:]):
        if slow is not None:
            running += slow[i]
        yield f'{name}_bucket{{{label},le="{bound}"}} {number(running)}\n'
    yield f"{name}_count{{{label}}} {number(running)}\n"
    yield f"{name}_sum{{{label}}} {number(seconds)}\n"


def _outcomes(
    handled: int,
    errors: int,
    crashes: int,
    timeouts: dict[str, int] | None,
    rejected: int,
    on: bool,
) -> Iterator[tuple[str, int]]:
    """``(outcome, count)`` of one label's messages: ``ok`` always (when metered), the
    others once non-zero. The guard's time limits (``timeout``, ``idle_timeout``) crash the
    actor and a cut at the deadline does not, but both are reported as ``timeout``."""
    if on:
        limits = sum(timeouts.get(kind, 0) for kind in _HANDLER_TIMEOUTS) if timeouts else 0
        deadline = timeouts.get("deadline", 0) if timeouts else 0
        yield "ok", handled - errors
        if errors - crashes - deadline:
            yield "error", errors - crashes - deadline
        if crashes - limits:
            yield "crash", crashes - limits
        if limits + deadline:
            yield "timeout", limits + deadline
    if rejected:
        yield "rejected", rejected


# name (counters without _total), type, help, labels: the order of the text
_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("understudy_build_info", "gauge", "understudy's version (always 1)."),
    ("understudy_actors", "gauge", "Live actor identities by state."),
    (
        "understudy_messages",
        "counter",
        "Messages by outcome: ok (handler returned), error (handler raised one of the "
        "actor's answers: no restart), crash (handler raised anything else), "
        "timeout (handler cancelled by its time limit or its message's deadline), "
        "rejected (refused by a full mailbox or evicted from it).",
    ),
    (
        "understudy_handler_duration_seconds",
        "histogram",
        "Time from a handler's start to its return or exception, by actor class.",
    ),
    (
        "understudy_mailbox_wait_seconds",
        "histogram",
        "Time sampled messages waited in the mailbox before their handler started, by actor class.",
    ),
    ("understudy_mailbox_depth", "gauge", "User messages queued in mailboxes."),
    ("understudy_mailbox_capacity", "gauge", "Bound of the mailboxes' user lane."),
    (
        "understudy_mailbox_fill_ratio",
        "gauge",
        "Depth over capacity of the fullest mailbox (0 to 1).",
    ),
    (
        "understudy_restarts",
        "counter",
        "Restarts of actor identities by the exit reason of the instance replaced.",
    ),
    (
        "understudy_actors_terminated",
        "counter",
        "Actor identities that stopped for good, by exit reason.",
    ),
    (
        "understudy_ask_timeouts",
        "counter",
        "Asks whose caller's timeout ran out before the reply.",
    ),
    (
        "understudy_timeouts",
        "counter",
        "Messages a time limit stopped, by kind: expired (deadline passed in the "
        "mailbox), queue_timeout, timeout (handler cancelled), idle_timeout.",
    ),
    (
        "understudy_supervisor_give_ups",
        "counter",
        "Times a supervisor exceeded its restart intensity, stopped its children and failed.",
    ),
    (
        "understudy_backoff_wait_seconds",
        "histogram",
        "Backoff delays a supervisor made an actor wait before restarting it.",
    ),
    (
        "understudy_dead_letters",
        "counter",
        "Messages that could not be delivered or processed, by reason.",
    ),
    (
        "understudy_event_stream_dropped",
        "counter",
        "Events not delivered because a subscriber's buffer was full.",
    ),
    (
        "understudy_scrape_errors",
        "counter",
        "Actors left out of a scrape because reading them failed (see the log).",
    ),
)
_HEADS = {
    name: (
        f"# HELP {name}{'_total' if kind == 'counter' else ''} {doc}\n"
        f"# TYPE {name}{'_total' if kind == 'counter' else ''} {kind}\n"
    )
    for name, kind, doc in _FAMILIES
}
_ON_ONLY = ("understudy_handler_duration_seconds", "understudy_mailbox_wait_seconds")


def _head(name: str, kind: str, documentation: str) -> str:
    full = name + "_total" if kind == "counter" else name
    doc = documentation.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {full} {doc}\n# TYPE {full} {kind}\n"


class Scrape:
    """One scrape of a runtime's own families: made in one pass over the live cells, then
    written by :meth:`chunks`. Never blocks; reads no lock the actors take."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.failed = 0
        self._first_failure: BaseException | None = None
        self.shared: dict[str, Totals] = {}
        """Labels with more than one contributor (a class of unnamed actors, a name that
        stopped and was reused, retired totals): summed."""
        self.single: list[tuple[str, Cell]] = []
        """Named live actors with a label of their own: ``(escaped label, cell)``, read
        directly as their lines are written."""
        self.rare: list[tuple[str, Cell]] = []
        """The single ones with restarts, timeouts, a backoff or a supervisor's counts."""
        self.classes: dict[str, Totals] = {}
        """The latency histograms, by class."""
        extras = metrics.actor_metrics
        self.extra_shared: list[dict[str, float]] = [dict(metrics.retired_extra(m)) for m in extras]
        shared = self.shared
        classes = self.classes
        for label, retired in metrics.retired.items():
            totals = shared[label] = Totals()
            totals.add_counters(retired)
        for name, retired in metrics.retired_classes.items():
            totals = classes[name] = Totals()
            totals.add_histograms(retired)
        self.shared_labels: list[tuple[str, str]] = []

    def _plan(self) -> Iterator[None]:
        """Sort the live cells into single and shared labels; yields every :data:`CHUNK`."""
        metrics = self.metrics
        extras = metrics.actor_metrics
        shared = self.shared
        classes = self.classes
        single = self.single
        rare = self.rare
        labels = metrics.escaped_labels
        cells = list(metrics.cells.values())
        unnamed = {
            cell.actor_class.__qualname__ if cell.group is None else cell.group
            for cell in cells
            if cell.name is None or cell.group is not None
        }
        for i in range(0, len(cells), CHUNK):
            if i:
                yield None
            # the latency histograms of a run of cells of one class (the common case: many
            # actors of one class in spawn order) are summed in locals, then added
            hist: Totals | None = None
            last: type | None = None
            fast = waited = 0
            seconds = wait_seconds = 0.0
            for cell in cells[i : i + CHUNK]:
                try:
                    meter = cell.meter
                    actor_class = cell.actor_class
                    if actor_class is not last:
                        if hist is not None:
                            hist.handled_fast += fast
                            hist.handled_seconds += seconds
                            hist.wait_fast += waited
                            hist.wait_seconds += wait_seconds
                            fast = waited = 0
                            seconds = wait_seconds = 0.0
                        cls = actor_class.__qualname__
                        hist = classes.get(cls)
                        if hist is None:
                            hist = classes[cls] = Totals()
                        last = actor_class
                    if meter.handled_slow is None and meter.wait_slow is None:
                        fast += meter.handled_fast
                        seconds += meter.handled_seconds
                        waited += meter.wait_fast
                        wait_seconds += meter.wait_seconds
                    else:
                        assert hist is not None
                        hist.add_histograms(meter)
                    group = cell.group  # a pool's or entity type's workers share its label
                    name = cell.name if group is None else None
                    if name is not None and name not in shared and name not in unnamed:
                        escaped = labels.get(cell.id)
                        if escaped is None:
                            escaped = labels[cell.id] = label_value(name)
                        entry = (escaped, cell)
                        single.append(entry)
                        if (
                            meter.restarts
                            or meter.timeouts
                            or meter.ask_timeouts
                            or meter.give_ups is not None
                            or meter.backoff_waits is not None
                        ):
                            rare.append(entry)
                        continue
                    if group is not None:
                        label = group
                    else:
                        label = actor_class.__qualname__ if name is None else name
                    totals = shared.get(label)
                    if totals is None:
                        totals = shared[label] = Totals()
                    totals.add_live(cell)
                    for values, extra in zip(self.extra_shared, extras, strict=True):
                        values[label] = values.get(label, 0.0) + extra.read(cell)
                except Exception as exc:
                    self._failure(exc)
            if hist is not None:
                hist.handled_fast += fast
                hist.handled_seconds += seconds
                hist.wait_fast += waited
                hist.wait_seconds += wait_seconds
        self.shared_labels = [(label_value(label), label) for label in sorted(shared)]

    def _failure(self, exc: BaseException) -> None:
        self.failed += 1
        if self._first_failure is None:
            self._first_failure = exc

    def report(self) -> None:
        """Log the scrape's failures (once) and count them; call when the text is written."""
        if self.failed:
            self.metrics.scrape_errors += self.failed
            logger.error(
                "metrics: %d actor(s) left out of a scrape; the first failure:",
                self.failed,
                exc_info=self._first_failure,
            )

    # -- writing --

    def chunks(self) -> Iterator[str | None]:
        """The text of the families, a chunk at a time (at most :data:`CHUNK` actors);
        ``None`` between chunks of the first pass (a good moment to let the loop run)."""
        yield from self._plan()
        metrics = self.metrics
        on = metrics.on
        single = self.single
        rare = self.rare
        shared = self.shared
        labels = self.shared_labels

        yield _HEADS["understudy_build_info"] + (
            f'understudy_build_info{{version="{label_value(metrics.version)}"}} 1.0\n'
        )

        def family(
            head: str,
            line: Callable[[str, Cell], str],
            rows: Callable[[], str],
            cells: list[tuple[str, Cell]],
            batch: Callable[[list[tuple[str, Cell]]], list[str]] | None = None,
        ) -> Iterator[str]:
            """A family's text: ``rows`` (shared labels), then ``line`` per cell, a chunk at
            a time (``batch`` does a chunk's lines at once: the fast path)."""
            parts = [head, rows()]
            for i in range(0, len(cells), CHUNK):
                part = cells[i : i + CHUNK]
                try:
                    if batch is not None:
                        parts.append("".join(batch(part)))
                    else:
                        parts.append("".join([line(e, cell) for e, cell in part]))
                except Exception:  # find the one that fails, keep the others
                    for e, cell in part:
                        try:
                            parts.append(line(e, cell))
                        except Exception as exc:
                            self._failure(exc)
                yield "".join(parts)
                parts = []
            if parts:
                yield "".join(parts)

        def actors_line(e: str, cell: Cell) -> str:
            state = "running" if cell.instance is not None and not cell.terminated else None
            return f'understudy_actors{{actor="{e}",state="{state or state_of(cell)}"}} 1.0\n'

        def actors_rows() -> str:
            return "".join(
                f'understudy_actors{{actor="{e}",state="{state}"}} {number(n)}\n'
                for e, label in labels
                for state, n in sorted(shared[label].states.items())
            )

        def actors_batch(part: list[tuple[str, Cell]]) -> list[str]:
            return [
                f'understudy_actors{{actor="{e}",state="running"}} 1.0\n'
                if c.instance is not None and not c.terminated
                else actors_line(e, c)
                for e, c in part
            ]

        yield from family(
            _HEADS["understudy_actors"], actors_line, actors_rows, single, actors_batch
        )

        def messages_line(e: str, cell: Cell) -> str:
            meter = cell.meter
            slow = meter.handled_slow
            handled = meter.handled_fast if slow is None else meter.handled_fast + sum(slow)
            errors = meter.errors
            if not errors and not meter.rejected and on:  # the common case: one line
                return f'understudy_messages_total{{actor="{e}",outcome="ok"}} {_count(handled)}\n'
            return "".join(
                f'understudy_messages_total{{actor="{e}",outcome="{outcome}"}} {number(n)}\n'
                for outcome, n in _outcomes(
                    handled, errors, meter.crashes, meter.timeouts, meter.rejected, on
                )
            )

        def messages_rows() -> str:
            lines: list[str] = []
            for e, label in labels:
                t = shared[label]
                handled = _histogram_count(t.handled_fast, t.handled_slow)
                lines.extend(
                    f'understudy_messages_total{{actor="{e}",outcome="{outcome}"}} {number(n)}\n'
                    for outcome, n in _outcomes(
                        handled, t.errors, t.crashes, t.timeouts, t.rejected, on
                    )
                )
            return "".join(lines)

        def messages_batch(part: list[tuple[str, Cell]]) -> list[str]:
            if not on:
                return [messages_line(e, c) for e, c in part]
            return [
                f'understudy_messages_total{{actor="{e}",outcome="ok"}} {m.handled_fast}.0\n'
                if m.handled_slow is None
                and not m.errors
                and not m.rejected
                and m.handled_fast < 1_000_000
                else messages_line(e, c)
                for e, c in part
                for m in (c.meter,)
            ]

        yield from family(
            _HEADS["understudy_messages"], messages_line, messages_rows, single, messages_batch
        )

        if on:
            for name, fast, slow, seconds in (
                (
                    "understudy_handler_duration_seconds",
                    "handled_fast",
                    "handled_slow",
                    "handled_seconds",
                ),
                ("understudy_mailbox_wait_seconds", "wait_fast", "wait_slow", "wait_seconds"),
            ):
                parts = [_HEADS[name]]
                for cls in sorted(self.classes):
                    t = self.classes[cls]
                    parts.extend(
                        _histogram(
                            name,
                            f'class="{label_value(cls)}"',
                            getattr(t, fast),
                            getattr(t, slow),
                            getattr(t, seconds),
                        )
                    )
                yield "".join(parts)

        def gauge_rows(name: str, read: Callable[[Totals], float]) -> Callable[[], str]:
            def rows() -> str:
                return "".join(
                    f'{name}{{actor="{e}"}} {number(read(shared[label]))}\n'
                    for e, label in labels
                    if shared[label].states
                )

            return rows

        yield from family(
            _HEADS["understudy_mailbox_depth"],
            lambda e, cell: (
                f'understudy_mailbox_depth{{actor="{e}"}} {_count(len(cell.mailbox.queue))}\n'
            ),
            gauge_rows("understudy_mailbox_depth", lambda t: t.depth),
            single,
            lambda part: [
                f'understudy_mailbox_depth{{actor="{e}"}} {d}.0\n'
                if (d := len(c.mailbox.queue)) < 1_000_000
                else f'understudy_mailbox_depth{{actor="{e}"}} {_count(d)}\n'
                for e, c in part
            ],
        )
        yield from family(
            _HEADS["understudy_mailbox_capacity"],
            lambda e, cell: (
                f'understudy_mailbox_capacity{{actor="{e}"}} {_count(cell.mailbox.capacity)}\n'
            ),
            gauge_rows("understudy_mailbox_capacity", lambda t: t.capacity),
            single,
            lambda part: [
                f'understudy_mailbox_capacity{{actor="{e}"}} {n}.0\n'
                if (n := c.mailbox.capacity) < 1_000_000
                else f'understudy_mailbox_capacity{{actor="{e}"}} {_count(n)}\n'
                for e, c in part
            ],
        )

        def fill_line(e: str, cell: Cell) -> str:
            depth = len(cell.mailbox.queue)
            if not depth:
                return f'understudy_mailbox_fill_ratio{{actor="{e}"}} 0.0\n'
            fill = number(depth / cell.mailbox.capacity)
            return f'understudy_mailbox_fill_ratio{{actor="{e}"}} {fill}\n'

        yield from family(
            _HEADS["understudy_mailbox_fill_ratio"],
            fill_line,
            gauge_rows("understudy_mailbox_fill_ratio", lambda t: t.fill),
            single,
            lambda part: [
                f'understudy_mailbox_fill_ratio{{actor="{e}"}} 0.0\n'
                if not c.mailbox.queue
                else fill_line(e, c)
                for e, c in part
            ],
        )

        def by_reason(name: str, key: str, field: str) -> Callable[[str, Cell], str]:
            def line(e: str, cell: Cell) -> str:
                counts = getattr(cell.meter, field)
                if not counts:
                    return ""
                return "".join(
                    f'{name}{{actor="{e}",{key}="{reason}"}} {number(n)}\n'
                    for reason, n in sorted(counts.items())
                )

            return line

        def reason_rows(name: str, key: str, field: str) -> Callable[[], str]:
            def rows() -> str:
                return "".join(
                    f'{name}{{actor="{e}",{key}="{reason}"}} {number(n)}\n'
                    for e, label in labels
                    for reason, n in sorted(getattr(shared[label], field).items())
                )

            return rows

        yield from family(
            _HEADS["understudy_restarts"],
            by_reason("understudy_restarts_total", "reason", "restarts"),
            reason_rows("understudy_restarts_total", "reason", "restarts"),
            rare,
        )
        # a live actor has not terminated: only retired totals have reasons
        yield (
            _HEADS["understudy_actors_terminated"]
            + reason_rows("understudy_actors_terminated_total", "reason", "terminated")()
        )
        yield from family(
            _HEADS["understudy_ask_timeouts"],
            lambda e, cell: (
                f'understudy_ask_timeouts_total{{actor="{e}"}} {number(cell.meter.ask_timeouts)}\n'
                if cell.meter.ask_timeouts
                else ""
            ),
            lambda: "".join(
                f'understudy_ask_timeouts_total{{actor="{e}"}} '
                f"{number(shared[label].ask_timeouts)}\n"
                for e, label in labels
                if shared[label].ask_timeouts
            ),
            rare,
        )
        yield from family(
            _HEADS["understudy_timeouts"],
            by_reason("understudy_timeouts_total", "kind", "timeouts"),
            reason_rows("understudy_timeouts_total", "kind", "timeouts"),
            rare,
        )
        yield from family(
            _HEADS["understudy_supervisor_give_ups"],
            lambda e, cell: (
                f'understudy_supervisor_give_ups_total{{actor="{e}"}} '
                f"{number(cell.meter.give_ups or 0)}\n"
                if cell.meter.give_ups is not None
                else ""
            ),
            lambda: "".join(
                f'understudy_supervisor_give_ups_total{{actor="{e}"}} '
                f"{number(shared[label].give_ups or 0)}\n"
                for e, label in labels
                if shared[label].give_ups is not None
            ),
            rare,
        )

        def backoff_line(e: str, cell: Cell) -> str:
            waits = cell.meter.backoff_waits
            if waits is None:
                return ""
            return "".join(
                _histogram(
                    "understudy_backoff_wait_seconds",
                    f'actor="{e}"',
                    waits[0],
                    waits[1:],
                    cell.meter.backoff_seconds,
                )
            )

        def backoff_rows() -> str:
            parts: list[str] = []
            for e, label in labels:
                t = shared[label]
                if t.backoff_waits is not None:
                    parts.extend(
                        _histogram(
                            "understudy_backoff_wait_seconds",
                            f'actor="{e}"',
                            t.backoff_waits[0],
                            t.backoff_waits[1:],
                            t.backoff_seconds,
                        )
                    )
            return "".join(parts)

        yield from family(
            _HEADS["understudy_backoff_wait_seconds"], backoff_line, backoff_rows, rare
        )

        counts = metrics.dead_letters.counts
        yield _HEADS["understudy_dead_letters"] + "".join(
            f'understudy_dead_letters_total{{reason="{label_value(reason)}"}} '
            f"{number(counts.get(reason, 0))}\n"
            for reason in sorted({*DEAD_LETTER_REASONS, *counts})
        )
        yield (
            _HEADS["understudy_event_stream_dropped"]
            + f"understudy_event_stream_dropped_total {number(metrics.events.dropped)}\n"
        )

        for extra, values in zip(metrics.actor_metrics, self.extra_shared, strict=True):
            name = extra.name.removesuffix("_total") if extra.kind == "counter" else extra.name

            def extra_line(
                e: str,
                cell: Cell,
                full: str = extra.name,
                read: Callable[[Cell], float] = extra.read,
            ) -> str:
                return f'{full}{{actor="{e}"}} {number(read(cell))}\n'

            def extra_rows(full: str = extra.name, values: dict[str, float] = values) -> str:
                return "".join(
                    f'{full}{{actor="{label_value(label)}"}} {number(values[label])}\n'
                    for label in sorted(values)
                )

            yield from family(
                _head(name, extra.kind, extra.documentation), extra_line, extra_rows, single
            )

        # last: it counts the failures of this very scrape too
        yield (
            _HEADS["understudy_scrape_errors"]
            + f"understudy_scrape_errors_total {number(metrics.scrape_errors + self.failed)}\n"
        )


def _count(n: int) -> str:
    """An int sample value, as :func:`number` writes it (the fast path)."""
    return f"{n}.0" if n < 1_000_000 else floatToGoString(n)


def _histogram_count(fast: int, slow: list[int] | None) -> int:
    return fast + (sum(slow) if slow is not None else 0)


def _gauge(totals: Totals, name: str) -> float:
    if name == "understudy_mailbox_depth":
        return totals.depth
    if name == "understudy_mailbox_capacity":
        return totals.capacity
    return totals.fill


class RuntimeCollector:
    """A ``prometheus_client`` collector over one runtime's families, for consumers of the
    registry (``generate_latest(rt.metrics.registry)``, a host's ``make_asgi_app``): the
    same text as :meth:`Metrics.exposition` writes, parsed back into families. The
    runtime's own endpoint writes the text directly instead."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self.muted: set[int] = set()
        """Threads in which :meth:`collect` yields nothing (while the runtime writes its own
        text there); a scrape of the registry in another thread still sees everything."""

    def describe(self) -> Iterator[Metric]:
        """The families, without samples (lets a registry detect a duplicate runtime)."""
        for name, kind, doc in _FAMILIES:
            yield Metric(name, doc, kind)
        for extra in self._metrics.actor_metrics:
            name = extra.name.removesuffix("_total") if extra.kind == "counter" else extra.name
            yield Metric(name, extra.documentation, extra.kind)

    def collect(self) -> Iterator[Metric]:
        if threading.get_ident() in self.muted:
            return
        scrape = Scrape(self._metrics)
        text = "".join(chunk for chunk in scrape.chunks() if chunk is not None)
        scrape.report()
        yield from text_string_to_metric_families(text)

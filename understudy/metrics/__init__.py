"""Prometheus metrics of a runtime: ``rt.metrics``.

Every runtime has its own :class:`prometheus_client.CollectorRegistry` (``rt.metrics.registry``)
so two runtimes in one process never collide; ``Runtime(metrics_registry=REGISTRY)`` uses
another one, such as the process-global registry. The hot path keeps plain counters on each
actor cell (:mod:`understudy.meter`); a collector sums them per ``actor`` label at scrape
time, so a message costs no lock and no prometheus_client call, and a scrape costs work
proportional to the live actors.

The ``actor`` label is a named actor's name, or the class of an unnamed one: ten thousand
unnamed workers of one class are one label value. (Give per-request actors no name, or the
label set grows with the requests.) Counters keep the totals of actors that stopped, so they
never go backwards.

Every metric is documented in ``docs/metrics.md``; a test checks that table against a scrape.

Other layers add their metrics in one of two ways:

* :meth:`Metrics.add_actor_metric` with an :class:`ActorMetric`: a per-actor counter or gauge
  read from each live cell at scrape time, labelled and aggregated like the built-in ones;
* :meth:`Metrics.add_source` with any ``prometheus_client`` collector (an object with
  ``collect()`` yielding metric families, and ideally ``describe()``): runtime-wide
  families such as a store's commit latency histogram. Keep its counters as plain numbers
  updated on the hot path and build the families in ``collect()``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from understudy.meter import BUCKETS, count_restart
from understudy.metrics._collector import (
    OUTCOMES,
    ActorMetric,
    RuntimeCollector,
    Scrape,
    Totals,
    label_of,
    label_value,
    state_of,
)
from understudy.metrics._tree import ActorInfo, tree_of

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from understudy.actors import Cell
    from understudy.events import DeadLetters, EventStream
    from understudy.runtime import Runtime
    from understudy.web import Server

logger = logging.getLogger("understudy.metrics")

Endpoint = tuple[str, int]
"""``(host, port)`` of the HTTP endpoint; port 0 picks a free port."""


def check_endpoint(value: object) -> Endpoint | None:
    """``Runtime(metrics=)``: True/False, or ``(host, port)``; a clear error otherwise."""
    if isinstance(value, bool):
        return None
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and value[0]
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    ):
        if not 0 <= value[1] <= 65535:
            raise ValueError(f"Runtime(metrics=): port must be 0..65535, not {value[1]}")
        return value[0], value[1]
    raise TypeError(
        "Runtime(metrics=) must be True, False, or a (host, port) tuple such as "
        f"('127.0.0.1', 9464), not {value!r}"
    )


class Metrics:
    """A runtime's metrics: registry, collector, optional HTTP endpoint (``rt.metrics``).

    ``on`` says whether per-message accounting runs (``Runtime(metrics=False)`` turns it
    off: messages, handler durations and mailbox waits are then not counted or exported;
    gauges, dead letters, restarts and the other counters still are).
    """

    def __init__(
        self,
        *,
        dead_letters: DeadLetters,
        events: EventStream,
        on: bool,
        endpoint: Endpoint | None,
        registry: CollectorRegistry | None,
        runtime: Runtime | None = None,
    ) -> None:
        import understudy  # the package is fully imported by the time a runtime is made

        self.on = on
        self.version: str = understudy.__version__
        self.dead_letters = dead_letters
        self.events = events
        self.runtime = runtime
        """The runtime these metrics are of (its health is served beside them)."""
        self.cells: dict[int, Cell] = {}
        """Every live actor cell, by id (spawn order)."""
        self.retired: dict[str, Totals] = {}
        """Counter totals of stopped actors, by ``actor`` label."""
        self.retired_classes: dict[str, Totals] = {}
        """Latency histograms of stopped actors, by class."""
        self.scrape_errors = 0
        """Actors left out of a scrape because reading them failed."""
        self.escaped_labels: dict[int, str] = {}
        """Named live actors' ``actor`` label as the text format writes it, by cell id
        (computed at their first scrape, dropped when they stop)."""
        self.actor_metrics: list[ActorMetric] = []
        self._retired_extra: dict[str, dict[str, float]] = {}
        self._sources: list[Collector] = []
        self._endpoint = endpoint
        self._server: Server | None = None
        self._app: Any = None
        self._scraping: _SharedScrape | None = None
        self._own_registry = registry is None
        self.registry: CollectorRegistry = CollectorRegistry() if registry is None else registry
        """The registry every metric of this runtime is in (scrape this one)."""
        self._collector = RuntimeCollector(self)
        if self._own_registry:
            self.registry.register(self._collector)
        # a shared registry gets the collector while the runtime runs (see bind and aclose)

    # -- the endpoint --

    @property
    def address(self) -> Endpoint | None:
        """The bound ``(host, port)`` of the HTTP endpoint while it serves, else None."""
        return self._server.address if self._server is not None else None

    @property
    def server(self) -> Server | None:
        """The HTTP endpoint's :class:`~understudy.web.Server` while it serves (its ``open``,
        ``refused`` and ``accept_errors`` counts), else None."""
        return self._server

    @property
    def url(self) -> str | None:
        """``http://host:port`` of the endpoint while it serves, else None."""
        if self._server is None:
            return None
        host, port = self._server.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def bind(self) -> None:
        """The runtime is entering: join a shared registry, and listen on the endpoint's
        address if one was asked for.

        Raises ``ValueError`` if a shared registry already holds a running runtime, and
        ``OSError`` if the endpoint cannot bind; nothing is left registered or open then.
        """
        # entered again: the sources of the last run go (the runtime adds them anew)
        for source in self._sources:
            if self._own_registry:
                self.registry.unregister(source)
        self._sources.clear()
        if not self._own_registry:
            self.registry.register(self._collector)  # DuplicateTimeseries: a ValueError
        if self._endpoint is not None:
            from understudy.web import Server

            try:
                self._server = Server.bind(self.asgi_app(), *self._endpoint)
            except BaseException:
                if not self._own_registry:
                    self.registry.unregister(self._collector)
                raise

    def serve(self, task_group: TaskGroup) -> None:
        """Serve the bound endpoint in ``task_group`` (the runtime's) until it is cancelled."""
        if self._server is not None:
            task_group.start_soon(self._server.serve, name="understudy metrics endpoint")

    async def aclose(self) -> None:
        """The runtime exited: close the endpoint (if its task did not already) and leave a
        shared registry as it was."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if not self._own_registry:
            for source in self._sources:
                self.registry.unregister(source)
            self._sources.clear()
            self.registry.unregister(self._collector)

    # -- scraping --

    def exposition(self) -> str:
        """This runtime's metrics in the Prometheus text format. Never blocks (it runs to
        the end at once: prefer :meth:`scrape` on the event loop for many actors)."""
        scrape = Scrape(self)
        text = "".join(chunk for chunk in scrape.chunks() if chunk is not None)
        scrape.report()
        return text + self._sources_text().decode("utf-8")

    async def scrape(self) -> list[bytes]:
        """This runtime's metrics as UTF-8 text in chunks, built on the event loop with a
        checkpoint every :data:`~understudy.metrics._collector.CHUNK` actors, so that a
        scrape of many actors does not stall them. Concurrent calls share one build (a
        scrape storm costs one scrape). Never raises for one actor or source that cannot be
        read: it is left out, logged and counted in ``understudy_scrape_errors_total``."""
        pending = self._scraping
        while pending is not None:
            await pending.done.wait()
            if pending.complete:
                return pending.chunks
            pending = self._scraping  # its caller was cancelled mid-build: build anew
        pending = self._scraping = _SharedScrape()
        try:
            scrape = Scrape(self)
            for chunk in scrape.chunks():
                if chunk is None:
                    await anyio.lowlevel.checkpoint()
                else:
                    pending.chunks.append(chunk.encode("utf-8"))
            scrape.report()
            pending.chunks.append(self._sources_text())
            pending.complete = True
        finally:
            self._scraping = None
            pending.done.set()
        return pending.chunks

    def _sources_text(self) -> bytes:
        """The families of every other collector in the registry (a store's, a layer's)."""
        ident = threading.get_ident()
        self._collector.muted.add(ident)
        try:
            return generate_latest(self.registry)
        except Exception:
            logger.exception("metrics: a collector failed; serving the others")
        finally:
            self._collector.muted.discard(ident)
        parts = []
        for source in self._sources:
            try:
                parts.append(generate_latest(_Only(source)))
            except Exception:
                self.scrape_errors += 1
        return b"".join(parts)

    def asgi_app(self) -> Callable[..., Any]:
        """The runtime's ASGI app: ``/metrics``, ``/tree``, ``/healthz``, ``/readyz`` (see
        :mod:`understudy.web`). The same object on every call; mount it in a host app
        (``app.mount("/runtime", rt.metrics.asgi_app())``). It is what the built-in
        endpoint serves."""
        if self._app is None:
            from understudy.web import app_of

            self._app = app_of(self)
        app: Callable[..., Any] = self._app
        return app

    def tree(self) -> list[ActorInfo]:
        """The live actors as trees of :class:`ActorInfo`, top-level ones in spawn order."""
        return tree_of(self.cells.values())

    # -- extension points for other layers --

    def add_actor_metric(self, metric: ActorMetric) -> None:
        """Export a per-actor counter or gauge (see :class:`ActorMetric`).

        Raises ``ValueError`` if a metric of that name was already added.
        """
        if any(m.name == metric.name for m in self.actor_metrics):
            raise ValueError(f"an actor metric named {metric.name!r} was already added")
        self.actor_metrics.append(metric)
        self._retired_extra[metric.name] = {}

    def add_source(self, source: Collector) -> None:
        """Export the families a ``prometheus_client`` collector yields, on every scrape.

        Raises ``prometheus_client``'s ``ValueError`` for a name already registered (when
        the source has ``describe()``).
        """
        self.registry.register(source)
        self._sources.append(source)

    def retired_extra(self, metric: ActorMetric) -> dict[str, float]:
        """Retired totals of an added counter, by label (internal)."""
        return self._retired_extra.get(metric.name, {}) if metric.kind == "counter" else {}

    # -- the runtime's side --

    def track(self, cell: Cell) -> None:
        """A cell was registered: count it from now on. Never blocks."""
        self.cells[cell.id] = cell

    def _evict_oldest(self) -> None:
        """Fold the oldest retired label's totals into :data:`EVICTED` (core, wave 2: what
        is kept per distinct stopped name is bounded; sums over labels never go back)."""
        oldest = next(iter(self.retired))
        if oldest == EVICTED:
            self.retired[EVICTED] = self.retired.pop(EVICTED)  # keep it; evict the next
            oldest = next(iter(self.retired))
        folded = self.retired.pop(oldest)
        into = self.retired.get(EVICTED)
        if into is None:
            into = self.retired[EVICTED] = Totals()
        into.add_counters(folded)
        for values in self._retired_extra.values():
            if oldest in values:
                values[EVICTED] = values.get(EVICTED, 0.0) + values.pop(oldest)

    def retire(self, cell: Cell) -> None:
        """A cell stopped for good: fold its counters into its label's retired totals."""
        if self.cells.pop(cell.id, None) is None:
            return
        self.escaped_labels.pop(cell.id, None)
        label = label_of(cell)
        totals = self.retired.get(label)
        if totals is None:
            totals = self.retired[label] = Totals()
            if len(self.retired) > RETIRED_NAMES:
                self._evict_oldest()
        totals.add_meter(cell.meter)
        cls = cell.actor_class.__qualname__
        by_class = self.retired_classes.get(cls)
        if by_class is None:
            by_class = self.retired_classes[cls] = Totals()
        by_class.add_histograms(cell.meter)
        if cell.exit_reason is not None:
            reason = cell.exit_reason
            totals.terminated[reason] = totals.terminated.get(reason, 0) + 1
        for metric in self.actor_metrics:
            if metric.kind == "counter":
                values = self._retired_extra[metric.name]
                values[label] = values.get(label, 0.0) + metric.read(cell)


RETIRED_NAMES = 1000
"""Stopped actor labels whose totals are kept one by one (core, wave 2): beyond that the
oldest are summed under ``actor="~retired"``, so millions of distinct stopped names (entities)
cost a bounded amount of memory."""

EVICTED = "~retired"


class _SharedScrape:
    """One scrape in progress, shared by the concurrent callers of :meth:`Metrics.scrape`."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.complete = False
        self.chunks: list[bytes] = []


class _Only:
    """A registry-like view of one collector (for ``generate_latest``)."""

    def __init__(self, collector: Collector) -> None:
        self._collector = collector

    def collect(self) -> Iterable[Metric]:
        return self._collector.collect()


__all__ = [
    "BUCKETS",
    "OUTCOMES",
    "ActorInfo",
    "ActorMetric",
    "Endpoint",
    "Metrics",
    "check_endpoint",
    "count_restart",
    "label_of",
    "label_value",
    "state_of",
]

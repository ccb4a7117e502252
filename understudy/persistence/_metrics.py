"""The store's Prometheus families, built at scrape time from :class:`StoreStats`.

The writer keeps plain numbers (counters and per-bucket counts, updated once per group); this
collector turns them into metric families when Prometheus scrapes, so committing costs no
``prometheus_client`` call. A runtime with a store adds it with ``rt.metrics.add_source``.
Every family is documented in ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import accumulate

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from understudy.persistence._store import (
    COMMIT_SECONDS_BUCKETS,
    GROUP_SIZE_BUCKETS,
    SNAPSHOT_BYTES_BUCKETS,
    Store,
)


def _histogram(
    name: str, documentation: str, bounds: tuple[float, ...], counts: list[int], total: float
) -> HistogramMetricFamily:
    cumulative = list(accumulate(counts))
    buckets = [(str(float(bound)), count) for bound, count in zip(bounds, cumulative, strict=False)]
    buckets.append(("+Inf", cumulative[-1]))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=total)


class StoreCollector:
    """Exports one store's counters and histograms (no labels: one store per runtime)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> Iterable[Metric]:
        return list(self.collect())

    def collect(self) -> Iterator[Metric]:
        stats = self.store.stats
        yield _histogram(
            "understudy_store_commit_duration_seconds",
            "Time to commit one group of snapshots and events to SQLite.",
            COMMIT_SECONDS_BUCKETS,
            stats.commit_buckets,
            stats.commit_seconds,
        )
        yield _histogram(
            "understudy_store_commit_group_size",
            "Actors written per committed group (after collapsing several of one actor).",
            GROUP_SIZE_BUCKETS,
            stats.group_buckets,
            stats.snapshots,
        )
        yield _histogram(
            "understudy_store_snapshot_bytes",
            "Size of each encoded snapshot committed.",
            SNAPSHOT_BYTES_BUCKETS,
            stats.snapshot_buckets,
            stats.snapshot_bytes,
        )
        for name, documentation, value in (
            ("understudy_store_commits", "Groups committed.", stats.commits),
            (
                "understudy_store_write_errors",
                "Groups that failed for good (their askers got PersistenceError).",
                stats.failed_groups,
            ),
            (
                "understudy_store_retries",
                "Commit attempts repeated after the database was busy or locked.",
                stats.retries,
            ),
            (
                "understudy_store_stale_writes",
                "Writes refused by the version check (StaleState: another writer).",
                stats.stale,
            ),
            (
                "understudy_store_journal_events",
                "Events committed to the journal of event-sourced actors.",
                stats.events,
            ),
            (
                "understudy_store_log_entries",
                "Entries committed to the Log fields of persistent actors (one row each).",
                stats.log_entries,
            ),
            (
                "understudy_store_budget_writes",
                "Persistent budgets' figures committed (one per changed budget per group).",
                stats.budget_writes,
            ),
        ):
            yield CounterMetricFamily(name, documentation, value=value)


__all__ = ["StoreCollector"]

"""The harness: run each benchmark's two sides, take medians, print markdown tables.

A :class:`Benchmark` is a pair of async functions measured the same way: ``ours`` (understudy)
and ``baseline`` (the bare anyio equivalent). Each returns a :data:`Sample`, a dict from metric
key to value. Every run gets a fresh event loop (``anyio.run``) after a ``gc.collect()``; the two
sides alternate which goes first, so drift in the machine's load hits both alike. A metric's
figure is the median of its values over the repeats, and its ratio is understudy ÷ baseline.
"""

from __future__ import annotations

import gc
import math
import statistics
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial

import anyio

TIMES = "\N{MULTIPLICATION SIGN}"

Sample = dict[str, float]
"""One run's measurements: metric key -> value."""

Measure = Callable[..., Awaitable[Sample]]
"""An async function taking the benchmark's sizes as keyword arguments."""


@dataclass(frozen=True)
class Metric:
    """One figure a benchmark reports; ``target`` bounds the ratio understudy ÷ baseline."""

    key: str
    label: str
    unit: str
    higher_is_better: bool
    target: float | None = None
    fmt: str = "{:,.0f}"

    def show(self, value: float) -> str:
        return self.fmt.format(value)

    def show_target(self) -> str:
        if self.target is None:
            return "—"
        return f"{'≥' if self.higher_is_better else '≤'} {self.target:g}{TIMES}"


@dataclass(frozen=True)
class Benchmark:
    """A named pair of measurements and the sizes they run at (full and ``--quick``)."""

    name: str
    title: str
    metrics: tuple[Metric, ...]
    ours: Measure
    baseline: Measure
    sizes: Mapping[str, int]
    quick_sizes: Mapping[str, int]


@dataclass(frozen=True)
class Row:
    """The median figures of one metric of one benchmark on one backend."""

    benchmark: Benchmark
    backend: str
    metric: Metric
    ours: float
    baseline: float

    @property
    def ratio(self) -> float:
        """understudy ÷ baseline (infinite when the baseline measured zero and ours did not:
        e.g. no garbage collection at all on the baseline side of a small run)."""
        if self.baseline == 0:
            return 1.0 if self.ours == 0 else math.inf
        return self.ours / self.baseline

    @property
    def passed(self) -> bool | None:
        """Whether the ratio meets the target; None when the metric has no target."""
        target = self.metric.target
        if target is None:
            return None
        return self.ratio >= target if self.metric.higher_is_better else self.ratio <= target


def check(actual: object, expected: object, what: str) -> None:
    """Raise if a benchmark's work came out wrong: a wrong answer makes its timing worthless."""
    if actual != expected:
        raise RuntimeError(f"{what}: expected {expected!r}, got {actual!r}")


def run_once(measure: Measure, backend: str, sizes: Mapping[str, int]) -> Sample:
    """One run of one side on a fresh event loop."""
    gc.collect()
    sample: Sample = anyio.run(partial(measure, **sizes), backend=backend)
    return sample


def run_benchmark(benchmark: Benchmark, backend: str, *, repeats: int, quick: bool) -> list[Row]:
    """Run both sides ``repeats`` times on ``backend`` and return one row per metric."""
    sizes = benchmark.quick_sizes if quick else benchmark.sizes
    sides = [("understudy", benchmark.ours), ("baseline", benchmark.baseline)]
    if not quick:  # warm up imports, caches and the allocator; not recorded
        for _, side in sides:
            run_once(side, backend, benchmark.quick_sizes)
    samples: dict[str, list[Sample]] = {"understudy": [], "baseline": []}
    for repeat in range(repeats):
        for label, side in sides if repeat % 2 == 0 else reversed(sides):
            progress(f"  {benchmark.name} on {backend}: {label}, run {repeat + 1} of {repeats}")
            samples[label].append(run_once(side, backend, sizes))
    return [
        Row(
            benchmark,
            backend,
            metric,
            ours=statistics.median(s[metric.key] for s in samples["understudy"]),
            baseline=statistics.median(s[metric.key] for s in samples["baseline"]),
        )
        for metric in benchmark.metrics
    ]


def progress(text: str) -> None:
    """Say what is running, on stderr, so stdout stays a clean markdown report."""
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ tables


def markdown(header: list[str], rows: Iterable[list[str]]) -> str:
    """A markdown table; the first two columns are left-aligned, the others right-aligned."""
    lines = [
        "| " + " | ".join(header) + " |",
        "| --- | --- |" + " ---: |" * (len(header) - 2),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(row: Row) -> str:
    if row.passed is None:
        return ""
    return "pass" if row.passed else "**FAIL**"


def cells(first: str, row: Row) -> list[str]:
    metric = row.metric
    return [
        first,
        row.backend,
        metric.show(row.ours),
        metric.show(row.baseline),
        f"{row.ratio:.2f}{TIMES}",
        metric.show_target(),
        verdict(row),
    ]


def detail_table(rows: list[Row]) -> str:
    """Every metric of one benchmark, on each backend."""
    header = ["metric", "backend", "understudy", "baseline", "ratio", "target", "result"]
    return markdown(header, (cells(f"{r.metric.label} ({r.metric.unit})", r) for r in rows))


def summary_table(rows: list[Row]) -> str:
    """The metrics that have a target, across all benchmarks."""
    header = ["benchmark", "backend", "understudy", "baseline", "ratio", "target", "result"]
    return markdown(
        header,
        (
            cells(f"{r.benchmark.name}: {r.metric.label} ({r.metric.unit})", r)
            for r in rows
            if r.metric.target is not None
        ),
    )

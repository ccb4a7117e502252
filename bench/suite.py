"""The benchmarks ``python -m bench`` runs, in order. Add a new one here."""

from __future__ import annotations

from bench import ask, fan_in, llm, resilience, spawn, supervision, tell
from bench.harness import Benchmark

BENCHMARKS: list[Benchmark] = [
    tell.BENCHMARK,
    fan_in.BENCHMARK,
    ask.BENCHMARK,
    spawn.BENCHMARK,
    supervision.RESTART,
    supervision.SUPERVISED_TELL,
    resilience.TELL,
    resilience.ASK,
    resilience.REFUSAL,
    llm.OVERHEAD,
    llm.CONCURRENCY,
]

"""The benchmarks ``python -m bench`` runs, in order. Add a new one here."""

from __future__ import annotations

from bench import ask, delta_state, fan_in, resilience, spawn, supervision, tell
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
    # store (wave 2)
    delta_state.BENCHMARK,
    delta_state.LIST,
]

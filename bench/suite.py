"""The benchmarks ``python -m bench`` runs, in order. Add a new one here."""

from __future__ import annotations

from bench import (
    agents,
    ask,
    delta_state,
    fan_in,
    llm,
    pools,
    resilience,
    scrape,
    spawn,
    supervision,
    tell,
)
from bench.harness import Benchmark

BENCHMARKS: list[Benchmark] = [
    tell.BENCHMARK,
    fan_in.BENCHMARK,
    ask.BENCHMARK,
    spawn.BENCHMARK,
    supervision.RESTART,
    supervision.SUPERVISED_TELL,
    supervision.TERMINATE,
    resilience.TELL,
    resilience.ASK,
    resilience.REFUSAL,
    agents.VS_MEMORY,
    agents.VS_SQLITE,
    scrape.SCRAPE,
    scrape.STORM,
    delta_state.BENCHMARK,
    delta_state.LIST,
    pools.THROUGHPUT,
    pools.ASK,
    pools.LOAD,
    pools.LOAD_VS_ACTORS,
    pools.FLOOR,
    pools.MEMORY,
    llm.OVERHEAD,
    llm.CONCURRENCY,
]

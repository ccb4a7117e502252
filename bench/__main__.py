"""``python -m bench``: run the benchmark suite and print markdown tables.

Each benchmark runs on each backend, understudy and its baseline alternately, median of
``--repeats`` runs. A table per benchmark is printed as it finishes, then a summary of the
figures that have a target. Progress goes to stderr. The exit status is 0 even when a target
is missed (figures on a shared machine are noisy); it is non-zero if a benchmark breaks.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from importlib.metadata import version

from bench.harness import Row, detail_table, progress, run_benchmark, summary_table
from bench.suite import BENCHMARKS

BACKENDS = ("asyncio", "trio")


def parse_args() -> argparse.Namespace:
    names = [b.name for b in BENCHMARKS]
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Run the understudy benchmark suite."
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and 1 run: a smoke test (CI), not data"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=names,
        metavar="NAME",
        help=f"run only this benchmark (repeatable); one of: {', '.join(names)}",
    )
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    parser.add_argument(
        "--repeats", type=int, help="runs per side; the median is reported (default 5, quick 1)"
    )
    args = parser.parse_args()
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    benchmarks = [b for b in BENCHMARKS if args.only is None or b.name in args.only]
    mode = "quick (smoke test, not data)" if args.quick else "full"
    print("# understudy benchmarks\n")
    print(
        f"understudy {version('understudy')}, Python {platform.python_version()}, "
        f"anyio {version('anyio')}, trio {version('trio')}, msgspec {version('msgspec')}; "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; "
        f"{mode}, median of {args.repeats}. Ratio = understudy ÷ baseline.\n",
        flush=True,
    )
    began = time.perf_counter()
    rows: list[Row] = []
    for benchmark in benchmarks:
        sizes = benchmark.quick_sizes if args.quick else benchmark.sizes
        shown = ", ".join(f"{k}={v:,}" for k, v in sizes.items())
        progress(f"{benchmark.name} ({shown})")
        found: list[Row] = []
        for backend in backends:
            found += run_benchmark(benchmark, backend, repeats=args.repeats, quick=args.quick)
        print(f"## {benchmark.name}: {benchmark.title} ({shown})\n")
        print(detail_table(found) + "\n", flush=True)
        rows += found
    print("## summary\n")
    print(summary_table(rows) + "\n")
    print(f"Took {time.perf_counter() - began:.0f} s.")


if __name__ == "__main__":
    main()

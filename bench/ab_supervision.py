"""A/B of the supervision figures against another checkout, in one run.

``python -m bench.ab_supervision BASE_DIR [ROUNDS]`` alternates processes that run this
checkout's and ``BASE_DIR``'s ``bench.supervision`` (supervised tell of 200,000 messages,
restart latency over 2,000 crashes, on asyncio and trio), ``ROUNDS`` times each (default 14),
and prints the medians and the ratio this checkout ÷ base. Make the base with
``git worktree add --detach /tmp/base main``; the same interpreter runs both sides, each
importing ``understudy`` from its own directory.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from bench.harness import TIMES

CODE = r"""
import json, anyio
from bench.supervision import restart_ours, tell_supervised
out = {}
for backend in ("asyncio", "trio"):
    out[backend + " supervised tell (msgs/s)"] = anyio.run(
        tell_supervised, 200_000, backend=backend
    )["throughput"]
    restart = anyio.run(restart_ours, 2_000, backend=backend)
    out[backend + " restart p50 (µs)"] = restart["p50"]
    out[backend + " restart p99 (µs)"] = restart["p99"]
print(json.dumps(out))
"""


def measure(directory: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CODE], cwd=directory, capture_output=True, text=True, check=True
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    sides = {"base": sys.argv[1], "this": os.getcwd()}
    rounds = int(sys.argv[2]) if len(sys.argv) == 3 else 14
    results: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    for i in range(rounds):
        for side in list(sides) if i % 2 == 0 else list(reversed(sides)):
            results[side].append(measure(sides[side]))
            print(f"round {i + 1}/{rounds}: {side}", file=sys.stderr)
    print(f"| figure (median of {rounds} alternating runs) | base | this | this ÷ base |")
    print("| --- | ---: | ---: | ---: |")
    for key in results["base"][0]:
        base = statistics.median(r[key] for r in results["base"])
        this = statistics.median(r[key] for r in results["this"])
        print(f"| {key} | {base:,.1f} | {this:,.1f} | {this / base:.2f}{TIMES} |")


if __name__ == "__main__":
    main()

"""The bank over time: acknowledged transfers/s per window must not fall as history grows.

::

    python -m bench.bank_throughput [--duration 60] [--window 10] [--chaos] [--quick]
                                    [--backend asyncio|trio] [--accounts 100]

Runs the bank of :mod:`understudy.demo.bank` (persistent accounts, 8 tellers, 24 clients, a
SQLite file in a temporary directory) for ``--duration`` seconds and counts the transfers
acknowledged in each ``--window``-second window. Each account's transfer ids are append-only
``us.Log`` fields (one row per id), so a message's snapshot does not grow with the history;
before that change the whole history was snapshotted after every message and throughput fell
from 7,941/s in the first second to 3,383/s at 20 s (issue 12, item 18). ``--chaos`` adds the
monkey of ``understudy demo`` (kills, faults, failed store writes).

Reported per window: acknowledged transfers per wall-clock second, per CPU second of the
process (all its threads, SQLite's included), and the bytes of state the store committed per
transfer (snapshots, log rows: independent of the machine's load, it shows whether what is
written per message grows with the history). Target: the last window ≥ 0.8x the first, on the
CPU figure: on a shared machine the wall figure swings with other processes' load, while the
cost of a transfer in CPU is what grows if state grows. Then the bank recovers and its
invariants are checked. Exit status 1 if the target is missed or an invariant broke.
``--quick`` (CI): 6 s in 2-second windows, a smoke test of the same code, not data (its exit
status says only whether the invariants held).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import anyio

import understudy as us
from bench.harness import TIMES
from understudy.demo import bank

TELLERS = 8
CLIENTS = 24
TARGET = 0.8


async def run(
    db: Path, *, duration: float, window: float, chaos: bool, accounts: int, seed: int
) -> tuple[list[tuple[float, float, float]], bank.Verdict]:
    tally = bank.Tally()
    rates: list[tuple[float, float, float]] = []
    async with us.Runtime(store=db) as rt:
        store = rt.store
        assert store is not None
        give_ups = rt.events.subscribe(us.SupervisorGaveUp, buffer=1_000)
        with give_ups:
            await rt.start(bank.bank_tree(rt, accounts, TELLERS))
            async with anyio.create_task_group() as load:
                load.start_soon(
                    lambda: bank.run_clients(
                        rt, tally, accounts=accounts, tellers=TELLERS, clients=CLIENTS, seed=seed
                    )
                )
                monkey = us.Chaos(rt, seed=seed).monkey(
                    kill_rate=50, inject_rate=5, store_fail_rate=1
                )
                if chaos:
                    await monkey.__aenter__()
                try:
                    windows = max(1, round(duration / window))
                    for _ in range(windows):
                        before = len(tally.acknowledged)
                        started, cpu = time.perf_counter(), time.process_time()
                        written = store.stats.bytes_written
                        await anyio.sleep(window)
                        done = len(tally.acknowledged) - before
                        wall = done / (time.perf_counter() - started)
                        per_cpu = done / max(time.process_time() - cpu, 1e-9)
                        per_transfer = (store.stats.bytes_written - written) / max(done, 1)
                        rates.append((wall, per_cpu, per_transfer))
                        print(
                            f"  window {len(rates)}: {wall:,.0f} transfers/s, "
                            f"{per_cpu:,.0f} per CPU second, {per_transfer:,.0f} B/transfer",
                            file=sys.stderr,
                        )
                finally:
                    if chaos:
                        await monkey.__aexit__(None, None, None)
                load.cancel_scope.cancel()
            verdict = await bank.check_invariants(
                rt,
                tally,
                accounts=accounts,
                tellers=TELLERS,
                gave_up=len(list(iter(give_ups.get_nowait, None))),
            )
    return rates, verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bank_throughput", description=__doc__)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--window", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--chaos", action="store_true", help="run the chaos monkey too")
    parser.add_argument("--quick", action="store_true", help="6 s in 2 s windows (CI)")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--accounts", type=int, default=100, help="accounts (default 100)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.window = 6.0, 2.0
    if not 0 < args.window <= args.duration or args.accounts < 2:
        parser.error("need 0 < --window <= --duration and --accounts >= 2")
    log = logging.getLogger("understudy")
    level = log.level
    log.setLevel(logging.CRITICAL)  # chaos restarts log tracebacks
    try:
        with tempfile.TemporaryDirectory(prefix="understudy-bank-") as workdir:
            rates, verdict = us.run(
                lambda: run(
                    Path(workdir) / "bank.db",
                    duration=args.duration,
                    window=args.window,
                    chaos=args.chaos,
                    accounts=args.accounts,
                    seed=args.seed,
                ),
                backend=args.backend,
            )
    finally:
        log.setLevel(level)
    wall_ratio = rates[-1][0] / rates[0][0] if rates[0][0] else 0.0
    ratio = rates[-1][1] / rates[0][1] if rates[0][1] else 0.0
    mode = "quick (smoke test, not data)" if args.quick else "full"
    print(
        f"Bank throughput, {args.backend}, {mode}: {args.accounts} accounts, {TELLERS} tellers, "
        f"{CLIENTS} clients, chaos {'on' if args.chaos else 'off'}\n"
    )
    print(
        "| window | transfers acknowledged /s | per CPU second of the process "
        "| state bytes committed per transfer |"
    )
    print("| --- | ---: | ---: | ---: |")
    for i, (wall, per_cpu, per_transfer) in enumerate(rates):
        span = f"{i * args.window:g}-{(i + 1) * args.window:g} s"
        print(f"| {span} | {wall:,.0f} | {per_cpu:,.0f} | {per_transfer:,.0f} |")
    passed = ratio >= TARGET
    print(
        f"\nlast ÷ first: {wall_ratio:.2f}{TIMES} per wall second, {ratio:.2f}{TIMES} per CPU "
        f"second (target ≥ {TARGET}{TIMES} on the CPU figure, which other processes' load "
        "does not skew): "
        f"{'pass' if passed else '**FAIL**'}"
    )
    print("invariants: " + ("ok" if verdict.ok else "**BROKEN** " + "; ".join(verdict.lines())))
    if args.quick:  # a smoke test: six seconds of a noisy machine say nothing about a trend
        return 0 if verdict.ok else 1
    return 0 if passed and verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())

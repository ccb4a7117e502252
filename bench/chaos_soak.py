"""Chaos soak: the bank under a chaos monkey for a while; throughput, recovery, losses.

::

    python -m bench.chaos_soak --duration 60 --kill-rate 50 [--backend asyncio|trio]
                               [--seed N] [--accounts 200]

Runs the bank of :mod:`understudy.demo.bank` in one process (a SQLite file in a temporary
directory, 8 tellers, 24 clients) under ``chaos.monkey``: kills at ``--kill-rate`` per second,
injected handler faults at a tenth of it and failed store writes at a fiftieth, as
``understudy demo`` does. Then the clients and the monkey stop, the bank recovers, the
invariants are checked, and a markdown table goes to stdout:

* acknowledged transfers per second and kills per second, over the chaos window;
* p50/p99 of the time from a kill to that actor serving again: a ``FaultInjected`` kill event
  for actor X to the next ``ActorStarted`` of X (both carry wall-clock times);
* breaker trips (the bank configures no breaker: 0, n/a);
* lost acknowledged transfers, which must be 0.

The exit status is 1 if an acknowledged transfer was lost or any invariant broke. The
``understudy`` logger is raised to CRITICAL for the run: restarts log tracebacks.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio

import understudy as us
from understudy.demo import bank

TELLERS = 8
CLIENTS = 24


@dataclass
class Recoveries:
    """Kill-to-serving times, matched from the event stream."""

    pending: dict[str, list[float]] = field(default_factory=dict)
    """Actor name -> wall-clock times of its kills not yet followed by a start."""
    seconds: list[float] = field(default_factory=list)

    def see(self, event: us.Event) -> None:
        if isinstance(event, us.FaultInjected):
            if event.kind == "kill":
                self.pending.setdefault(event.actor, []).append(event.time)
        elif isinstance(event, us.ActorStarted):
            for killed in self.pending.pop(event.actor, []):
                self.seconds.append(event.time - killed)

    @property
    def unmatched(self) -> int:
        """Kills whose actor has not served again (yet)."""
        return sum(len(times) for times in self.pending.values())


@dataclass
class Soak:
    """One run's figures."""

    elapsed: float
    chaos: us.Chaos
    tally: bank.Tally
    recoveries: Recoveries
    dropped_events: int
    verdict: bank.Verdict


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of ``values`` (nan when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def soak(db: Path, *, duration: float, kill_rate: float, seed: int, accounts: int) -> Soak:
    """Run the bank under the monkey for ``duration`` seconds, then recover and check it."""
    tally = bank.Tally()
    recoveries = Recoveries()
    async with us.Runtime(store=db) as rt:
        events = rt.events.subscribe(us.FaultInjected, us.ActorStarted, buffer=100_000)
        give_ups = rt.events.subscribe(us.SupervisorGaveUp, buffer=1_000)
        with events, give_ups:
            await rt.start(bank.bank_tree(rt, accounts, TELLERS))
            chaos = us.Chaos(rt, seed=seed)
            monkey = chaos.monkey(
                kill_rate=kill_rate, inject_rate=kill_rate / 10, store_fail_rate=kill_rate / 50
            )

            async def watch() -> None:
                async for event in events:
                    recoveries.see(event)

            async def clients() -> None:
                await bank.run_clients(
                    rt, tally, accounts=accounts, tellers=TELLERS, clients=CLIENTS, seed=seed
                )

            async with anyio.create_task_group() as watching:
                watching.start_soon(watch)
                started = time.monotonic()
                async with anyio.create_task_group() as load:
                    load.start_soon(clients)
                    async with monkey:
                        await anyio.sleep(duration)
                    load.cancel_scope.cancel()
                elapsed = time.monotonic() - started
                verdict = await bank.check_invariants(
                    rt,
                    tally,
                    accounts=accounts,
                    tellers=TELLERS,
                    gave_up=len(list(iter(give_ups.get_nowait, None))),
                )
                events.close()  # the watcher drains what is buffered, then ends
    return Soak(elapsed, chaos, tally, recoveries, events.dropped, verdict)


def table(result: Soak, *, backend: str, kill_rate: float, seed: int, accounts: int) -> str:
    """The run as a markdown table, under a heading that says how to replay it."""
    counts, tally, verdict = result.chaos.counts, result.tally, result.verdict
    recovery = [seconds * 1e3 for seconds in result.recoveries.seconds]
    latency = [seconds * 1e3 for seconds in tally.latencies]
    rows = [
        ("transfers acknowledged /s", f"{len(tally.acknowledged) / result.elapsed:,.0f}"),
        ("kills /s", f"{counts['kill'] / result.elapsed:,.1f}"),
        ("kill → serving again p50 (ms)", f"{percentile(recovery, 0.50):,.2f}"),
        ("kill → serving again p99 (ms)", f"{percentile(recovery, 0.99):,.2f}"),
        ("breaker trips", "0 (n/a: no breaker configured)"),
        ("lost acknowledged transfers", f"{len(verdict.lost):,}"),
        ("transfers acknowledged / refused / failed", _counts(tally)),
        ("transfer ask p50 / p99 (ms)", f"{_p(latency, 0.5)} / {_p(latency, 0.99)}"),
        ("kills / injected faults / failed store writes", _faults(counts)),
        ("kills not followed by a start", f"{result.recoveries.unmatched:,}"),
        ("events dropped (figures incomplete if > 0)", f"{result.dropped_events:,}"),
        ("money before / after", f"{verdict.money_before:,} / {verdict.money_after:,}"),
        ("applied twice / unsettled / not serving", _invariants(verdict)),
        ("supervisor give-ups", f"{verdict.gave_up}"),
        ("verdict", "ok" if verdict.ok else "**INVARIANTS BROKEN**"),
    ]
    heading = (
        f"Chaos soak, {backend}: {result.elapsed:.0f} s, kill rate {kill_rate:g}/s, "
        f"{accounts} accounts, {TELLERS} tellers, {CLIENTS} clients, seed {seed}"
    )
    lines = [heading, "", "| metric | value |", "| --- | ---: |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def _p(values: list[float], q: float) -> str:
    return f"{percentile(values, q):,.2f}"


def _counts(tally: bank.Tally) -> str:
    return f"{len(tally.acknowledged):,} / {tally.refused:,} / {tally.failed:,}"


def _faults(counts: dict[str, int]) -> str:
    return f"{counts['kill']:,} / {counts['exception']:,} / {counts['store_write']:,}"


def _invariants(verdict: bank.Verdict) -> str:
    return f"{len(verdict.duplicated)} / {verdict.unsettled} / {len(verdict.dead_actors)}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos_soak", description="Soak the bank under a chaos monkey."
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument(
        "--kill-rate", type=float, default=50.0, help="kills per second (default 50)"
    )
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--seed", type=int, default=None, help="chaos seed (default: random)")
    parser.add_argument("--accounts", type=int, default=200, help="accounts (default 200)")
    args = parser.parse_args(argv)
    if not args.duration > 0 or not args.kill_rate >= 0 or args.accounts < 2:
        parser.error("--duration must be > 0, --kill-rate >= 0 and --accounts >= 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbelow(100_000)
    log = logging.getLogger("understudy")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with tempfile.TemporaryDirectory(prefix="understudy-soak-") as workdir:
            result = us.run(
                lambda: soak(
                    Path(workdir) / "bank.db",
                    duration=args.duration,
                    kill_rate=args.kill_rate,
                    seed=seed,
                    accounts=args.accounts,
                ),
                backend=args.backend,
            )
    finally:
        log.setLevel(level)
    print(
        table(
            result,
            backend=args.backend,
            kill_rate=args.kill_rate,
            seed=seed,
            accounts=args.accounts,
        )
    )
    return 0 if result.verdict.ok and not result.verdict.lost else 1


if __name__ == "__main__":
    sys.exit(main())

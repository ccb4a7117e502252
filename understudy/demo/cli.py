"""``understudy demo``: the bank under a chaos monkey, watched live, then audited.

Runs on embedded defaults: a SQLite file in a fresh temporary directory (``--db`` to choose),
the metrics endpoint on 127.0.0.1 (its URL is printed; ``--metrics-port``), the supervised
bank of :mod:`understudy.demo.bank`, and a seeded monkey that kills actors, injects handler
faults and fails store writes. A live view refreshes about once a second. At the end (after
``--duration`` seconds, or on Ctrl-C) the clients and the monkey stop, the bank recovers, and
the summary checks the invariants and says plainly whether anything acknowledged was lost.
The exit status is 0 only if every invariant held.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

import anyio

import understudy as us
from understudy.demo import bank


def add_demo(commands: Any) -> None:
    """Register ``understudy demo`` on an argparse subparsers object."""
    parser = commands.add_parser(
        "demo",
        help="run a supervised bank under a chaos monkey and check that nothing is lost",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument("--duration", type=_positive, default=20.0, help="seconds (default 20)")
    parser.add_argument("--seed", type=int, default=None, help="chaos seed (default: random)")
    parser.add_argument(
        "--kill-rate", type=_non_negative, default=20.0, help="kills per second (default 20)"
    )
    parser.add_argument("--db", type=Path, default=None, help="SQLite file (default: temporary)")
    parser.add_argument(
        "--metrics-port", type=int, default=0, help="metrics port on 127.0.0.1 (default: free)"
    )
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--accounts", type=int, default=200, help="accounts (default 200)")
    parser.add_argument("--plain", action="store_true", help="append views, never redraw")
    parser.set_defaults(handler=run_demo)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
    return value


def run_demo(args: argparse.Namespace, out: TextIO) -> int:
    """Run the demo as ``args`` say, writing to ``out``; 0 if no invariant broke."""
    if args.accounts < 2:
        print("understudy demo: --accounts must be at least 2", file=sys.stderr)
        return 2
    if not 0 <= args.metrics_port <= 65535:
        print("understudy demo: --metrics-port must be 0..65535", file=sys.stderr)
        return 2
    if args.db is not None and (args.db.is_dir() or not args.db.parent.is_dir()):
        problem = "is a directory" if args.db.is_dir() else f"{args.db.parent} does not exist"
        print(f"understudy demo: --db {args.db}: {problem}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="understudy-demo-"))
    db = args.db if args.db is not None else workdir / "bank.db"
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    log = logging.getLogger("understudy")
    handler = logging.FileHandler(workdir / "demo.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(actor)s %(message)s"))
    previous = (log.handlers[:], log.propagate)
    log.handlers[:] = [handler]
    log.propagate = False  # restarts log tracebacks: keep them in the file, off the screen
    try:
        ok: bool = anyio.run(_demo, args, out, db, seed, workdir, backend=args.backend)
    finally:
        log.handlers[:], log.propagate = previous
        handler.close()
    return 0 if ok else 1


async def _demo(args: argparse.Namespace, out: TextIO, db: Path, seed: int, workdir: Path) -> bool:
    accounts, tellers, clients = args.accounts, 8, 24
    tally = bank.Tally()
    interactive = out.isatty() and not args.plain
    async with us.Runtime(store=db, metrics=("127.0.0.1", args.metrics_port)) as rt:
        print(
            f"understudy demo: {accounts} accounts, seed {seed}, backend {args.backend}", file=out
        )
        print(f"  store   {db}", file=out)
        print(f"  metrics {rt.metrics.url}/metrics  (tree: {rt.metrics.url}/tree)", file=out)
        print(f"  logs    {workdir / 'demo.log'}", file=out)
        print("  Ctrl-C stops early, with the summary.\n", file=out, flush=True)
        with rt.events.subscribe(us.SupervisorGaveUp, buffer=100) as give_ups:
            # Tellers fail when chaos hits them or the accounts they ask: their breakers trip.
            guard = us.Breaker(failures=3, reset_after=0.5, successes=1, jitter=0.0)
            await rt.start(bank.bank_tree(rt, accounts, tellers, breaker=guard))
            chaos = us.Chaos(rt, seed=seed)
            started = time.monotonic()
            async with anyio.create_task_group() as tg:
                tg.start_soon(_stop_on_interrupt, tg.cancel_scope)

                async def clients_run() -> None:
                    await bank.run_clients(
                        rt, tally, accounts=accounts, tellers=tellers, clients=clients, seed=seed
                    )

                tg.start_soon(clients_run)
                with anyio.move_on_after(args.duration):
                    async with chaos.monkey(
                        kill_rate=args.kill_rate,
                        inject_rate=args.kill_rate / 10,
                        store_fail_rate=args.kill_rate / 50,
                    ):
                        last = 0
                        while True:
                            await anyio.sleep(1.0)
                            view = _view(rt, chaos, tally, time.monotonic() - started, last)
                            last = len(tally.acknowledged)
                            if interactive:
                                print("\x1b[H\x1b[2J", end="", file=out)
                            print(view, file=out, flush=True)
                tg.cancel_scope.cancel()
            print("\nstopping the clients and the monkey; recovering and auditing...", file=out)
            verdict = await bank.check_invariants(
                rt,
                tally,
                accounts=accounts,
                tellers=tellers,
                gave_up=len(list(iter(give_ups.get_nowait, None))),
            )
        elapsed = time.monotonic() - started
        print(_summary(rt, chaos, tally, verdict, elapsed, seed), file=out, flush=True)
    return verdict.ok


async def _stop_on_interrupt(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


def _store_line(rt: us.Runtime) -> str:
    store = rt.store
    if store is None:
        return "store: none"
    stats = store.stats
    mean = stats.snapshots / stats.commits if stats.commits else 0.0
    return (
        f"store       {stats.commits:,} commits, mean group {mean:.1f} snapshots, "
        f"{stats.failed_groups} failed groups, {stats.retries} retries"
    )


def _breakers_line(rt: us.Runtime) -> str:
    states: dict[str, int] = {}
    trips = 0
    for cell in list(rt.metrics.cells.values()):
        guard = cell.guard
        if guard is None or guard.breaker is None:
            continue
        info = guard.breaker.snapshot()
        states[info.state] = states.get(info.state, 0) + 1
        trips += info.transitions.get("open", 0)
    if not states:
        return "breakers    none"
    shown = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    return f"breakers    {shown}; opened {trips:,} times"


def _view(rt: us.Runtime, chaos: us.Chaos, tally: bank.Tally, elapsed: float, last: int) -> str:
    cells = list(rt.metrics.cells.values())
    alive = sum(1 for cell in cells if cell.instance is not None)
    restarting = len(cells) - alive
    restarts = sum(cell.restarts for cell in cells)
    letters = ", ".join(f"{k} {v:,}" for k, v in sorted(rt.dead_letters.counts.items())) or "none"
    faults = ", ".join(f"{k} {v:,}" for k, v in chaos.counts.items() if v) or "none yet"
    return "\n".join(
        [
            f"t={elapsed:5.1f}s  transfers {len(tally.acknowledged) - last:,}/s "
            f"(acknowledged {len(tally.acknowledged):,}, refused {tally.refused:,}, "
            f"failed {tally.failed:,})",
            f"actors      {alive} serving, {restarting} restarting; restarts so far {restarts:,}",
            f"chaos       {faults}",
            _breakers_line(rt),
            f"dead letters {letters}",
            _store_line(rt),
            "",
        ]
    )


def _summary(
    rt: us.Runtime,
    chaos: us.Chaos,
    tally: bank.Tally,
    verdict: bank.Verdict,
    elapsed: float,
    seed: int,
) -> str:
    faults = ", ".join(f"{k} {v:,}" for k, v in chaos.counts.items() if v) or "none"
    lines = [
        "",
        "== summary ==",
        f"ran {elapsed:.1f} s; transfers acknowledged {len(tally.acknowledged):,}, "
        f"refused {tally.refused:,} (insufficient funds), failed {tally.failed:,} "
        "(not acknowledged: killed, timed out or not committed)",
        f"chaos: {faults} (seed {seed}: rerun with --seed {seed} to replay)",
        _store_line(rt),
        _breakers_line(rt),
        *verdict.lines(),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m understudy.demo.cli``: the same as ``understudy demo``."""
    parser = argparse.ArgumentParser(prog="understudy")
    add_demo(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["demo", *(sys.argv[1:] if argv is None else argv)])
    return int(args.handler(args, sys.stdout))


if __name__ == "__main__":
    sys.exit(main())

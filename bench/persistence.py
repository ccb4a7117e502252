"""Durable asks: what group commit buys, measured against its baselines in the same run.

Run: ``python -m bench.persistence`` (about a minute; ``--quick`` for a smaller run).

For each backend (asyncio: aiosqlite driver; trio: sqlite3 on a worker thread) and each
``synchronous`` setting (NORMAL, FULL):

* durable asks: 100 persistent actors, 50,000 asks from 100 concurrent callers,
  ``durability="commit"`` — every reply waited for the commit of its effect;
* baseline: the same actors without persistence;
* baseline: raw ``sqlite3``, one commit per write (WAL, the same ``synchronous``, the same
  compare-and-set UPDATE and state bytes);
* for the record: the same durable asks with the actor waiting for each of its commits
  before its next message (the mode understudy does *not* use; see
  ``understudy/persistence/_actor.py``), and both modes with all 100 callers asking one
  hot actor.

Reported: asks/s, commits/s, mean group size (snapshots per commit), p50/p99 ask latency,
write amplification (state bytes, and bytes the process wrote to files, per acknowledged ask),
and the targets as ratios: FULL ≥ 5x the one-commit-per-write baseline, NORMAL ≥ 0.3x the
non-persistent actors. Then the recovery time of 10,000 persistent actors from the store.
"""

from __future__ import annotations

import argparse
import gc
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import msgspec

import understudy as us
from understudy.persistence import Snapshots

ACTORS = 100
CALLERS = 100


class Deposit(us.Request[int], frozen=True):
    amount: int


class Account(us.Actor):
    class State(msgspec.Struct):
        balance: int = 0
        owner: str = ""
        deposits: int = 0

    async def deposit(self, msg: Deposit) -> int:
        self.state.balance += msg.amount
        self.state.deposits += 1
        return int(self.state.balance)


@dataclass
class Result:
    label: str
    asks: int
    seconds: float
    latencies: list[float]
    commits: int = 0
    mean_group: float = 0.0
    state_bytes: int = 0
    file_bytes: int = 0

    @property
    def rate(self) -> float:
        return self.asks / self.seconds

    def row(self, baseline: str = "") -> str:
        lat = sorted(self.latencies)
        p50 = lat[len(lat) // 2] * 1e6 if lat else float("nan")
        p99 = lat[int(len(lat) * 0.99)] * 1e6 if lat else float("nan")
        commits = f"{self.commits / self.seconds:>10,.0f}" if self.commits else f"{'-':>10}"
        group = f"{self.mean_group:>6.1f}" if self.commits else f"{'-':>6}"
        if self.state_bytes:
            amp = f"{self.state_bytes / self.asks:>6.1f} {self.file_bytes / self.asks:>7.0f}"
        else:
            amp = f"{'-':>6} {'-':>7}"
        p50s = f"{p50:>8.0f}" if lat else f"{'-':>8}"
        p99s = f"{p99:>8.0f}" if lat else f"{'-':>8}"
        return (
            f"  {self.label:<40} {self.rate:>10,.0f} {commits} {group} {p50s} {p99s} {amp}"
            f"  {baseline}"
        )


HEADER = (
    f"  {'':<40} {'asks/s':>10} {'commits/s':>10} {'group':>6} {'p50 µs':>8} {'p99 µs':>8}"
    f" {'B/ask':>6} {'wB/ask':>7}"
)


def written_bytes() -> int:
    """Bytes this process has passed to write(2) so far (Linux); 0 elsewhere."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def durable_asks(
    label: str,
    db: Path | None,
    synchronous: str,
    asks: int,
    *,
    pipeline: bool = True,
    actors: int = ACTORS,
) -> Result:
    store = us.Store(db, synchronous=synchronous) if db is not None else None  # type: ignore[arg-type]
    Snapshots.pipeline = pipeline
    try:
        async with us.Runtime(store=store) as rt:
            persistent = store is not None
            refs = [
                await rt.spawn(Account, name=f"acct-{i}", persistent=persistent)
                for i in range(actors)
            ]
            per_caller = asks // CALLERS
            latencies: list[float] = []
            clock = time.perf_counter

            async def caller(i: int) -> None:
                record = latencies.append
                msg = Deposit(1)
                for j in range(per_caller):
                    ref = refs[(i + j) % actors]
                    t0 = clock()
                    await ref.ask(msg)
                    record(clock() - t0)

            gc.collect()
            io0 = written_bytes()
            commits0 = store.stats.commits if store else 0
            snaps0 = store.stats.snapshots if store else 0
            bytes0 = store.stats.bytes_written if store else 0
            start = clock()
            async with anyio.create_task_group() as tg:
                for i in range(CALLERS):
                    tg.start_soon(caller, i)
            seconds = clock() - start
            result = Result(label, per_caller * CALLERS, seconds, latencies)
            if store is not None:
                result.commits = store.stats.commits - commits0
                snaps = store.stats.snapshots - snaps0
                result.mean_group = snaps / result.commits if result.commits else 0.0
                result.state_bytes = store.stats.bytes_written - bytes0
                result.file_bytes = written_bytes() - io0
            return result
    finally:
        Snapshots.pipeline = True


def raw_sqlite(label: str, db: Path, synchronous: str, writes: int) -> Result:
    """One commit per write: the same CAS UPDATE and state bytes, WAL, the same synchronous."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS snapshots "
        "(actor TEXT PRIMARY KEY, version INTEGER NOT NULL, state BLOB NOT NULL, updated REAL)"
    )
    encoder = msgspec.msgpack.Encoder()
    states = [Account.State() for _ in range(ACTORS)]
    versions = [0] * ACTORS
    for i in range(ACTORS):
        conn.execute(
            "INSERT OR REPLACE INTO snapshots VALUES (?, 0, ?, 0)",
            (f"acct-{i}", encoder.encode(states[i])),
        )
    latencies = []
    io0 = written_bytes()
    start = time.perf_counter()
    for n in range(writes):
        i = n % ACTORS
        t0 = time.perf_counter()
        state = states[i]
        state.balance += 1
        state.deposits += 1
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "UPDATE snapshots SET version = ?, state = ?, updated = ? WHERE actor = ? "
            "AND version = ?",
            (versions[i] + 1, encoder.encode(state), time.time(), f"acct-{i}", versions[i]),
        )
        conn.execute("COMMIT")
        versions[i] += 1
        latencies.append(time.perf_counter() - t0)
    seconds = time.perf_counter() - start
    conn.close()
    result = Result(label, writes, seconds, latencies, commits=writes, mean_group=1.0)
    result.state_bytes = writes * len(encoder.encode(states[0]))
    result.file_bytes = written_bytes() - io0
    return result


async def recovery(db: Path, actors: int) -> tuple[float, float, float]:
    """Seconds to start ``actors`` persistent actors from their rows (concurrently, then one
    after another), and to start the same number of plain actors (the spawn cost itself)."""
    encoder = msgspec.msgpack.Encoder()
    async with us.Store(db):  # create the schema, then the rows, outside the timing
        pass
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            "INSERT OR REPLACE INTO snapshots (actor, version, state, updated) VALUES (?, 1, ?, 0)",
            (
                (f"r-{i}", encoder.encode(Account.State(balance=i, owner=f"owner {i}")))
                for i in range(actors)
            ),
        )
    conn.close()

    async def start_all(persistent: bool, concurrently: bool) -> float:
        async with us.Runtime(store=db) as rt:
            start = time.perf_counter()
            if concurrently:
                async with anyio.create_task_group() as tg:
                    for i in range(actors):
                        tg.start_soon(
                            lambda i=i: rt.spawn(Account, name=f"r-{i}", persistent=persistent)
                        )
            else:
                for i in range(actors):
                    await rt.spawn(Account, name=f"r-{i}", persistent=persistent)
            seconds = time.perf_counter() - start
            assert rt.store is not None
            assert rt.store.stats.loads == (actors if persistent else 0)
        return seconds

    concurrent = await start_all(True, True)
    sequential = await start_all(True, False)
    plain = await start_all(False, True)
    return concurrent, sequential, plain


def run_backend(backend: str, workdir: Path, asks: int, recover: int) -> list[str]:
    lines = [f"backend: {backend}", HEADER]
    rows: dict[str, Result] = {}

    def measure(key: str, fn: Callable[[], Any]) -> Result:
        result: Result = fn()
        rows[key] = result
        return result

    def run(coro: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return us.run(lambda: coro(*args, **kwargs), backend=backend)  # type: ignore[arg-type]

    plain = measure("plain", lambda: run(durable_asks, "actors, no persistence", None, "", asks))
    lines.append(plain.row())
    for sync in ("normal", "full"):
        raw_writes = 20_000 if sync == "normal" else 3_000
        if asks < 50_000:
            raw_writes //= 4
        raw = measure(
            f"raw-{sync}",
            lambda sync=sync, n=raw_writes: raw_sqlite(
                f"raw sqlite3, commit per write, {sync.upper()}",
                workdir / f"raw-{backend}-{sync}.db",
                sync,
                n,
            ),
        )
        durable = measure(
            f"durable-{sync}",
            lambda sync=sync: run(
                durable_asks,
                f"durable asks, {sync.upper()}",
                workdir / f"durable-{backend}-{sync}.db",
                sync,
                asks,
            ),
        )
        lines.append(raw.row())
        if sync == "full":
            ratio = durable.rate / raw.rate
            verdict = "ok" if ratio >= 5 else "MISSED"
            lines.append(durable.row(f"{ratio:.1f}x raw FULL (target ≥ 5x) {verdict}"))
        else:
            ratio = durable.rate / plain.rate
            verdict = "ok" if ratio >= 0.3 else "MISSED"
            lines.append(durable.row(f"{ratio:.2f}x no persistence (target ≥ 0.3x) {verdict}"))
    waiting = run(
        durable_asks,
        "durable, actor waits each commit, NORMAL",
        workdir / f"waiting-{backend}.db",
        "normal",
        asks,
        pipeline=False,
    )
    lines.append(waiting.row(f"{waiting.rate / rows['durable-normal'].rate:.2f}x pipelined"))
    hot = run(
        durable_asks,
        "one hot actor, NORMAL",
        workdir / f"hot-{backend}.db",
        "normal",
        asks // 5,
        actors=1,
    )
    lines.append(hot.row())
    hot_waiting = run(
        durable_asks,
        "one hot actor, waits each commit",
        workdir / f"hot-waiting-{backend}.db",
        "normal",
        asks // 5,
        actors=1,
        pipeline=False,
    )
    lines.append(hot_waiting.row(f"{hot_waiting.rate / hot.rate:.2f}x pipelined"))
    concurrent, sequential, plain_spawn = run(recovery, workdir / f"recover-{backend}.db", recover)
    lines.append(
        f"  recovery of {recover:,} persistent actors: {concurrent:.2f} s spawned concurrently "
        f"({recover / concurrent:,.0f}/s), {sequential:.2f} s one after another; "
        f"plain spawn of as many: {plain_spawn:.2f} s"
    )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="10,000 asks instead of 50,000")
    parser.add_argument("--backend", choices=["asyncio", "trio"], action="append")
    parser.add_argument("--dir", type=Path, help="where the databases go (default: a temp dir)")
    args = parser.parse_args(argv)
    asks = 10_000 if args.quick else 50_000
    recover = 2_000 if args.quick else 10_000
    backends = args.backend or ["asyncio", "trio"]
    print(
        f"durable asks: {ACTORS} persistent actors, {asks:,} asks from {CALLERS} concurrent "
        f"callers, durability='commit'; Python {sys.version.split()[0]}, SQLite "
        f"{sqlite3.sqlite_version}"
    )
    print("  (B/ask: state bytes committed per ask; wB/ask: bytes the process wrote to files)")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for backend in backends:
            for line in run_backend(backend, Path(tmp), asks, recover):
                print(line, flush=True)
            print()


if __name__ == "__main__":
    main()

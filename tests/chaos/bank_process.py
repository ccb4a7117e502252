"""One life of the bank in its own process, for the SIGKILL scenario (test_bank_sigkill.py).

Usage::

    python tests/chaos/bank_process.py load DB ACKS BACKEND SEED INCARNATION
    python tests/chaos/bank_process.py check DB ACKS BACKEND

``load`` runs the bank of :mod:`understudy.demo.bank` on the SQLite file DB under a chaos
monkey (kills, injected handler faults and failed store writes) with client tasks transferring
money, until it is killed. Transfer ids start with ``i<INCARNATION>-``, so a restarted process
never reuses one. Every acknowledged transfer (the teller's ask returned True: both steps
committed) is appended to ACKS as the line ``<id> <source> <to> <amount>``, by one ``write(2)``
on an ``O_APPEND`` file before that client starts its next transfer: the line is in the kernel
then, so it survives a SIGKILL of this process. Every 50 ms a JSON status line (chaos counts,
what the clients saw, supervisor give-ups) goes to stdout.

``check`` starts the bank on DB with no chaos and no clients, checks the invariants
(:func:`understudy.demo.bank.check_invariants`: settle the outboxes, then check) against every
acknowledgement in ACKS (a torn last line is ignored), prints the verdict as one JSON line
and exits 0.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import sys
from pathlib import Path

import anyio

import understudy as us
from understudy.demo import bank

ACCOUNTS = 50
TELLERS = 4
CLIENTS = 8
KILL_RATE = 200.0
INJECT_RATE = 20.0
STORE_FAIL_RATE = 10.0
LIFETIME = 60.0
"""Seconds a ``load`` process runs if nobody kills it (then it exits with status 2)."""


@dataclasses.dataclass
class Seen:
    """What this incarnation's clients saw."""

    acked: int = 0
    refused: int = 0
    failed: int = 0


async def client(rt: us.Runtime, c: int, acks: int, seen: Seen, seed: int, prefix: str) -> None:
    """Transfer money until cancelled; log each acknowledgement before the next transfer."""
    rng = random.Random(seed * 1_000 + c)
    n = 0
    while True:
        n += 1
        source, to = rng.sample(range(ACCOUNTS), 2)
        transfer = bank.Transfer(
            f"{prefix}c{c}-{n}",
            bank.account_name(source),
            bank.account_name(to),
            rng.randint(1, 50),
        )
        try:
            ok = await rt.ref(f"teller-{rng.randrange(TELLERS)}").ask(transfer, timeout=5.0)
        except Exception:  # killed, injected, timed out, a failed commit: not acknowledged
            seen.failed += 1
            await anyio.sleep(0.001)  # a teller being restarted: do not spin
            continue
        if not ok:
            seen.refused += 1
            continue
        line = f"{transfer.transfer} {transfer.source} {transfer.to} {transfer.amount}\n"
        os.write(acks, line.encode())
        seen.acked += 1


async def load(db: Path, acks: Path, seed: int, incarnation: int) -> int:
    """Run the bank under chaos with clients until killed (or ``LIFETIME`` runs out: 2)."""
    seed = seed * 100 + incarnation  # this life's own draws
    seen = Seen()
    fd = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    async with us.Runtime(store=db) as rt:
        with rt.events.subscribe(us.SupervisorGaveUp, buffer=100) as give_ups:
            await rt.start(bank.bank_tree(rt, ACCOUNTS, TELLERS))
            chaos = us.Chaos(rt, seed=seed)
            monkey = chaos.monkey(
                kill_rate=KILL_RATE, inject_rate=INJECT_RATE, store_fail_rate=STORE_FAIL_RATE
            )
            gave_up = 0
            with anyio.move_on_after(LIFETIME):
                async with anyio.create_task_group() as tg, monkey:
                    for c in range(CLIENTS):
                        tg.start_soon(client, rt, c, fd, seen, seed, f"i{incarnation}-")
                    while True:
                        await anyio.sleep(0.05)
                        gave_up += len(list(iter(give_ups.get_nowait, None)))
                        status = {**chaos.counts, **dataclasses.asdict(seen), "gave_up": gave_up}
                        print(json.dumps(status), flush=True)
    print("load: never killed", file=sys.stderr)
    return 2


def read_acks(acks: Path) -> list[tuple[str, str, str, int]]:
    """Every complete line of the ack log (a last line without its newline is torn)."""
    lines = acks.read_text().split("\n")[:-1] if acks.exists() else []
    found = []
    for line in lines:
        transfer, source, to, amount = line.split()
        found.append((transfer, source, to, int(amount)))
    return found


async def check(db: Path, acks: Path) -> int:
    """Recover the bank, check the invariants against the ack log, print the verdict."""
    tally = bank.Tally(acknowledged=read_acks(acks))
    async with us.Runtime(store=db) as rt:
        with rt.events.subscribe(us.SupervisorGaveUp, buffer=100) as give_ups:
            await rt.start(bank.bank_tree(rt, ACCOUNTS, TELLERS))
            verdict = await bank.check_invariants(
                rt, tally, accounts=ACCOUNTS, tellers=TELLERS, gave_up=0
            )
            verdict.gave_up = len(list(iter(give_ups.get_nowait, None)))
    print(json.dumps({**dataclasses.asdict(verdict), "ok": verdict.ok}), flush=True)
    return 0


def main(argv: list[str]) -> int:
    # Restarts log tracebacks, hundreds a second under chaos; a real crash still shows.
    logging.getLogger("understudy").setLevel(logging.CRITICAL)
    command, db, acks, backend, *rest = argv
    if command == "load":
        seed, incarnation = map(int, rest)
        return us.run(load, Path(db), Path(acks), seed, incarnation, backend=backend)  # type: ignore[arg-type]
    if command == "check":
        return us.run(check, Path(db), Path(acks), backend=backend)  # type: ignore[arg-type]
    raise SystemExit(f"unknown command {command!r}; see the docstring")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Kill -9 under load: every acknowledged effect survives, versions only move forward.

A runtime serving asks against persistent actors runs in a subprocess
(``tests/crash_server.py``). The test sends it requests over loopback TCP, records every
reply it gets (a reply means: committed), SIGKILLs the process at a random moment, starts
it again on the same file, and repeats. Afterwards the file must hold every acknowledged
request exactly once, and each actor's version must never have gone back. Both kinds of
persistent actor: snapshot actors, event-sourced ones (recovered by snapshot + replay), and
snapshot actors keeping the ids in an append-only ``Log`` (snapshot + appended rows).
"""

from __future__ import annotations

import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec
import pytest

SERVER = Path(__file__).with_name("crash_server.py")
ACTORS = 8
WINDOW = 64
"""Requests in flight at once."""


class CounterState(msgspec.Struct):
    count: int = 0
    requests: list[int] = msgspec.field(default_factory=list)


class Bumped(msgspec.Struct):
    request: int


def on_disk(db: Path) -> dict[str, tuple[int, CounterState]]:
    """Each actor's committed version and state: its snapshot plus, for an event-sourced
    actor, its journal after the snapshot replayed (what a restart will see)."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT actor, version, state FROM snapshots").fetchall()
        found = {}
        for actor, version, data in rows:
            raw = msgspec.msgpack.decode(data)
            if isinstance(raw["requests"], int):  # a Log field: its length; the entries are rows
                entries = conn.execute(
                    "SELECT seq, entry FROM log_entries WHERE actor = ? AND field = 'requests' "
                    "ORDER BY seq",
                    (actor,),
                ).fetchall()
                assert [seq for seq, _ in entries] == list(range(1, raw["requests"] + 1)), (
                    f"{actor}: the log's rows do not match its length {raw['requests']}"
                )
                raw["requests"] = [msgspec.msgpack.decode(entry) for _, entry in entries]
            found[actor] = (version, msgspec.convert(raw, CounterState))
        journal = conn.execute("SELECT actor, seq, event FROM journal ORDER BY actor, seq")
        for actor, seq, data in journal:
            version, state = found.get(actor, (0, CounterState()))
            if seq <= version:
                continue
            assert seq == version + 1, f"{actor}: the journal skips from {version} to {seq}"
            state.count += 1
            state.requests.append(msgspec.msgpack.decode(data, type=Bumped).request)
            found[actor] = (seq, state)
    finally:
        conn.close()
    return found


def run_until_killed(
    db: Path, backend: str, mode: str, rng: random.Random, next_id: int, acked: dict[int, int]
) -> int:
    """One life of the server: load it, kill it at a random moment; the next request id."""
    server = subprocess.Popen(
        [sys.executable, str(SERVER), str(db), backend, str(ACTORS), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        conn = socket.create_connection(("127.0.0.1", port))
        window = threading.Semaphore(WINDOW)
        stop = threading.Event()
        sent: dict[int, int] = {}

        def read_replies() -> None:
            buffer = b""
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    request, count = map(int, line.split())
                    acked[request] = sent[request]
                    assert count >= 1
                    window.release()

        def send_requests() -> None:
            request = next_id
            while not stop.is_set():
                if not window.acquire(timeout=0.05):
                    continue
                actor = rng.randrange(ACTORS)
                sent[request] = actor
                try:
                    conn.sendall(f"{request} {actor}\n".encode())
                except OSError:
                    return
                request += 1

        reader = threading.Thread(target=read_replies)
        writer = threading.Thread(target=send_requests)
        reader.start()
        writer.start()
        time.sleep(rng.uniform(0.05, 0.4))  # load for a while, then kill at a random moment
        server.send_signal(signal.SIGKILL)
        server.wait()
        stop.set()
        writer.join()
        conn.close()
        reader.join()
        return max(sent, default=next_id) + 1
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize(
    ("mode", "seed"), [("snapshot", 1), ("snapshot", 2), ("events", 3), ("log", 4)]
)
def test_sigkill_under_load_loses_no_acknowledged_effect(
    tmp_path: Path, backend: str, mode: str, seed: int
) -> None:
    rng = random.Random(seed)
    db = tmp_path / "crash.db"
    acked: dict[int, int] = {}  # request id -> actor index, for every reply received
    versions: dict[str, int] = {}
    next_id = 0
    for _ in range(3):
        next_id = run_until_killed(db, backend, mode, rng, next_id, acked)
        stored = on_disk(db)
        for actor, (version, state) in stored.items():
            assert version >= versions.get(actor, 0), f"{actor} went back to version {version}"
            versions[actor] = version
            assert state.count == len(state.requests) == version
            assert len(set(state.requests)) == len(state.requests), "a request applied twice"
        for request, actor in acked.items():
            name = f"c{actor}"
            assert name in stored, f"{name} has no row, but request {request} was acknowledged"
            assert request in stored[name][1].requests, (
                f"acknowledged request {request} to {name} is missing after SIGKILL"
            )
    assert len(acked) > 0

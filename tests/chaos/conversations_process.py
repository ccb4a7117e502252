"""One life of many persistent conversations in its own process, for the SIGKILL scenario
(test_conversations_sigkill.py).

Usage::

    python tests/chaos/conversations_process.py load DB ACKS BACKEND INCARNATION
    python tests/chaos/conversations_process.py check DB ACKS BACKEND

``load`` runs an entity type of persistent conversations (passivated when idle, bounded by
``max_active``, so activation, passivation and restore all happen under load) on the SQLite
file DB, with one client task per conversation appending entries until the process is
killed. Entry ids start with ``i<INCARNATION>-``, so a restarted process never reuses one.
Every acknowledged ask (the entry is committed) is appended to ACKS as ``<key> <entry>``
by one ``write(2)`` on an ``O_APPEND`` file before that client's next ask.

``check`` starts the conversations on DB without clients, asks every conversation of the
ack log for its history, and prints one JSON line: acknowledged entries missing from their
conversation (``lost``) and entries present twice (``duplicated``).
"""

from __future__ import annotations

import json
import os
import sys

import anyio
import msgspec

import understudy as us

CONVERSATIONS = 1_000
LIFETIME = 60.0


class Append(us.Request[int], frozen=True):
    entry: str


class History(us.Request[list[str]], frozen=True):
    pass


class Conversation(us.Actor):
    persistent = True

    class State(msgspec.Struct):
        history: us.Log[str] = us.Log.field()  # append-only, persisted by delta

    async def append(self, msg: Append) -> int:
        await anyio.sleep(0.005)  # simulated I/O
        self.state.history.append(msg.entry)
        return len(self.state.history)

    async def history(self, msg: History) -> list[str]:
        return list(self.state.history)


def spec() -> us.Supervisor:
    return us.Supervisor(
        children=[
            us.Entities(
                Conversation, name="conv", passivate_after=0.05, max_active=CONVERSATIONS // 2
            )
        ]
    )


async def load(db: str, acks_path: str, incarnation: int) -> None:
    acks = os.open(acks_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def client(rt: us.Runtime, key: str) -> None:
        ref = rt.entity("conv", key)
        n = 0
        while True:
            n += 1
            entry = f"i{incarnation}-{key}-{n}"
            try:
                await ref.ask(Append(entry), timeout=10.0)
            except Exception:  # not acknowledged
                await anyio.sleep(0.01)
                continue
            os.write(acks, f"{key} {entry}\n".encode())
            await anyio.sleep(0.001 * (hash(entry) % 20))  # conversations go idle now and then

    async with us.Runtime(store=db) as rt:
        await rt.start(spec())
        with anyio.move_on_after(LIFETIME):
            async with anyio.create_task_group() as tg:
                for i in range(CONVERSATIONS):
                    tg.start_soon(client, rt, f"c{i}")
    sys.exit(2)


async def check(db: str, acks_path: str) -> None:
    acked: dict[str, list[str]] = {}
    text = await anyio.Path(acks_path).read_text()
    for line in text.split("\n")[:-1]:  # a torn last line is ignored
        key, entry = line.split(" ")
        acked.setdefault(key, []).append(entry)
    lost: list[str] = []
    duplicated: list[str] = []
    total = 0
    async with us.Runtime(store=db) as rt:
        await rt.start(spec())
        for key, entries in acked.items():
            history = await rt.entity("conv", key).ask(History())
            total += len(entries)
            present = set(history)
            lost += [e for e in entries if e not in present]
            if len(present) != len(history):
                duplicated += sorted({e for e in history if history.count(e) > 1})
    print(json.dumps({"acknowledged": total, "lost": lost, "duplicated": duplicated}))


def main() -> None:
    command, db, acks, backend = sys.argv[1:5]
    if command == "load":
        anyio.run(load, db, acks, int(sys.argv[5]), backend=backend)
    else:
        anyio.run(check, db, acks, backend=backend)


if __name__ == "__main__":
    main()

"""A bank under chaos: the workload of ``understudy demo``, the chaos suite and the soak bench.

Persistent ``Account`` actors hold money; stateless ``Teller`` actors move it; client tasks
ask tellers for transfers with deadlines while a chaos monkey kills actors, injects faults
and fails store writes. The design is the one a production service would need to keep money
exact when any actor can die at any await:

* A transfer is two idempotent steps keyed by the transfer id, each acknowledged only after
  its commit (``durability="commit"``): the teller asks the source to ``Debit`` (which also
  records the transfer in the source's *outbox*), then asks the destination to ``Credit``,
  then tells the source to ``Settle`` (drop it from the outbox). The client's ask succeeds
  only after both commits.
* If a teller dies between the steps, the debit sits in the source's committed outbox. An
  account hands its outbox to a teller again when it starts (from committed state) and when
  asked to ``Reconcile``; the teller asks for the ``Credit`` (credited once however often it
  arrives) and tells the source to ``Settle`` only after that credit was committed. Accounts
  only ever ``tell``; only tellers ``ask``, so no two actors can wait on each other.

So at rest, when every outbox is empty, the sum of the balances is what it was at the start,
and every acknowledged transfer is in its source's ``sent`` and its destination's
``received`` exactly once (:func:`check_invariants`).
"""

from __future__ import annotations

import contextlib
import functools
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import msgspec

import understudy as us

INITIAL_BALANCE = 1_000

Lookup = Callable[[str], us.Ref]
T = TypeVar("T")


class Debit(us.Request[bool], frozen=True):
    transfer: str
    amount: int
    to: str


class Credit(us.Request[bool], frozen=True):
    transfer: str
    amount: int
    source: str


class Complete(us.Message, frozen=True):
    """To a teller: finish a debited transfer (credit, then settle) from an outbox."""

    transfer: str
    source: str
    to: str
    amount: int


class Settle(us.Message, frozen=True):
    transfer: str


class Reconcile(us.Request[int], frozen=True):
    """Redeliver the outbox; reply with how many transfers are still unsettled."""


class Balance(us.Request[int], frozen=True):
    pass


class LedgerView(msgspec.Struct, frozen=True):
    balance: int
    sent: list[str]
    received: list[str]
    unsettled: int


class Ledger(us.Request[LedgerView], frozen=True):
    pass


class Transfer(us.Request[bool], frozen=True):
    transfer: str
    source: str
    to: str
    amount: int


class Account(us.Actor):
    """Money, and the record of every transfer in and out (persistent).

    The ids of the transfers sent and received are append-only ``us.Log`` fields: each id is
    committed once as a row of its own, so the snapshot written after each message holds
    only the balance, the outbox and the logs' lengths, and a message costs the same after
    a million transfers as after ten. The idempotency checks use sets of those ids, rebuilt
    from the logs when an instance starts.
    """

    persistent = True

    class State(msgspec.Struct):
        balance: int = INITIAL_BALANCE
        sent: us.Log[str] = us.Log.field()
        received: us.Log[str] = us.Log.field()
        outbox: dict[str, tuple[str, int]] = msgspec.field(default_factory=dict)

    def __init__(self, lookup: Lookup, tellers: int) -> None:
        self.lookup = lookup
        self.tellers = tellers
        self.sent: set[str] = set()
        self.received: set[str] = set()

    async def on_start(self) -> None:
        self.sent = set(self.state.sent)  # derived from committed state, never persisted
        self.received = set(self.state.received)
        await self.redeliver()  # the restored outbox is committed state: safe to resend

    async def redeliver(self) -> None:
        for transfer, (to, amount) in list(self.state.outbox.items()):
            teller = f"teller-{sum(map(ord, transfer)) % self.tellers}"
            # UnknownActor: its supervisor is restarting it; the next reconcile resends.
            with contextlib.suppress(us.UnknownActor):
                await self.lookup(teller).tell(Complete(transfer, self.ctx.name, to, amount))

    async def debit(self, msg: Debit) -> bool:
        state = self.state
        if msg.transfer in self.sent:
            return True
        if state.balance < msg.amount:
            return False
        state.balance -= msg.amount
        state.sent.append(msg.transfer)
        self.sent.add(msg.transfer)
        state.outbox[msg.transfer] = (msg.to, msg.amount)
        return True

    async def credit(self, msg: Credit) -> bool:
        if msg.transfer not in self.received:
            self.state.balance += msg.amount
            self.state.received.append(msg.transfer)
            self.received.add(msg.transfer)
        return True

    async def settle(self, msg: Settle) -> None:
        self.state.outbox.pop(msg.transfer, None)

    async def reconcile(self, msg: Reconcile) -> int:
        await self.redeliver()
        return len(self.state.outbox)

    async def balance(self, msg: Balance) -> int:
        return int(self.state.balance)

    async def ledger(self, msg: Ledger) -> LedgerView:
        state = self.state
        return LedgerView(state.balance, list(state.sent), list(state.received), len(state.outbox))


class Teller(us.Actor):
    """Moves money: debit, credit, settle. Stateless; each step is an ask with a deadline."""

    def __init__(self, lookup: Lookup, step_timeout: float) -> None:
        self.lookup = lookup
        self.step_timeout = step_timeout

    async def transfer(self, msg: Transfer) -> bool:
        source = self.lookup(msg.source)
        if not await source.ask(Debit(msg.transfer, msg.amount, msg.to), timeout=self.step_timeout):
            return False
        await self.lookup(msg.to).ask(
            Credit(msg.transfer, msg.amount, msg.source), timeout=self.step_timeout
        )
        await source.tell(Settle(msg.transfer))
        return True

    async def complete(self, msg: Complete) -> None:
        """Finish a transfer from an outbox: the source settles only a committed credit."""
        await self.lookup(msg.to).ask(
            Credit(msg.transfer, msg.amount, msg.source), timeout=self.step_timeout
        )
        await self.lookup(msg.source).tell(Settle(msg.transfer))


def account_name(i: int) -> str:
    return f"acct-{i:03d}"


def bank_tree(
    rt: us.Runtime,
    accounts: int,
    tellers: int,
    branches: int = 4,
    breaker: us.Breaker | None = None,
) -> us.Supervisor:
    """Three levels, mixed strategies: the bank (OneForOne) over the tellers (OneForOne) and
    the vault (RestForOne), whose branches are OneForOne except the last, OneForAll.
    ``breaker``, when given, guards each teller (each gets its own copy)."""
    # Chaos kills on purpose, hundreds a second: only a runaway loop should make one give up.
    intensity: dict[str, Any] = {"max_restarts": 100_000, "within": 1.0}
    lookup = rt.ref
    per_branch = -(-accounts // branches)
    branch_specs = []
    for b in range(branches):
        members = range(b * per_branch, min(accounts, (b + 1) * per_branch))
        strategy = us.OneForAll(**intensity) if b == branches - 1 else us.OneForOne(**intensity)
        branch_specs.append(
            us.Supervisor(
                name=f"branch-{b}",
                strategy=strategy,
                children=[
                    us.Child(functools.partial(Account, lookup, tellers), name=account_name(i))
                    for i in members
                ],
            )
        )
    teller_specs = [
        us.Child(functools.partial(Teller, lookup, 2.0), name=f"teller-{t}", breaker=breaker)
        for t in range(tellers)
    ]
    return us.Supervisor(
        name="bank",
        strategy=us.OneForOne(**intensity),
        children=[
            us.Supervisor(
                name="tellers", strategy=us.OneForOne(**intensity), children=teller_specs
            ),
            us.Supervisor(name="vault", strategy=us.RestForOne(**intensity), children=branch_specs),
        ],
    )


@dataclass
class Tally:
    """What the clients saw."""

    acknowledged: list[tuple[str, str, str, int]] = field(default_factory=list)
    refused: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return len(self.acknowledged) + self.refused + self.failed


async def run_clients(
    rt: us.Runtime,
    tally: Tally,
    *,
    accounts: int,
    tellers: int,
    clients: int,
    seed: int,
    deadline: float = 5.0,
    prefix: str | None = None,
) -> None:
    """Client tasks transferring money until cancelled. Never raises for a failed transfer.

    Transfer ids start with ``prefix`` (default: random), so runs on one store never reuse
    an id an account has already applied."""
    prefix = secrets.token_hex(4) if prefix is None else prefix

    async def client(c: int) -> None:
        rng = random.Random(seed * 1_000 + c)
        n = 0
        while True:
            n += 1
            source, to = rng.sample(range(accounts), 2)
            transfer = Transfer(
                f"{prefix}-c{c}-{n}", account_name(source), account_name(to), rng.randint(1, 50)
            )
            start = time.perf_counter()
            try:
                teller = rt.ref(f"teller-{rng.randrange(tellers)}")
                ok = await teller.ask(transfer, timeout=deadline)
            except Exception:  # killed, injected, timed out, a failed commit: not acknowledged
                tally.failed += 1
                await anyio.sleep(0.001)  # a teller being restarted: do not spin
                continue
            tally.latencies.append(time.perf_counter() - start)
            if ok:
                tally.acknowledged.append(
                    (transfer.transfer, transfer.source, transfer.to, transfer.amount)
                )
            else:
                tally.refused += 1

    async with anyio.create_task_group() as tg:
        for c in range(clients):
            tg.start_soon(client, c)


@dataclass
class Verdict:
    """The invariants checked after recovery; ``ok`` when all hold."""

    money_before: int
    money_after: int
    acknowledged: int
    lost: list[str]
    duplicated: list[str]
    dead_actors: list[str]
    unsettled: int
    gave_up: int

    @property
    def ok(self) -> bool:
        return (
            self.money_before == self.money_after
            and not self.lost
            and not self.duplicated
            and not self.dead_actors
            and self.unsettled == 0
            and self.gave_up == 0
        )

    def lines(self) -> list[str]:
        return [
            f"money: {self.money_before:,} before, {self.money_after:,} after"
            + ("" if self.money_before == self.money_after else "  <-- NOT CONSERVED"),
            f"acknowledged transfers: {self.acknowledged:,}; lost: {len(self.lost)}; "
            f"applied twice: {len(self.duplicated)}",
            f"actors not serving: {len(self.dead_actors)}; unsettled transfers: {self.unsettled}; "
            f"supervisor give-ups: {self.gave_up}",
            "verdict: nothing acknowledged was lost" if self.ok else "verdict: INVARIANTS BROKEN",
        ]


async def settle_all(rt: us.Runtime, accounts: int, *, rounds: int = 200) -> int:
    """Reconcile until every outbox is empty (or ``rounds`` run out); the unsettled count."""
    unsettled = -1
    for _ in range(rounds):
        unsettled = 0
        for i in range(accounts):
            unsettled += await _retrying(rt, account_name(i), Reconcile())
        if unsettled == 0:
            return 0
        await anyio.sleep(0.01)
    return unsettled


async def _retrying(rt: us.Runtime, name: str, request: us.Request[T], tries: int = 500) -> T:
    """Ask ``name``, riding out its restarts (the chaos has stopped, recovery has not)."""
    for _ in range(tries):
        try:
            return await rt.ref(name).ask(request, timeout=5.0)
        except (us.UnknownActor, us.ActorStopped, us.Killed, us.PersistenceError):
            await anyio.sleep(0.01)
    return await rt.ref(name).ask(request, timeout=5.0)


async def check_invariants(
    rt: us.Runtime, tally: Tally, *, accounts: int, tellers: int, gave_up: int
) -> Verdict:
    """Settle every outbox, then check money, acknowledged transfers and liveness."""
    unsettled = await settle_all(rt, accounts)
    views = {}
    for i in range(accounts):
        views[account_name(i)] = await _retrying(rt, account_name(i), Ledger())
    lost, duplicated = [], []
    sent = {name: set(view.sent) for name, view in views.items()}
    received = {name: set(view.received) for name, view in views.items()}
    for transfer, source, to, _ in tally.acknowledged:
        if transfer not in sent[source] or transfer not in received[to]:
            lost.append(transfer)
    seen: set[str] = set()
    for name in views:
        for transfer in received[name]:
            if transfer in seen:
                duplicated.append(transfer)
            seen.add(transfer)
    names = [account_name(i) for i in range(accounts)] + [f"teller-{t}" for t in range(tellers)]
    return Verdict(
        money_before=accounts * INITIAL_BALANCE,
        money_after=sum(view.balance for view in views.values()),
        acknowledged=len(tally.acknowledged),
        lost=lost,
        duplicated=duplicated,
        dead_actors=[name for name in names if name not in rt],
        unsettled=unsettled,
        gave_up=gave_up,
    )

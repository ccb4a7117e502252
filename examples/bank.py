"""A small bank: accounts are actors, an auditor watches them.

Shows typed messages, ``tell`` and ``ask``, an ask with a timeout, a handler's exception
reaching the caller, and a crash observed through ``watch``.

Run it with ``python examples/bank.py`` (asyncio) or ``python examples/bank.py trio``.
"""

import logging
import sys

import anyio
import msgspec

import understudy as us

# -- messages: frozen, typed --


class Deposit(us.Message, frozen=True):
    amount: int


class Withdraw(us.Request[int], frozen=True):
    """Take money out; the reply is the new balance."""

    amount: int


class GetBalance(us.Request[int], frozen=True):
    pass


class Statement(us.Request[str], frozen=True):
    """Slow to produce: callers should not wait forever for it."""


class Watch(us.Message, frozen=True):
    account: us.Ref


class Report(us.Request[list[str]], frozen=True):
    pass


class InsufficientFunds(Exception):
    pass


# -- actors --


class Account(us.Actor):
    class State(msgspec.Struct):
        balance: int = 0

    async def deposit(self, msg: Deposit) -> None:
        self.state.balance += msg.amount

    async def withdraw(self, msg: Withdraw) -> int:
        if msg.amount > self.state.balance:
            balance = self.state.balance
            raise InsufficientFunds(f"cannot withdraw {msg.amount}, balance is {balance}")
        self.state.balance -= msg.amount
        return self.state.balance

    async def balance(self, msg: GetBalance) -> int:
        return self.state.balance

    async def statement(self, msg: Statement) -> str:
        await anyio.sleep(0.2)  # pretend to render a PDF
        return f"statement of {self.ctx.name}: {self.state.balance}"


class Auditor(us.Actor):
    """Watches accounts and notes how each one ended."""

    class State(msgspec.Struct):
        notes: list[str] = msgspec.field(default_factory=list)

    async def watch(self, msg: Watch) -> None:
        self.ctx.watch(msg.account)

    async def terminated(self, msg: us.Terminated) -> None:
        self.state.notes.append(f"{msg.ref.name} ended ({msg.reason}): {msg.error}")

    async def report(self, msg: Report) -> list[str]:
        return list(self.state.notes)


# -- the program --


async def main() -> None:
    async with us.Runtime() as rt:
        auditor = await rt.spawn(Auditor, name="auditor")
        alice = await rt.spawn(Account, name="alice")
        bob = await rt.spawn(Account, name="bob")
        for account in (alice, bob):
            await auditor.tell(Watch(account))

        await alice.tell(Deposit(100))
        await bob.tell(Deposit(20))
        print("alice has", await alice.ask(GetBalance(), timeout=1.0))
        print("alice after withdrawing 30:", await alice.ask(Withdraw(30), timeout=1.0))

        try:
            await alice.ask(Statement(), timeout=0.05)
        except TimeoutError:
            # Its deadline passed: the handler rendering it was cancelled (dead letter
            # "deadline"), and alice goes on with her next message.
            print("statement not ready in time; alice keeps serving")
        print("alice still has", await alice.ask(GetBalance(), timeout=1.0))

        with rt.events.subscribe(us.ActorTerminated) as ended:
            try:
                await bob.ask(Withdraw(50), timeout=1.0)
            except InsufficientFunds as exc:
                print("bob's withdrawal refused:", exc)
            async for event in ended:  # the crash stops bob; wait until it has
                if event.actor == "bob":
                    break
        for note in await auditor.ask(Report(), timeout=1.0):
            print("auditor:", note)
        print("bob is", "open" if "bob" in rt else "closed")

    print("dead letters:", dict(sorted(rt.dead_letters.counts.items())))


if __name__ == "__main__":
    # understudy logs each failure once, with its traceback, on the "understudy" logger.
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    us.run(main, backend="trio" if sys.argv[1:] == ["trio"] else "asyncio")

"""The README's tour: a supervised account that answers a refused request and is restarted
after a crash.

Run it: ``python examples/tour.py [asyncio|trio]``.
"""

import sys

import msgspec

import understudy as us


class Deposit(us.Message, frozen=True):  # a one-way message (tell)
    amount: int


class Withdraw(us.Request[int], frozen=True):  # a request whose reply is an int (ask)
    amount: int


class GetBalance(us.Request[int], frozen=True):
    pass


class Audit(us.Request[int], frozen=True):
    pass


class Account(us.Actor):
    class State(msgspec.Struct):  # fresh for every new instance
        balance: int = 0

    state: State  # tells a type checker what self.state is

    async def deposit(self, msg: Deposit) -> None:  # handlers are found by annotation
        self.state.balance += msg.amount

    async def withdraw(self, msg: Withdraw) -> int:
        if msg.amount > self.state.balance:
            raise ValueError(f"insufficient funds: {self.state.balance} < {msg.amount}")
        self.state.balance -= msg.amount
        return self.state.balance

    async def balance(self, msg: GetBalance) -> int:
        return self.state.balance

    async def audit(self, msg: Audit) -> int:
        ledger: dict[str, int] = {}
        return ledger["alice"]  # a bug: KeyError is not an answer, so alice crashes


async def main() -> None:
    async with us.Runtime(metrics=("127.0.0.1", 0)) as rt:
        await rt.start(
            us.Supervisor(
                strategy=us.OneForOne(max_restarts=5, within=10.0),
                children=[us.Child(Account, name="alice", backoff=us.Backoff(min=0.01, max=1.0))],
            )
        )
        print("metrics at", rt.metrics.url)
        alice = rt.ref("alice")
        await alice.tell(Deposit(10))
        print("balance:", await alice.ask(GetBalance(), timeout=1.0))
        print("withdraw 4 ->", await alice.ask(Withdraw(4), timeout=1.0))
        try:
            await alice.ask(Withdraw(50))  # a ValueError is an answer: the asker gets it...
        except ValueError as error:
            print("refused:", error)
        print("balance after the refusal:", await alice.ask(GetBalance()))  # ...state kept
        try:
            await alice.ask(Audit())  # any other exception is a crash...
        except KeyError as error:
            print("crashed:", error)
        # ...and her supervisor restarted her from a fresh State(); the name ref follows.
        print("balance after the crash:", await alice.ask(GetBalance(), timeout=1.0))


if __name__ == "__main__":
    us.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")  # type: ignore[arg-type]

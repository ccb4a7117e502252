"""A persistent actor whose State changed shape: a field renamed, a field added.

Version 1 of ``Customer`` stored ``name`` and ``email``. Version 2 renames ``name`` to
``full_name`` and adds ``tier`` (with a default). Restoring a version-1 row into version 2
without a migration is refused (``StateSchemaChanged`` names the actor, the field and the
stored schema): the renamed field would otherwise be dropped silently. Declaring
``migrate_state`` converts the stored row once; the converted state is committed as the
next version before the actor serves (the old row stays until that commit), so the next
start needs no migration.

Run it with ``python examples/migration.py`` (asyncio) or ``python examples/migration.py trio``.
"""

import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
import msgspec

import understudy as us


class Describe(us.Request[str], frozen=True):
    pass


class CustomerV1(us.Actor):
    persistent = True

    class State(msgspec.Struct):
        name: str = ""
        email: str = ""

    async def on_start(self) -> None:
        if not self.state.name:
            self.state.name, self.state.email = "Ada Lovelace", "ada@example.org"

    async def describe(self, msg: Describe) -> str:
        return f"{self.state.name} <{self.state.email}>"


class CustomerV2(us.Actor):
    persistent = True

    class State(msgspec.Struct):
        full_name: str = ""  # was `name`
        email: str = ""
        tier: str = "basic"  # new, with a default: needs no migration by itself

    @staticmethod
    def migrate_state(stored: dict[str, Any]) -> "CustomerV2.State":
        """A version-1 row (``name``, ``email``) as a version-2 State."""
        return CustomerV2.State(full_name=stored.pop("name", ""), email=stored["email"])

    async def describe(self, msg: Describe) -> str:
        return f"{self.state.full_name} <{self.state.email}>, tier {self.state.tier}"


class CustomerV2Unmigrated(us.Actor):
    """Version 2 without the migration: what a forgotten migration looks like."""

    persistent = True
    State = CustomerV2.State

    async def describe(self, msg: Describe) -> str:
        return self.state.full_name


async def main(db: Path) -> None:
    async with us.Runtime(store=db) as rt:
        v1 = await rt.spawn(CustomerV1, name="customer-1")
        print("v1:", await v1.ask(Describe()))
        await rt.stop(v1)
    async with us.Runtime(store=db) as rt:
        try:
            await rt.spawn(CustomerV2Unmigrated, name="customer-1")
        except us.StateSchemaChanged as exc:
            print(f"refused: field {exc.field!r}, stored schema {exc.stored}")
    async with us.Runtime(store=db) as rt:
        v2 = await rt.spawn(CustomerV2, name="customer-1")
        print("v2:", await v2.ask(Describe()))
    async with us.Runtime(store=db) as rt:  # the migrated row was committed: no migration now
        v2 = await rt.spawn(CustomerV2Unmigrated, name="customer-1")
        print("v2 again, without migrate_state:", await v2.ask(Describe()))


if __name__ == "__main__":
    backend = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    with tempfile.TemporaryDirectory() as tmp:
        anyio.run(main, Path(tmp) / "customers.db", backend=backend)

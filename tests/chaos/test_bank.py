"""The chaos suite: a bank keeps its money exact while a monkey kills its actors.

200 persistent accounts under a 3-level tree of mixed strategies, tellers asked with
deadlines by concurrent clients, and a seeded monkey killing actors (at least 1,000 kills),
injecting handler faults and failing store writes. After recovery: money is conserved, every
acknowledged transfer is applied exactly once, every permanent actor serves, no supervisor
gave up, and the runtime shuts down cleanly. The seed is in the failure message, so a
failure replays.
"""

from __future__ import annotations

import anyio
import pytest

import understudy as us
from understudy.demo import bank

pytestmark = pytest.mark.anyio

ACCOUNTS = 200
TELLERS = 8
CLIENTS = 24
SEED = 20261121


async def test_the_bank_loses_nothing_while_actors_are_killed(tmp_path, anyio_backend) -> None:
    seed = SEED + (anyio_backend == "trio")
    tally = bank.Tally()
    with anyio.fail_after(120):
        async with us.Runtime(store=tmp_path / "bank.db") as rt:
            with rt.events.subscribe(us.SupervisorGaveUp, buffer=10) as give_ups:
                await rt.start(bank.bank_tree(rt, ACCOUNTS, TELLERS))
                chaos = us.Chaos(rt, seed=seed)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(
                        lambda: bank.run_clients(
                            rt,
                            tally,
                            accounts=ACCOUNTS,
                            tellers=TELLERS,
                            clients=CLIENTS,
                            seed=seed,
                        )
                    )
                    async with chaos.monkey(kill_rate=400, inject_rate=40, store_fail_rate=4):
                        while chaos.counts["kill"] < 1_000:
                            await anyio.sleep(0.05)
                    tg.cancel_scope.cancel()
                verdict = await bank.check_invariants(
                    rt,
                    tally,
                    accounts=ACCOUNTS,
                    tellers=TELLERS,
                    gave_up=len(list(iter(give_ups.get_nowait, None))),
                )
    replay = f"seed={seed} backend={anyio_backend}: " + "; ".join(verdict.lines())
    assert chaos.counts["kill"] >= 1_000, replay
    assert chaos.counts["exception"] > 0, replay
    assert chaos.counts["store_write"] > 0, replay
    assert len(tally.acknowledged) > 100, replay
    assert tally.failed > 0, replay  # the chaos was felt
    assert verdict.money_after == verdict.money_before, replay
    assert verdict.lost == [], replay
    assert verdict.duplicated == [], replay
    assert verdict.dead_actors == [], replay
    assert verdict.unsettled == 0, replay
    assert verdict.gave_up == 0, replay

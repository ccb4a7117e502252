"""The store's Prometheus families: exported when the runtime has a store, as documented."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from test_event_sourcing import Ledger, Op
from test_metrics import documented, parse, scrape
from test_persistence import Account, Deposit

import understudy as us

pytestmark = pytest.mark.anyio


async def test_a_runtime_with_a_store_exports_the_documented_store_families(
    tmp_path: Path,
) -> None:
    async with us.Runtime(store=tmp_path / "app.db", metrics=("127.0.0.1", 0)) as rt:
        refs = [await rt.spawn(Account, name=f"a{i}") for i in range(20)]
        async with anyio.create_task_group() as tg:
            for ref in refs:
                tg.start_soon(ref.ask, Deposit(1))
        assert rt.store is not None
        rt.store.fail_next_commits(1)
        with pytest.raises(us.PersistenceError):
            await refs[0].ask(Deposit(1))
        ledger = await rt.spawn(Ledger, name="ledger")
        for _ in range(3):
            await ledger.ask(Op(1))
        stats = rt.store.stats
        families, samples = parse(await scrape(rt))

    table = {n: row for n, row in documented().items() if row[2] == "exported with a store"}
    assert len(table) == 10
    for name, (kind, labels, _) in table.items():
        assert name in families, f"docs/metrics.md says {name} is exported with a store"
        family = families[name]
        assert family.type == kind, f"{name} is a {family.type}; docs/metrics.md says {kind}"
        seen = {label for sample in family.samples for label in sample.labels} - {"le"}
        assert seen == labels
    store_families = {n for n in families if n.startswith("understudy_store_")}
    assert store_families == set(table), "every store family is documented"

    def value(sample: str, **labels: str) -> float:
        return samples[(sample, frozenset(labels.items()))]

    assert value("understudy_store_commits_total") == stats.commits
    assert value("understudy_store_commit_duration_seconds_count") == stats.commits
    assert value("understudy_store_commit_group_size_count") == stats.commits
    assert value("understudy_store_commit_group_size_sum") == stats.snapshots
    assert value("understudy_store_write_errors_total") == 1
    assert value("understudy_store_journal_events_total") == 3
    assert value("understudy_store_stale_writes_total") == 0
    assert value("understudy_store_snapshot_bytes_count") == 20  # 20 first snapshots
    assert value("understudy_store_commit_duration_seconds_bucket", le="+Inf") == stats.commits
    assert value("understudy_store_commit_group_size_bucket", le="1.0") <= stats.commits


async def test_a_runtime_without_a_store_exports_no_store_family() -> None:
    async with us.Runtime(metrics=("127.0.0.1", 0)) as rt:
        families, _ = parse(await scrape(rt))
    assert not [n for n in families if n.startswith("understudy_store_")]

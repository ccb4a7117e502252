"""Prometheus metrics, the /metrics and /tree endpoint, rt.tree() and the `understudy tree` CLI.

Workloads are known exactly (N messages, k handler crashes, d dead letters...) and the tests
assert the exact values a real scrape over HTTP reports. No assertion depends on speed.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

import understudy as us
from understudy import cli
from understudy.meter import BUCKETS, Meter, count_restart
from understudy.metrics import ActorMetric

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "metrics.md"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "understudy.json"

pytestmark = pytest.mark.anyio


# ------------------------------------------------------------------------------- actors


class Inc(us.Message, frozen=True):
    pass


class Boom(us.Message, frozen=True):
    pass


class Hold(us.Message, frozen=True):
    pass


class Count(us.Request[int], frozen=True):
    pass


class Counter(us.Actor):
    def __init__(self) -> None:
        self.n = 0

    async def inc(self, msg: Inc) -> None:
        self.n += 1

    async def count(self, msg: Count) -> int:
        return self.n


class BoomRequest(us.Request[None], frozen=True):
    pass


class Nap(us.Request[None], frozen=True):
    pass


class Crasher(us.Actor):
    async def boom(self, msg: Boom) -> None:
        raise RuntimeError("induced crash")

    async def boom_request(self, msg: BoomRequest) -> None:
        raise RuntimeError("induced crash")


class Gate(us.Actor):
    """Handles ``Hold`` by telling the test it entered, then waiting for the gate."""

    def __init__(self, gate: anyio.Event, entered: anyio.Event | None = None) -> None:
        self.gate = gate
        self.entered = entered

    async def hold(self, msg: Hold) -> None:
        if self.entered is not None:
            self.entered.set()
        await self.gate.wait()

    async def count(self, msg: Count) -> int:
        await self.gate.wait()
        return 0


class Parent(us.Actor):
    async def on_start(self) -> None:
        await self.ctx.spawn(Counter, name="first-child")
        await self.ctx.spawn(Counter)

    async def inc(self, msg: Inc) -> None:
        pass


class Flaky(us.Actor):
    async def boom(self, msg: Boom) -> None:
        raise RuntimeError("induced crash")

    async def count(self, msg: Count) -> int:
        return 0


class Sleeper(us.Actor):
    async def inc(self, msg: Inc) -> None:
        await anyio.sleep(0.005)

    async def nap(self, msg: Nap) -> None:
        await anyio.sleep(10)

    async def count(self, msg: Count) -> int:
        return 0


# ------------------------------------------------------------------------------ helpers

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[dict[str, Metric], Samples]:
    """Families by exposed name (counters with ``_total``) and every sample's value."""
    families: dict[str, Metric] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        name = family.name
        if family.type == "counter" and not name.endswith("_total"):
            name += "_total"
        families[name] = family
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def absent(samples: Samples, name: str, **labels: str) -> bool:
    """No such series: a per-actor counter appears with its first non-zero value."""
    return (name, frozenset(labels.items())) not in samples


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(key[1])[label] for key in samples if key[0] == name}


async def scrape(rt: us.Runtime) -> str:
    assert rt.metrics.url is not None
    async with httpx.AsyncClient() as client:
        response = await client.get(rt.metrics.url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return response.text


async def crash_each(rt: us.Runtime, refs: list[us.Ref]) -> None:
    """Make each actor crash once and wait until every one has stopped."""
    with rt.events.subscribe(us.ActorTerminated) as terminated:
        for ref in refs:
            await ref.tell(Boom())
        stopped = 0
        async for _ in terminated:
            stopped += 1
            if stopped == len(refs):
                break


N = 500  # tells to the counter (plus one ask)
K = 3  # actors that crash once each
D = 4  # tells to a stopped actor: dead letters


async def known_workload(rt: us.Runtime) -> anyio.Event:
    """N+1 messages to "counter", K crashes, D dead letters, 1 rejection, 1 ask timeout.

    Returns the gate holding "narrow" and "slow" in a handler (open it before exiting)."""
    counter = await rt.spawn(Counter, name="counter")
    for _ in range(N):
        await counter.tell(Inc())
    assert await counter.ask(Count()) == N

    await crash_each(rt, [await rt.spawn(Crasher) for _ in range(K)])

    gone = await rt.spawn(Counter, name="gone")
    await rt.stop(gone)
    for _ in range(D):
        await gone.tell(Inc())

    gate, entered = anyio.Event(), anyio.Event()
    narrow = await rt.spawn(lambda: Gate(gate, entered), name="narrow", capacity=1, overflow="fail")
    await narrow.tell(Hold())  # queued: the actor has not run yet
    with pytest.raises(us.MailboxFull):
        await narrow.tell(Hold())
    await entered.wait()  # handling the first one, until the gate opens

    slow = await rt.spawn(lambda: Gate(gate), name="slow")
    with pytest.raises(TimeoutError):
        await slow.ask(Count(), timeout=0.01)
    return gate


async def supervised_workload(rt: us.Runtime) -> None:
    """root -> inner (gives up after its 2nd restart in a minute) -> flaky (backs off 1 ms).

    flaky crashes twice: the first is a restart after a backoff, the second makes inner give
    up, and root restarts inner (which starts a new flaky)."""
    with rt.events.subscribe(us.ChildRestarted) as restarted:
        await rt.start(
            us.Supervisor(
                name="root",
                strategy=us.OneForOne(max_restarts=3, within=60),
                children=[
                    us.Supervisor(
                        name="inner",
                        strategy=us.OneForOne(max_restarts=1, within=60),
                        children=[
                            us.Child(
                                Flaky, name="flaky", backoff=us.Backoff(0.001, 0.001, jitter=0)
                            )
                        ],
                    )
                ],
            )
        )
        for restarts in ("flaky", "inner"):
            await rt.ref("flaky").tell(Boom())
            async for event in restarted:
                if event.actor == restarts:
                    break
        assert await rt.ref("flaky").ask(Count()) == 0


# -------------------------------------------------------------------------------- tests


async def test_a_scrape_over_http_reports_exactly_the_workload() -> None:
    async with us.Runtime(metrics=("127.0.0.1", 0)) as rt:
        started = rt.events.subscribe(us.ActorStarted, buffer=1)  # keeps 1, drops the rest
        gate = await known_workload(rt)
        families, samples = parse(await scrape(rt))
        gate.set()
        started.close()

    messages = "understudy_messages_total"
    assert value(samples, messages, actor="counter", outcome="ok") == N + 1
    assert absent(samples, messages, actor="counter", outcome="error")  # none yet
    assert value(samples, messages, actor="Crasher", outcome="crash") == K
    assert absent(samples, messages, actor="Crasher", outcome="error")
    assert value(samples, messages, actor="Crasher", outcome="ok") == 0
    assert value(samples, messages, actor="narrow", outcome="rejected") == 1
    assert value(samples, messages, actor="narrow", outcome="ok") == 0  # still in progress

    # latency histograms are by class: counter and gone are Counters (gone handled none)
    handler = "understudy_handler_duration_seconds"
    assert value(samples, handler + "_count", **{"class": "Counter"}) == N + 1
    assert value(samples, handler + "_bucket", **{"class": "Counter", "le": "+Inf"}) == N + 1
    assert value(samples, handler + "_count", **{"class": "Crasher"}) == K
    assert value(samples, handler + "_sum", **{"class": "Counter"}) > 0
    buckets = [
        value(samples, handler + "_bucket", **{"class": "Counter", "le": repr(b)}) for b in BUCKETS
    ]
    assert buckets == sorted(buckets)  # cumulative
    assert label_values(samples, handler + "_count", "class") == {"Counter", "Crasher", "Gate"}

    waits = value(samples, "understudy_mailbox_wait_seconds_count", **{"class": "Counter"})
    assert 1 <= waits <= N + 1  # sampled

    dead = "understudy_dead_letters_total"
    assert value(samples, dead, reason="stopped") == D
    assert value(samples, dead, reason="crashed") == K
    assert value(samples, dead, reason="mailbox_full") == 1
    assert value(samples, dead, reason="dropped") == 0
    assert value(samples, dead, reason="shutdown") == 0

    actors = "understudy_actors"
    assert value(samples, actors, actor="counter", state="running") == 1
    assert value(samples, actors, actor="slow", state="running") == 1
    assert label_values(samples, actors, "actor") == {"counter", "narrow", "slow"}
    assert value(samples, "understudy_mailbox_capacity", actor="counter") == us.DEFAULT_CAPACITY
    assert value(samples, "understudy_mailbox_capacity", actor="narrow") == 1
    assert value(samples, "understudy_mailbox_depth", actor="counter") == 0
    assert value(samples, "understudy_mailbox_fill_ratio", actor="counter") == 0

    terminated = "understudy_actors_terminated_total"
    assert value(samples, terminated, actor="Crasher", reason="failed") == K
    assert value(samples, terminated, actor="gone", reason="shutdown") == 1

    assert value(samples, "understudy_ask_timeouts_total", actor="slow") == 1
    assert absent(samples, "understudy_ask_timeouts_total", actor="counter")
    spawned = 1 + K + 1 + 1 + 1
    assert value(samples, "understudy_event_stream_dropped_total") == spawned - 1
    assert value(samples, "understudy_build_info", version=us.__version__) == 1
    assert families["understudy_restarts_total"].samples == []  # nothing supervises yet


async def test_the_asgi_app_serves_the_same_text_as_the_endpoint() -> None:
    async with us.Runtime(metrics=("127.0.0.1", 0)) as rt:
        gate = await known_workload(rt)
        over_http = await scrape(rt)
        transport = httpx.ASGITransport(app=rt.metrics.asgi_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            response = await client.get("/metrics")
        assert rt.metrics.exposition() == over_http
        gate.set()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == over_http


async def test_two_runtimes_in_one_process_keep_separate_values() -> None:
    async with (
        us.Runtime(metrics=("127.0.0.1", 0)) as one,
        us.Runtime(metrics=("127.0.0.1", 0)) as two,
    ):
        assert one.metrics.registry is not two.metrics.registry
        assert one.metrics.address != two.metrics.address
        a = await one.spawn(Counter, name="c")
        b = await two.spawn(Counter, name="c")
        for _ in range(3):
            await a.tell(Inc())
        for _ in range(7):
            await b.tell(Inc())
        assert await a.ask(Count()) == 3
        assert await b.ask(Count()) == 7
        _, first = parse(await scrape(one))
        _, second = parse(await scrape(two))
    assert value(first, "understudy_messages_total", actor="c", outcome="ok") == 4
    assert value(second, "understudy_messages_total", actor="c", outcome="ok") == 8


async def test_a_shared_registry_holds_one_running_runtime_at_a_time() -> None:
    registry = CollectorRegistry()
    async with us.Runtime(metrics_registry=registry) as rt:
        ref = await rt.spawn(Counter, name="c")
        assert await ref.ask(Count()) == 0
        with pytest.raises(ValueError, match="Duplicated"):
            async with us.Runtime(metrics_registry=registry):
                pass
        _, samples = parse(rt.metrics.exposition())
        assert value(samples, "understudy_messages_total", actor="c", outcome="ok") == 1
    # the exited runtime left the registry; another one may report into it
    async with us.Runtime(metrics_registry=registry) as again:
        _, samples = parse(again.metrics.exposition())
        assert label_values(samples, "understudy_messages_total", "actor") == set()


async def test_the_endpoint_is_closed_once_the_runtime_exits() -> None:
    async with us.Runtime(metrics=("127.0.0.1", 0)) as rt:
        address = rt.metrics.address
        assert address is not None
        host, port = address
        assert host == "127.0.0.1"
        assert port > 0
        stream = await anyio.connect_tcp(host, port)  # it listens
        await stream.aclose()
    assert rt.metrics.address is None
    with pytest.raises(OSError, match=r"refused|connect"):
        await anyio.connect_tcp(host, port)


async def test_a_port_in_use_fails_the_runtime_start_cleanly() -> None:
    async with us.Runtime(metrics=("127.0.0.1", 0)) as rt:
        assert rt.metrics.address is not None
        taken = rt.metrics.address
        second = us.Runtime(metrics=taken)
        with pytest.raises(OSError, match="in use"):
            await second.__aenter__()
        assert second.closed
        with pytest.raises(us.RuntimeClosed):
            await second.spawn(Counter)


async def test_ten_thousand_unnamed_actors_of_one_class_are_one_label_value() -> None:
    async with us.Runtime() as rt:
        refs = [await rt.spawn(Counter) for _ in range(10_000)]
        for ref in refs:
            await ref.tell(Inc())
        for ref in refs:
            assert await ref.ask(Count()) == 1
        _, samples = parse(rt.metrics.exposition())
        assert label_values(samples, "understudy_actors", "actor") == {"Counter"}
        assert value(samples, "understudy_actors", actor="Counter", state="running") == 10_000
        assert label_values(samples, "understudy_messages_total", "actor") == {"Counter"}
        assert value(samples, "understudy_messages_total", actor="Counter", outcome="ok") == 20_000
        assert value(samples, "understudy_mailbox_capacity", actor="Counter") == 10_000 * 1000

        # stopping half keeps their counts: the counter does not go backwards
        for ref in refs[:5_000]:
            await rt.stop(ref)
        _, samples = parse(rt.metrics.exposition())
        assert value(samples, "understudy_actors", actor="Counter", state="running") == 5_000
        assert value(samples, "understudy_messages_total", actor="Counter", outcome="ok") == 20_000
        assert value(
            samples, "understudy_actors_terminated_total", actor="Counter", reason="shutdown"
        ) == (5_000)
        count = "understudy_handler_duration_seconds_count"
        assert value(samples, count, **{"class": "Counter"}) == 20_000


async def test_metrics_false_turns_per_message_accounting_off() -> None:
    async with us.Runtime(metrics=False) as rt:
        ref = await rt.spawn(Counter, name="c")
        for _ in range(10):
            await ref.tell(Inc())
        assert await ref.ask(Count()) == 10
        families, samples = parse(rt.metrics.exposition())
        tree = rt.tree()
    assert "understudy_handler_duration_seconds" not in families
    assert "understudy_mailbox_wait_seconds" not in families
    assert label_values(samples, "understudy_messages_total", "outcome") == set()
    assert value(samples, "understudy_actors", actor="c", state="running") == 1
    assert tree[0].messages == 0


async def test_a_slow_handler_lands_in_its_own_bucket() -> None:
    async with us.Runtime() as rt:
        ref = await rt.spawn(Sleeper, name="sleeper")
        for _ in range(3):
            await ref.tell(Inc())
        assert await ref.ask(Count()) == 0
        _, samples = parse(rt.metrics.exposition())
    bucket = "understudy_handler_duration_seconds_bucket"
    assert value(samples, bucket, **{"class": "Sleeper", "le": "+Inf"}) == 4
    assert value(samples, bucket, **{"class": "Sleeper", "le": "0.001"}) <= 1  # slept 5 ms each
    sleeper = {"class": "Sleeper"}
    assert value(samples, "understudy_handler_duration_seconds_sum", **sleeper) >= 0.015


async def test_supervision_counts_restarts_give_ups_and_backoff_waits() -> None:
    async with us.Runtime() as rt:
        await supervised_workload(rt)
        _, samples = parse(rt.metrics.exposition())
        tree = rt.tree()
    assert value(samples, "understudy_restarts_total", actor="flaky", reason="failed") == 1
    # A supervisor that gave up exits with reason shutdown (OTP); its parent restarts it.
    assert value(samples, "understudy_restarts_total", actor="inner", reason="shutdown") == 1
    assert label_values(samples, "understudy_restarts_total", "actor") == {"flaky", "inner"}
    give_ups = "understudy_supervisor_give_ups_total"
    assert value(samples, give_ups, actor="inner") == 1
    assert value(samples, give_ups, actor="root") == 0
    assert label_values(samples, give_ups, "actor") == {"inner", "root"}
    backoff = "understudy_backoff_wait_seconds"
    assert value(samples, backoff + "_count", actor="flaky") == 1
    assert value(samples, backoff + "_bucket", actor="flaky", le="0.001") == 1
    assert value(samples, backoff + "_sum", actor="flaky") == pytest.approx(0.001)
    assert value(samples, "understudy_messages_total", actor="flaky", outcome="crash") == 2
    terminated = "understudy_actors_terminated_total"
    assert value(samples, terminated, actor="flaky", reason="shutdown") == 1  # inner gave up
    assert value(samples, "understudy_actors", actor="flaky", state="running") == 1
    [root] = tree
    [inner] = root.children
    [flaky] = inner.children
    assert (root.name, inner.name, flaky.name) == ("root", "inner", "flaky")
    assert (inner.restarts, flaky.restarts, flaky.state) == (1, 0, "running")


async def test_an_actor_waiting_out_a_backoff_is_backing_off() -> None:
    async with us.Runtime() as rt:
        with rt.events.subscribe(us.ChildBackoff) as backoffs:
            await rt.start(
                us.Supervisor(children=[us.Child(Flaky, name="flaky", backoff=us.Backoff(60, 60))])
            )
            await rt.ref("flaky").tell(Boom())
            async for _ in backoffs:
                break
        [root] = rt.tree()
        _, samples = parse(rt.metrics.exposition())
    assert root.children[0].state == "backing_off"
    assert value(samples, "understudy_actors", actor="flaky", state="backing_off") == 1
    assert value(samples, "understudy_backoff_wait_seconds_count", actor="flaky") == 1
    assert value(samples, "understudy_backoff_wait_seconds_bucket", actor="flaky", le="30.0") == 0


async def test_restarts_counted_by_supervision_are_exported_by_reason() -> None:
    async with us.Runtime() as rt:
        ref = await rt.spawn(Counter, name="c")
        cell = ref._cell  # what supervision does each time it restarts an identity
        count_restart(cell, "failed")
        count_restart(cell, "failed")
        count_restart(cell, "killed")
        _, samples = parse(rt.metrics.exposition())
        assert rt.tree()[0].restarts == 3
    assert value(samples, "understudy_restarts_total", actor="c", reason="failed") == 2
    assert value(samples, "understudy_restarts_total", actor="c", reason="killed") == 1


async def test_other_layers_add_actor_metrics_and_sources() -> None:
    class Store:
        commits = 5

        def collect(self) -> Iterator[Metric]:
            family = GaugeMetricFamily("understudy_test_store_commits", "Test source.")
            family.add_metric([], self.commits)
            yield family

    async with us.Runtime() as rt:
        rt.metrics.add_actor_metric(
            ActorMetric("understudy_test_cells_total", "One per cell ever seen.", lambda c: 1)
        )
        rt.metrics.add_actor_metric(
            ActorMetric("understudy_test_live", "One per live cell.", lambda c: 1, "gauge")
        )
        with pytest.raises(ValueError, match="already added"):
            rt.metrics.add_actor_metric(
                ActorMetric("understudy_test_live", "2", lambda c: 0, "gauge")
            )
        with pytest.raises(ValueError, match="_total"):
            ActorMetric("understudy_test_things", "a counter without _total", lambda c: 0)
        rt.metrics.add_source(Store())
        refs = [await rt.spawn(Counter) for _ in range(3)]
        await rt.stop(refs[0])
        _, samples = parse(rt.metrics.exposition())
    assert value(samples, "understudy_test_cells_total", actor="Counter") == 3  # kept
    assert value(samples, "understudy_test_live", actor="Counter") == 2
    assert value(samples, "understudy_test_store_commits") == 5


async def test_tree_shows_nesting_queue_and_the_message_in_progress() -> None:
    async with us.Runtime(metrics=("127.0.0.1", 0)) as rt:
        await rt.spawn(Parent, name="parent")
        gate, entered = anyio.Event(), anyio.Event()
        held = await rt.spawn(lambda: Gate(gate, entered), name="held")
        for _ in range(3):
            await held.tell(Hold())
        await entered.wait()
        tree = rt.tree()
        assert rt.metrics.url is not None
        async with httpx.AsyncClient() as client:
            response = await client.get(rt.metrics.url + "/tree")
        out = io.StringIO()
        status = await anyio.to_thread.run_sync(cli.main, ["tree", rt.metrics.url], out)
        gate.set()

    parent, gated = tree
    assert (parent.name, parent.actor_class, parent.state) == ("parent", "Parent", "running")
    assert parent.children[0].name == "first-child"
    assert parent.children[1].name.startswith("Counter#")
    assert gated.handling == "Hold"
    assert gated.mailbox_depth == 2  # one in progress, two queued
    assert gated.oldest_message_age is not None
    assert gated.oldest_message_age >= 0

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    served = msgspec.json.decode(response.content, type=list[us.ActorInfo])
    assert [a.name for a in served] == ["parent", "held"]
    assert json.loads(response.content)[0]["class"] == "Parent"

    assert status == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("parent (Parent) running  mailbox 0/1000")
    assert lines[1].startswith("  first-child (Counter) running")
    assert lines[2].startswith("  Counter#")
    assert lines[3].startswith("held (Gate) running  mailbox 2/1000  oldest ")
    assert "handling Hold" in lines[3]


def test_the_cli_reports_an_unreachable_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # closed again: nothing listens there now
    assert cli.main(["tree", f"http://127.0.0.1:{port}", "--timeout", "5"]) == 1
    assert "cannot fetch http://127.0.0.1:" in capsys.readouterr().err
    assert cli.tree_url("127.0.0.1:9464/metrics") == "http://127.0.0.1:9464/tree"


async def test_the_endpoint_speaks_enough_http() -> None:
    async with us.Runtime(metrics=("127.0.0.1", 0)) as rt:
        assert rt.metrics.address is not None
        host, port = rt.metrics.address
        stream = await anyio.connect_tcp(host, port)
        async with stream:
            # two requests on one connection (keep-alive), then a HEAD, then close
            await stream.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            first = await read_response(stream)
            await stream.send(b"GET /nope?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            missing = await read_response(stream)
            await stream.send(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head = await read_response(stream, body=False)
        async with await anyio.connect_tcp(host, port) as stream:
            await stream.send(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
            refused = await read_response(stream)
        async with await anyio.connect_tcp(host, port) as stream:
            await stream.send(b"nonsense\r\n\r\n")
            bad = await read_response(stream)
    assert first[0] == 200
    assert b"understudy_build_info" in first[2]
    assert first[1].get("connection", "keep-alive") == "keep-alive"  # HTTP/1.1's default
    assert missing[0] == 404
    assert head[0] == 200
    assert int(head[1]["content-length"]) > 0
    assert head[1]["connection"] == "close"
    assert refused[0] == 405
    assert set(refused[1]["allow"].split(", ")) == {"GET", "HEAD"}
    assert bad[0] == 400


async def read_response(stream: Any, body: bool = True) -> tuple[int, dict[str, str], bytes]:
    from anyio.streams.buffered import BufferedByteReceiveStream

    reader = BufferedByteReceiveStream(stream)
    head = await reader.receive_until(b"\r\n\r\n", 65536)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    data = await reader.receive_exactly(int(headers["content-length"])) if body else b""
    assert reader.buffer == b""  # nothing read ahead into the next response
    return status, headers, data


# ------------------------------------------------------------- the meter's group timing


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_group_timing_puts_every_message_of_a_fast_group_in_the_first_bucket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    monkeypatch.setattr("understudy.meter.clock", clock)
    meter = Meter(True, 100)
    left = meter.open()
    assert left == 1  # unknown handlers are timed one by one at first
    clock.now += 0.000002
    left = meter.tally()  # 2 µs per message: groups of 50 take about 100 µs
    assert left == 50
    clock.now += 0.0001
    assert meter.tally() == 49  # what is left of the batch of 100
    clock.now += 0.0001
    assert meter.tally() == 0  # the batch is over: the actor yields
    assert (meter.handled_fast, meter.handled_slow, meter.handled) == (100, None, 100)
    assert meter.handled_seconds == pytest.approx(0.000202)
    assert meter.open() == 49  # 49 messages took 100 µs: the next group is 49


def test_a_slow_group_is_one_observation_and_timing_falls_back_to_each_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    monkeypatch.setattr("understudy.meter.clock", clock)
    meter = Meter(True, 100)
    meter.next = 10
    meter.open()
    clock.now += 2.0  # one of the ten took about two seconds
    assert meter.tally() == 1
    assert meter.handled_fast == 9
    assert meter.handled_slow is not None
    assert meter.handled_slow[BUCKETS.index(2.5) - 1] == 1
    clock.now += 0.3
    meter.close(0)  # closed before an await: the next message was slow too
    assert meter.handled_slow[BUCKETS.index(0.5) - 1] == 1
    assert meter.handled == 11
    assert meter.handled_seconds == pytest.approx(2.3)


def test_a_sampled_stamp_closes_the_group_and_observes_the_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    monkeypatch.setattr("understudy.meter.clock", clock)
    meter = Meter(True, 100)
    meter.next = 20
    assert meter.stamp
    stamp = meter.take_stamp()
    assert not meter.stamp  # fast actors: one stamp per group
    left = meter.open()
    clock.now += 0.00005
    left = meter.waited(stamp, left - 5)  # five handled, then the stamped one is due
    assert meter.handled == 5
    assert (meter.wait_fast, meter.waits) == (1, 1)
    assert meter.wait_seconds == pytest.approx(0.00005)
    assert left == meter.next
    assert meter.since == 5


def test_a_meter_that_is_off_only_paces_batches() -> None:
    meter = Meter(False, 100)
    assert meter.open() == 100
    meter.close(90)  # ten handled, then a system message
    assert meter.resume() == 90  # the batch goes on where it was
    assert meter.tally() == 0  # and ends after 100 messages in all
    assert meter.handled == 0
    assert not meter.stamp


# -------------------------------------------------- docs, alerts and dashboard vs scrape


def documented() -> dict[str, tuple[str, frozenset[str], str]]:
    """docs/metrics.md's table: name -> (type, labels, status)."""
    table: dict[str, tuple[str, frozenset[str], str]] = {}
    for line in DOCS.read_text().splitlines():
        match = re.match(r"\|\s*`(understudy_\w+)`\s*\|\s*(\w+)\s*\|([^|]*)\|([^|]+)\|", line)
        if match:
            name, kind, labels, status = match.groups()
            table[name] = (kind, frozenset(re.findall(r"`(\w+)`", labels)), status.strip())
    assert len(table) > 10, "the metrics table in docs/metrics.md was not found"
    return table


async def resilience_workload(rt: us.Runtime) -> None:
    """A breaker opened by one crash and refusing a tell; a handler cut by its timeout;
    a fallback from the open breaker to a default; a retry of the timed-out handler."""
    breaker = us.Breaker(failures=1, reset_after=60)
    await rt.start(
        us.Supervisor(
            strategy=us.OneForOne(max_restarts=10, within=60),
            children=[
                us.Child(Crasher, name="fragile", breaker=breaker),
                us.Child(Sleeper, name="hung", timeout=0.001, shutdown="brutal_kill"),
            ],
        )
    )
    fragile, hung = rt.ref("fragile"), rt.ref("hung")
    with pytest.raises(RuntimeError):
        await fragile.ask(BoomRequest())
    with pytest.raises(us.CircuitOpen):
        await fragile.tell(Boom())
    with pytest.raises(us.HandlerTimeout):
        await hung.ask(Nap())
    assert await us.first_of(fragile, default=0).ask(BoomRequest()) == 0
    retry = us.Retry(attempts=2, backoff=us.Backoff(0.001, 0.001, jitter=0))
    with pytest.raises(us.HandlerTimeout):
        await hung.ask(Nap(), retry=retry)


async def full_scrape() -> tuple[dict[str, Metric], Samples]:
    """A scrape in which every exported family has samples."""
    async with us.Runtime(metrics=("127.0.0.1", 0)) as rt:
        gate = await known_workload(rt)
        await supervised_workload(rt)
        await resilience_workload(rt)
        text = await scrape(rt)
        gate.set()
    return parse(text)


async def test_the_docs_table_matches_a_real_scrape() -> None:
    table = documented()
    families, _ = await full_scrape()
    for name, family in families.items():
        assert name in table, f"{name} is exported but not documented in docs/metrics.md"
        kind, labels, status = table[name]
        assert status == "exported", f"{name} is exported; docs/metrics.md says {status!r}"
        assert family.type == kind, f"{name} is a {family.type}; docs/metrics.md says {kind}"
        seen = {label for sample in family.samples for label in sample.labels} - {"le"}
        assert family.samples, f"the workload gave {name} no samples to check its labels"
        assert seen == labels, f"{name} has labels {seen}; docs/metrics.md says {set(labels)}"
    for name, (_, _, status) in table.items():
        if status == "exported":
            assert name in families, f"docs/metrics.md says {name} is exported; it is not"
        elif status == "exported with chaos":
            assert name not in families  # tests/test_chaos.py scrapes it with chaos attached
        elif status == "exported with a store":
            assert name not in families  # tests/test_persistence_metrics.py scrapes it
        elif status in ("exported with a pool", "exported with an entity type"):
            assert name not in families  # tests/test_pools.py, tests/test_entities.py scrape it
        elif status == "exported with llm calls":  # llm area
            assert name not in families  # tests/test_llm_records.py scrapes it
        else:
            assert re.fullmatch(r"reserved \((supervision|persistence)\)", status), status


def referenced_names(text: str) -> set[str]:
    names = set(re.findall(r"\bunderstudy_[a-z0-9_]+", text))
    table = documented()
    resolved = set()
    for name in names:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        resolved.add(base if base in table and table[base][0] == "histogram" else name)
    return resolved


async def test_alerts_and_dashboard_use_only_documented_metrics() -> None:
    table = documented()
    families, _ = await full_scrape()
    exprs = [
        target["expr"]
        for panel in json.loads(DASHBOARD.read_text())["panels"]
        for target in panel.get("targets", [])
    ]
    used = referenced_names(ALERTS.read_text()) | referenced_names("\n".join(exprs))
    assert "understudy_messages_total" in used
    for name in sorted(used):
        assert name in table, f"{name} is used in deploy/ but not documented in docs/metrics.md"
        if table[name][2] == "exported":
            assert name in families, f"{name} is used in deploy/ but absent from a real scrape"
    alert_names = referenced_names(ALERTS.read_text())
    for needed in (
        "understudy_messages_total",
        "understudy_handler_duration_seconds",
        "understudy_restarts_total",
        "understudy_supervisor_give_ups_total",
        "understudy_mailbox_fill_ratio",
        "understudy_store_commit_duration_seconds",
    ):
        assert needed in alert_names


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # a subprocess: one backend is enough
@pytest.mark.skipif(  # in CI (CI set) a missing promtool fails instead: .ci/run installs it
    shutil.which("promtool") is None and not os.environ.get("CI"),
    reason="promtool is not installed (Debian: apt-get install prometheus)",
)
async def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None
    for args in (["check", "rules", str(ALERTS)], ["test", "rules", str(ALERT_TESTS)]):
        result = await anyio.run_process([promtool, *args], check=False)
        output = result.stdout.decode() + result.stderr.decode()
        assert result.returncode == 0, output


def test_runtime_refuses_a_malformed_metrics_argument() -> None:
    with pytest.raises(TypeError, match=r"\(host, port\)"):
        us.Runtime(metrics="127.0.0.1:9464")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="port"):
        us.Runtime(metrics=("127.0.0.1", 70000))

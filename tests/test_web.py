"""The runtime's ASGI app and its HTTP endpoint: /metrics, /tree, /healthz, /readyz, served by
hypercorn with a connection cap, bounded requests, idle connections closed, accept errors
ridden out, and a scrape that never stalls the actors nor fails for one of them."""

from __future__ import annotations

import errno
import logging
import socket
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import understudy as us
from understudy.metrics import ActorMetric
from understudy.metrics._collector import label_value
from understudy.web import MAX_BODY, _server

pytestmark = pytest.mark.anyio


class Ping(us.Request[str], frozen=True):
    pass


class Boom(us.Message, frozen=True):
    pass


class Echo(us.Actor):
    async def ping(self, msg: Ping) -> str:
        return "pong"


class Fragile(us.Actor):
    async def boom(self, msg: Boom) -> None:
        raise RuntimeError("induced crash")

    async def ping(self, msg: Ping) -> str:
        return "pong"


def client(rt: us.Runtime) -> httpx.AsyncClient:
    """An in-process client of the runtime's ASGI app (no socket)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=rt.metrics.asgi_app()), base_url="http://app"
    )


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# ------------------------------------------------------------------------------ the app


async def test_the_app_serves_metrics_tree_and_both_probes() -> None:
    async with us.Runtime() as rt:
        echo = await rt.spawn(Echo, name="echo")
        assert await echo.ask(Ping()) == "pong"
        async with client(rt) as http:
            metrics = await http.get("/metrics")
            tree = await http.get("/tree")
            alive = await http.get("/healthz")
            ready = await http.get("/readyz")
            missing = await http.get("/nope")
            head = await http.head("/metrics")
            post = await http.post("/metrics", content=b"x")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    got = samples(metrics.text)
    assert (
        got[("understudy_messages_total", frozenset({("actor", "echo"), ("outcome", "ok")}))] == 1
    )
    assert [actor["name"] for actor in tree.json()] == ["echo"]
    assert (alive.status_code, alive.json()) == (200, {"status": "alive"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert missing.status_code == 404
    assert "/readyz" in missing.text
    assert head.status_code == 200
    assert int(head.headers["content-length"]) == len(metrics.content)
    assert head.content == b""
    assert post.status_code == 405


async def test_asgi_app_is_one_app_and_the_endpoint_serves_it() -> None:
    async with us.Runtime(metrics=("127.0.0.1", 0)) as rt:
        assert rt.metrics.asgi_app() is rt.metrics.asgi_app()
        await rt.spawn(Echo, name="echo")
        async with httpx.AsyncClient(base_url=rt.metrics.url) as http:
            over_http = await http.get("/tree")
            ready = await http.get("/readyz")
        async with client(rt) as http:
            mounted = await http.get("/tree")
    assert over_http.json() == mounted.json()
    assert ready.json() == {"status": "ready"}


async def test_a_body_over_the_bound_is_refused_before_any_route() -> None:
    async with us.Runtime() as rt, client(rt) as http:
        big = await http.post("/metrics", content=b"x" * (MAX_BODY + 1))

        async def body() -> Any:
            yield b"x"

        chunked = await http.post("/metrics", content=body())  # no length
    assert big.status_code == 413
    assert chunked.status_code == 413


# ---------------------------------------------------------------------------- readiness


async def test_readiness_is_503_with_the_reason_once_a_root_gave_up() -> None:
    tree = us.Supervisor(
        name="app",
        strategy=us.OneForOne(max_restarts=1, within=60),
        children=[us.Child(Fragile, name="fragile")],
    )
    async with us.Runtime() as rt:
        await rt.start(tree)
        async with client(rt) as http:
            before = await http.get("/readyz")
            async with anyio.create_task_group() as tg:
                gave_up: list[BaseException | None] = []

                async def wait() -> None:  # a host that watches: the runtime is not cancelled
                    gave_up.append(await rt.wait())

                tg.start_soon(wait)
                await anyio.lowlevel.checkpoint()
                for _ in range(2):
                    with pytest.raises((us.UnknownActor, us.ActorStopped, us.RuntimeClosed)):
                        while True:
                            await rt.ref("fragile").tell(Boom())
                            await anyio.sleep(0.01)
            ready = await http.get("/readyz")
            alive = await http.get("/healthz")
    assert before.status_code == 200
    assert before.json()["roots"] == [{"name": "app", "state": "running"}]
    assert isinstance(gave_up[0], us.RestartIntensityExceeded)
    assert ready.status_code == 503
    assert ready.json()["status"] == "failed"
    assert "gave up" in ready.json()["reason"]
    assert "'app'" in ready.json()["reason"]
    assert alive.status_code == 503  # nothing in the process brings the tree back


async def test_probes_answer_while_the_runtime_stops_and_after_it_exited() -> None:
    seen: dict[str, tuple[int, dict[str, Any]]] = {}

    class Watcher(us.Actor):
        async def on_stop(self) -> None:  # runs during the runtime's graceful shutdown
            async with client(rt) as http:
                for path in ("/healthz", "/readyz"):
                    response = await http.get(path)
                    seen[path] = (response.status_code, response.json())

    rt = us.Runtime()
    async with client(rt) as http:
        not_started = await http.get("/readyz")
    async with rt:
        await rt.spawn(Watcher)
    async with client(rt) as http:
        after = await http.get("/healthz")
    assert not_started.status_code == 503
    assert seen["/healthz"] == (
        200,
        {"status": "stopping", "reason": "the runtime is shutting down"},
    )
    assert seen["/readyz"][0] == 503
    assert seen["/readyz"][1]["status"] == "stopping"
    assert after.status_code == 503
    assert after.json() == {"status": "stopped", "reason": "the runtime is not running"}


# ------------------------------------------------------------------------------- scrape


async def test_a_scrape_that_fails_on_one_actor_serves_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def read(cell: Any) -> float:
        if cell.name == "bad":
            raise RuntimeError("cannot read this one")
        return 1.0

    async with us.Runtime() as rt:
        rt.metrics.add_actor_metric(ActorMetric("understudy_test_reads", "test", read, "gauge"))
        for name in ("a", "bad", "b"):
            await rt.spawn(Echo, name=name)
        with caplog.at_level(logging.ERROR, "understudy.metrics"):
            async with client(rt) as http:
                response = await http.get("/metrics")
                again = await http.get("/metrics")
    assert response.status_code == 200
    got = samples(response.text)
    assert got[("understudy_test_reads", frozenset({("actor", "a")}))] == 1
    assert got[("understudy_test_reads", frozenset({("actor", "b")}))] == 1
    assert ("understudy_test_reads", frozenset({("actor", "bad")})) not in got
    assert got[("understudy_actors", frozenset({("actor", "bad"), ("state", "running")}))] == 1
    assert got[("understudy_scrape_errors_total", frozenset())] == 1
    assert samples(again.text)[("understudy_scrape_errors_total", frozenset())] == 2
    assert "left out of a scrape" in caplog.text


async def test_a_name_that_cannot_be_encoded_never_breaks_a_scrape() -> None:
    assert label_value("\ud800") == "\\\\ud800"  # spelled out, then the backslash escaped
    assert label_value('a"b\nc\\') == 'a\\"b\\nc\\\\'
    async with us.Runtime() as rt:
        await rt.spawn(Echo, name="fine")
        try:
            await rt.spawn(Echo, name="\ud800")
        except (ValueError, TypeError):
            refused = True  # names are validated at spawn: nothing to scrape
        else:
            refused = False
        async with client(rt) as http:
            metrics = await http.get("/metrics")
            tree = await http.get("/tree")
    assert metrics.status_code == 200
    assert tree.status_code == 200
    got = samples(metrics.text)
    assert got[("understudy_actors", frozenset({("actor", "fine"), ("state", "running")}))] == 1
    if not refused:
        key = ("understudy_actors", frozenset({("actor", "\\ud800"), ("state", "running")}))
        assert got[key] == 1
        assert "\\ud800" in [actor["name"] for actor in tree.json()]  # spelled out


async def test_concurrent_scrapes_share_one_build() -> None:
    async with us.Runtime() as rt:
        for i in range(2_500):  # several chunks: the build yields between them
            await rt.spawn(Echo, name=f"echo-{i}")
        results: list[list[bytes]] = []

        async def scrape() -> None:
            results.append(await rt.metrics.scrape())

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(scrape)
        later = await rt.metrics.scrape()
    assert len(results) == 20
    assert all(result is results[0] for result in results)
    assert later is not results[0]  # a scrape after it is built anew
    assert b"".join(later) == b"".join(results[0])


async def test_a_scrape_of_many_actors_lets_the_others_run() -> None:
    async with us.Runtime() as rt:
        for i in range(3_000):
            await rt.spawn(Echo, name=f"echo-{i}")
        ticks = 0
        scraped = anyio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not scraped.is_set():
                ticks += 1
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            await anyio.lowlevel.checkpoint()
            start = ticks
            await rt.metrics.scrape()
            during = ticks - start
            scraped.set()
    assert during >= 1  # the loop ran between the scrape's chunks (trio may batch the yields)


# ----------------------------------------------------------------------------- the server


async def read_all(stream: Any) -> bytes:
    data = b""
    with anyio.fail_after(5):
        try:
            while True:
                data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return data


async def test_connections_beyond_the_cap_are_refused_and_the_rest_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_server, "MAX_CONNECTIONS", 3)
    async with us.Runtime(metrics=("127.0.0.1", 0)) as rt:
        assert rt.metrics.address is not None
        host, port = rt.metrics.address
        held = [await anyio.connect_tcp(host, port) for _ in range(3)]
        server = rt.metrics.server
        assert server is not None
        with anyio.fail_after(5):
            while server.open < 3:
                await anyio.sleep(0.01)
        extra = await anyio.connect_tcp(host, port)
        refused = await read_all(extra)
        await held[0].send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        served = await read_all(held[0])
        for stream in held:
            await stream.aclose()
        with anyio.fail_after(5):
            while server.open:
                await anyio.sleep(0.01)
        async with httpx.AsyncClient() as http:
            after = await http.get(f"{rt.metrics.url}/readyz")
        assert server.refused == 1
    assert refused.startswith(b"HTTP/1.1 503 ")
    assert served.startswith(b"HTTP/1.1 200 ")
    assert after.status_code == 200


class FlakySocket:
    """A listening socket whose first accepts fail as when descriptors run out."""

    def __init__(self, sock: socket.socket, failures: int) -> None:
        self.sock = sock
        self.failures = failures

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self) -> tuple[socket.socket, Any]:
        if self.failures:
            self.failures -= 1
            if self.failures == 0:  # the last one is not even an OSError
                raise RuntimeError("an accept that fails in an unexpected way")
            raise OSError(errno.EMFILE, "Too many open files")
        return self.sock.accept()

    def close(self) -> None:
        self.sock.close()


async def test_accept_errors_never_end_the_runtime(caplog: pytest.LogCaptureFixture) -> None:
    async with us.Runtime(metrics=("127.0.0.1", 0)) as rt:
        server = rt.metrics.server
        assert server is not None
        server._sock = FlakySocket(server._sock, failures=3)  # type: ignore[assignment]
        echo = await rt.spawn(Echo)
        with caplog.at_level(logging.WARNING, "understudy.web"):
            async with httpx.AsyncClient() as http:
                response = await http.get(f"{rt.metrics.url}/healthz")
        assert await echo.ask(Ping()) == "pong"
        assert server.accept_errors == 3
    assert response.status_code == 200
    assert "pausing accepts" in caplog.text
    assert "an accept that fails in an unexpected way" in caplog.text


async def test_idle_and_oversized_requests_are_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_server, "IDLE_TIMEOUT", 1)
    async with us.Runtime(metrics=("127.0.0.1", 0)) as rt:
        assert rt.metrics.address is not None
        host, port = rt.metrics.address
        idle = await anyio.connect_tcp(host, port)
        with anyio.fail_after(10):
            assert await read_all(idle) == b""  # closed without a word
        big = await anyio.connect_tcp(host, port)
        await big.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
        answer = await read_all(big)
    assert answer.split(b" ")[1] in (b"400", b"431")


# ------------------------------------------------------------------------------ re-entry


async def test_a_runtime_can_be_entered_again_and_counts_on(tmp_path: Any) -> None:
    class Tally(us.Actor):
        persistent = True

        class State(us.Message, frozen=True):
            n: int = 0

        async def ping(self, msg: Ping) -> str:
            self.state = Tally.State(self.state.n + 1)
            return str(self.state.n)

    rt = us.Runtime(store=tmp_path / "app.db", metrics=("127.0.0.1", 0))
    for expected in ("1", "2"):
        async with rt:
            tally = await rt.spawn(Tally, name="tally")
            assert await tally.ask(Ping()) == expected
            async with client(rt) as http:
                ready = await http.get("/readyz")
            assert ready.status_code == 200
            text = rt.metrics.exposition()
    key = ("understudy_messages_total", frozenset({("actor", "tally"), ("outcome", "ok")}))
    assert samples(text)[key] == 2  # counters carry on across runs
    with pytest.raises(RuntimeError, match="already running"):
        async with rt, rt:
            pass
    given = us.Runtime(store=us.Store(tmp_path / "other.db"))
    async with given:
        pass
    with pytest.raises(RuntimeError, match="Store object"):
        async with given:
            pass


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the script runs both backends itself
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
async def test_running_out_of_descriptors_through_the_endpoint_never_ends_the_runtime(
    backend: str,
) -> None:
    script = Path(__file__).parent / "web_fd_exhaustion.py"
    with anyio.fail_after(60):
        result = await anyio.run_process([sys.executable, str(script), backend], check=False)
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert out.strip() == "accept_errors>0=True ask=pong served_after=True"


async def test_a_scrape_whose_caller_is_cancelled_is_not_shared_half_built() -> None:
    async with us.Runtime() as rt:
        for i in range(5_000):  # five chunks: the build checkpoints four times
            await rt.spawn(Echo, name=f"echo-{i}")
        whole = b"".join(await rt.metrics.scrape())
        got: list[bytes] = []
        scope = anyio.CancelScope()

        async def builder() -> None:
            with scope:
                await rt.metrics.scrape()

        async def patient() -> None:
            got.append(b"".join(await rt.metrics.scrape()))

        async with anyio.create_task_group() as tg:
            tg.start_soon(builder)
            tg.start_soon(patient)
            await anyio.lowlevel.checkpoint()  # the build began and the patient one waits on it
            scope.cancel()  # the build's own caller goes away mid-build
    assert scope.cancelled_caught
    assert got == [whole]

"""Run by tests/test_web.py in a subprocess: exhaust the process's file descriptors through
the metrics endpoint (connections from the same process, under a low RLIMIT_NOFILE) and show
that the runtime survives, keeps its actors answering, and serves again once they close.

Prints one line of facts; exits 0.
"""

import contextlib
import resource
import socket
import sys

import anyio

import understudy as us

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


class Ping(us.Request[str], frozen=True):
    pass


class Echo(us.Actor):
    async def ping(self, msg: Ping) -> str:
        return "pong"


async def main() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
    async with us.Runtime(metrics=("127.0.0.1", 0)) as rt:
        echo = await rt.spawn(Echo)
        assert rt.metrics.address is not None
        held: list[socket.socket] = []
        try:
            while True:  # until the process has no descriptor left (no await: none accepted)
                sock = socket.socket()
                held.append(sock)
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    sock.connect(rt.metrics.address)
        except OSError:
            pass  # EMFILE on our side: the server hit it too (accepts failed)
        for _ in range(50):
            await anyio.sleep(0.01)  # let the accept loop run into the limit
        server = rt.metrics.server
        assert server is not None
        errors = server.accept_errors
        answer = await echo.ask(Ping())
        for sock in held:
            sock.close()
        with anyio.fail_after(10):
            while True:
                try:
                    stream = await anyio.connect_tcp(*rt.metrics.address)
                except OSError:
                    await anyio.sleep(0.05)
                    continue
                async with stream:
                    await stream.send(
                        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                    )
                    reply = b""
                    try:
                        while True:
                            reply += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        pass
                if reply.startswith(b"HTTP/1.1 200"):
                    break
                await anyio.sleep(0.05)
        print(f"accept_errors>0={errors > 0} ask={answer} served_after=True")


anyio.run(main, backend=sys.argv[1])

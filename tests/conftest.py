"""Fixtures shared by every test: a real upstream, a real gateway on real sockets, real Redis."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway.native import NATIVE_MODULES, native_state
from gateway.serve import Gateway
from tests.upstream_app import build_upstream_app


def pytest_report_header() -> str:
    compiled, _ = native_state()
    return f"gateway: {len(compiled)} of {len(NATIVE_MODULES)} native modules compiled (mypyc)"


def pytest_sessionstart(session: pytest.Session) -> None:
    if native_state()[1]:
        pytest.exit(
            "the compiled modules were built from other sources than these: run "
            "scripts/bootstrap (or delete them: find gateway -name '*.so' -delete)",
            returncode=2,
        )


@pytest.fixture(autouse=True)
async def no_exception_left_handled() -> AsyncIterator[None]:
    """After each test, no exception is still "being handled" on the event loop's thread.

    Compiled code (gateway/native.py) that suspended while handling one would leave it there,
    to become the __context__ of every later exception (tests/ops/test_native.py has the
    rules that avoid it); this catches a case those rules miss."""
    yield
    seen: list[BaseException | None] = []
    asyncio.get_running_loop().call_soon(lambda: seen.append(sys.exc_info()[1]))
    await asyncio.sleep(0)
    assert seen == [None], f"an exception is left as the thread's current one: {seen}"


SHARED = Path(__file__).resolve().parents[2] / "shared"
CRS_DIR = SHARED / "crs-4.28.0"
# The example policies read the rules directory from GATEWAY_CRS_DIR, as an operator would set it.
os.environ.setdefault("GATEWAY_CRS_DIR", str(CRS_DIR / "rules"))

QUIET_LISTEN = """
listen: {proxy: "127.0.0.1:0", health: "127.0.0.1:0", metrics: "127.0.0.1:0",
         admin: "127.0.0.1:0"}
shutdown: {drain: 0s, grace: 5s}
"""


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    """A real aiohttp upstream on a free loopback port."""
    server = TestServer(build_upstream_app())
    await server.start_server()
    yield server
    await server.close()


@dataclass
class RunningGateway:
    gateway: Gateway
    policy_path: Path

    def url(self, port: str, path: str = "/") -> str:
        return f"http://{self.gateway.addresses[port]}{path}"

    @property
    def proxy(self) -> str:
        return self.url("proxy", "")

    def write_policy(self, text: str) -> None:
        """Replace the policy file atomically, the way an editor or a ConfigMap update does."""
        temporary = self.policy_path.with_suffix(".tmp")
        temporary.write_text(text)
        temporary.replace(self.policy_path)


GatewayFactory = Callable[[str], Awaitable[RunningGateway]]


def policy_text(body: str, upstream_url: str | None) -> str:
    """A policy for tests: loopback ports chosen by the OS, no drain, and the given body."""
    upstream = f'upstream: {{url: "{upstream_url}"}}\n' if upstream_url else ""
    return QUIET_LISTEN + upstream + textwrap.dedent(body)


@pytest.fixture
async def make_gateway(upstream: TestServer, tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    """Starts a gateway in this process on a policy (YAML body without listen/upstream)."""
    started: list[Gateway] = []

    async def start(body: str) -> RunningGateway:
        path = tmp_path / f"policy{len(started)}.yaml"
        text = (
            body
            if body.lstrip().startswith("listen:")
            else policy_text(body, str(upstream.make_url("")).rstrip("/"))
        )
        path.write_text(text)
        gateway = Gateway(str(path))
        await gateway.start()
        started.append(gateway)
        return RunningGateway(gateway, path)

    yield start
    for gateway in started:
        await gateway.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """A real HTTP client that keeps no cookies and decompresses nothing."""
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RedisServer:
    """A redis-server of the tests' own, which they may stop and start again."""

    port: int
    directory: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (scripts/test installs it)")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.directory,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            sock.recv(16)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server of our own for the session (never the shared one on 6379)."""
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(free_port(), directory)
        server.start()
        yield server
        server.stop()


@pytest.fixture
def redis(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The session's redis-server, emptied before each test and running again if one stopped it."""
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    redis_server.flush()
    yield redis_server

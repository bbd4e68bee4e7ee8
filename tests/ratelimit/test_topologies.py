"""Redis Cluster and Sentinel URLs, against real (single-node) servers started by the test."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.policy.model import Store
from gateway.ratelimit.strategies import Fixed, FixedWindow, SlidingWindow, TokenBucket
from gateway.stores import open_store
from tests.conftest import RedisServer, free_port


def command(port: int, *args: str) -> bytes:
    """One inline command over a raw socket (no client library between us and the server)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall((" ".join(args) + "\r\n").encode())
        time.sleep(0.05)
        return sock.recv(65536)


def spawn(args: list[str], port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    assert binary is not None
    process = subprocess.Popen(
        [binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if command(port, "PING").startswith(b"+PONG"):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    pytest.fail(f"redis-server {args} did not start")


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too; Redis wants it below 55536."""
    for _ in range(100):
        port = random.randint(20000, 55000)
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    pytest.fail("no free port pair for a cluster node")


@pytest.fixture
def cluster_url(tmp_path: Path) -> Iterator[str]:
    """A one-node Redis Cluster owning every slot: multi-key scripts still need one slot."""
    port = cluster_port()
    process = spawn(
        ["--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
         "--cluster-config-file", str(tmp_path / "nodes.conf"), "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        port,
    )  # fmt: skip
    command(port, "CLUSTER", "ADDSLOTSRANGE", "0", "16383")
    deadline = time.monotonic() + 10
    while b"cluster_state:ok" not in command(port, "CLUSTER", "INFO"):
        assert time.monotonic() < deadline, "the cluster did not become ok"
        time.sleep(0.1)
    yield f"redis+cluster://127.0.0.1:{port}/0"
    process.kill()
    process.wait()


@pytest.fixture
def sentinel_url(redis: RedisServer, tmp_path: Path) -> Iterator[str]:
    """A sentinel watching the test redis-server as `mymaster`."""
    port = free_port()
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor mymaster 127.0.0.1 {redis.port} 1\n"
    )
    process = spawn([str(config), "--sentinel"], port)
    yield f"redis+sentinel://127.0.0.1:{port}/mymaster/0"
    process.kill()
    process.wait()


async def decide_everywhere(url: str) -> None:
    store = open_store(Store(url=url, on_error="closed"))
    try:
        now = 1_700_000_000.0
        for strategy in (FixedWindow(2, Fixed(60)), SlidingWindow(2, 60), TokenBucket(2, 60)):
            key = f"rl:{{{type(strategy).__name__}|k}}"
            results = [(await strategy.hit(store, key, 1, now)).allowed for _ in range(3)]
            assert results == [True, True, False]
        assert await store.reset("rl:{SlidingWindow|") == 1  # the one window written
    finally:
        await store.close()


async def test_a_cluster_url_decides_in_one_slot(cluster_url: str) -> None:
    """On Redis Cluster every algorithm works: a rule's keys share one hash slot."""
    await decide_everywhere(cluster_url)


async def test_a_sentinel_url_finds_the_master(sentinel_url: str) -> None:
    """A Sentinel URL reaches the master the sentinel names, and decides there."""
    await decide_everywhere(sentinel_url)

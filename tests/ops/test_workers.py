"""`workers: 2` on a real `gateway run`: both workers serve, drain together, come back when
killed, and a Redis-backed limit stays exact across them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp.test_utils import TestServer

from gateway.errors import PolicyError
from gateway.policy.loader import parse_policy
from gateway.policy.model import Store
from gateway.ratelimit.strategies import SlidingWindow
from gateway.stores import open_store
from tests.conftest import RedisServer, policy_text
from tests.ops.conftest import eventually

ROOT = Path(__file__).resolve().parents[2]
ROUTES = "routes:\n  - name: default\n    match: {path_prefix: /}\n"


@dataclass
class Supervised:
    """A `gateway run` with workers, its stdout parsed into JSON lines as they come."""

    process: asyncio.subprocess.Process
    lines: list[dict[str, Any]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    def events(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            line
            for line in self.lines
            if line.get("event") == event and all(line.get(k) == v for k, v in fields.items())
        ]

    async def wait_for(self, check: Callable[[], bool], within: float = 10.0) -> None:
        async def holds() -> bool:
            return check()

        await eventually(holds, within=within)

    @property
    def urls(self) -> dict[str, str]:
        started = self.events("gateway_started", worker=0)[-1]
        return {k[: -len("_url")]: v for k, v in started.items() if k.endswith("_url")}

    def worker_pid(self, index: int) -> int:
        return int(self.events("worker_spawned", worker=index)[-1]["pid"])


@pytest.fixture
async def start_workers(
    upstream: TestServer, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[Supervised]]]:
    """Runs `python -m gateway run` on a `workers: 2` policy; kills whatever is left at the end."""
    started: list[Supervised] = []

    async def read(gw: Supervised) -> None:
        assert gw.process.stdout is not None
        async for raw in gw.process.stdout:
            with contextlib.suppress(ValueError):  # the "gateway is up" banner
                gw.lines.append(json.loads(raw))

    async def start(extra: str = "", routes: str = ROUTES) -> Supervised:
        path = tmp_path / "policy.yaml"
        body = "workers: 2\n" + extra + routes
        path.write_text(policy_text(body, str(upstream.make_url("")).rstrip("/")))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "run",
            "--policy",
            str(path),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        gw = Supervised(process)
        gw.reader = asyncio.create_task(read(gw))
        started.append(gw)
        await gw.wait_for(lambda: len(gw.events("gateway_started")) == 2)
        return gw

    yield start
    for gw in started:
        pids = [int(line["pid"]) for line in gw.events("worker_spawned")]
        if gw.process.returncode is None:
            gw.process.kill()
        for pid in pids:  # workers notice an orphaning within a second; do not wait for it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await gw.process.wait()
        if gw.reader is not None:
            gw.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gw.reader


async def get_fresh(url: str) -> int:
    """One request on a new connection: SO_REUSEPORT spreads connections, not requests."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session, session.get(url) as response:
        await response.read()
        return response.status


def workers_seen(gw: Supervised) -> set[int]:
    return {int(line["worker"]) for line in gw.events("access")}


async def test_two_workers_share_the_proxy_port_and_only_worker_0_opens_the_others(
    start_workers: Callable[..., Awaitable[Supervised]],
) -> None:
    """Both workers answer on the one proxy port, each access line names its worker, and only
    worker 0 serves the health, metrics and admin ports."""
    gw = await start_workers()
    proxy_urls = {line["proxy_url"] for line in gw.events("gateway_started")}
    assert len(proxy_urls) == 1
    assert "health_url" not in gw.events("gateway_started", worker=1)[0]
    for _ in range(40):
        assert await get_fresh(gw.urls["proxy"] + "/echo/spread") == 200
    await gw.wait_for(lambda: len(gw.events("access")) == 40)
    assert workers_seen(gw) == {0, 1}
    assert await get_fresh(gw.urls["health"] + "/readyz") == 200


async def test_sigterm_drains_both_workers_and_exits_zero(
    start_workers: Callable[..., Awaitable[Supervised]], client: aiohttp.ClientSession
) -> None:
    """On SIGTERM to the supervisor both workers drain, a request in flight still gets its 200,
    and the supervisor exits 0 once both have exited."""
    gw = await start_workers()

    async def slow() -> int:
        async with client.get(gw.urls["proxy"] + "/slow?seconds=1") as response:
            await response.read()
            return response.status

    in_flight = asyncio.create_task(slow())
    await asyncio.sleep(0.3)  # let it reach the upstream
    gw.process.send_signal(signal.SIGTERM)
    assert await in_flight == 200
    async with asyncio.timeout(10):
        assert await gw.process.wait() == 0
    assert {line["worker"] for line in gw.events("exit")} == {0, 1}
    assert gw.events("workers_exited")[0]["codes"] == [0, 0]


async def test_a_killed_worker_is_restarted_and_serves_again(
    start_workers: Callable[..., Awaitable[Supervised]],
) -> None:
    """A worker killed by SIGKILL is logged and started again; the port keeps answering and the
    new worker takes its share of connections."""
    gw = await start_workers()
    killed = gw.worker_pid(1)
    os.kill(killed, signal.SIGKILL)
    await gw.wait_for(lambda: bool(gw.events("worker_exited", worker=1)))
    assert gw.events("worker_exited", worker=1)[0]["code"] == -signal.SIGKILL
    await gw.wait_for(lambda: len(gw.events("gateway_started", worker=1)) == 2)
    assert gw.worker_pid(1) != killed
    for _ in range(40):
        assert await get_fresh(gw.urls["proxy"] + "/echo/after") == 200
    await gw.wait_for(lambda: len(gw.events("access")) == 40)
    assert workers_seen(gw) == {0, 1}


async def test_redis_store_keeps_a_limit_exact_across_workers(
    start_workers: Callable[..., Awaitable[Supervised]], redis: RedisServer
) -> None:
    """With the Redis store, 60 concurrent requests against a limit of 20 spread over both
    workers and exactly 20 are admitted."""
    limited = ROUTES + "    rate_limit: [{name: burst, limit: 20, window: 1m}]\n"
    gw = await start_workers(f'store: {{url: "{redis.url}"}}\n', limited)
    assert not gw.events("rate_limits_per_worker")
    statuses = await asyncio.gather(
        *(get_fresh(gw.urls["proxy"] + "/echo/limited") for _ in range(60))
    )
    assert statuses.count(200) == 20 and statuses.count(429) == 40
    await gw.wait_for(lambda: len(gw.events("access")) == 60)
    assert workers_seen(gw) == {0, 1}


async def test_the_local_fallback_divides_a_limit_among_replicas_and_workers(
    redis: RedisServer,
) -> None:
    """With Redis down, a worker of 2 on each of 2 replicas counts locally at limit / 4."""
    store = open_store(
        Store(url=redis.url, on_error="local", replicas=2, retry_interval=60.0), workers=2
    )
    strategy = SlidingWindow(12, 3600)
    now = 1_700_000_000.0
    try:
        redis.stop()
        admitted = [(await strategy.hit(store, "rl:{r|k}", 1, now)).allowed for _ in range(5)]
        assert admitted == [True] * 3 + [False] * 2
    finally:
        await store.close()
        redis.start()


def test_workers_below_one_is_a_policy_error() -> None:
    """`workers: 0` is refused at load with the file, place and bound."""
    with pytest.raises(PolicyError) as caught:
        parse_policy("workers: 0\nroutes: [{name: d}]\n", "p.yaml")
    assert (
        str(caught.value)
        == "p.yaml:1:1: workers: Input should be greater than or equal to 1, got 0"
    )


async def test_workers_exit_when_their_supervisor_is_killed(
    start_workers: Callable[..., Awaitable[Supervised]],
) -> None:
    """A supervisor killed by SIGKILL leaves no worker serving behind it."""
    gw = await start_workers()
    pids = [gw.worker_pid(0), gw.worker_pid(1)]
    gw.process.kill()
    await gw.process.wait()

    async def all_gone() -> bool:
        return not any(_alive(pid) for pid in pids)

    await eventually(all_gone, within=8.0)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

"""SIGTERM on a real `gateway run` process: unready at once, drain, finish in-flight, exit 0."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import policy_text
from tests.ops.conftest import eventually

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class GatewayProcess:
    process: asyncio.subprocess.Process
    urls: dict[str, str]
    lines: list[dict[str, Any]]

    async def read_until(self, event: str, within: float = 10.0) -> dict[str, Any]:
        """Read stdout until a JSON line with this event (other output is kept too)."""
        assert self.process.stdout is not None
        async with asyncio.timeout(within):
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    pytest.fail(f"gateway exited before logging {event!r}")
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue  # the human-readable "gateway is up" banner
                self.lines.append(line)
                if line.get("event") == event:
                    return dict(line)


@pytest.fixture
async def start_process(upstream: TestServer, tmp_path: Path) -> AsyncIterator[Any]:
    """Runs `python -m gateway run --policy FILE` with port-0 listeners; kills it if still up."""
    started: list[asyncio.subprocess.Process] = []

    async def start(drain: str, grace: str) -> GatewayProcess:
        path = tmp_path / "policy.yaml"
        text = policy_text(
            "routes:\n  - name: default\n    match: {path_prefix: /}\n",
            str(upstream.make_url("")).rstrip("/"),
        ).replace(
            "shutdown: {drain: 0s, grace: 5s}", f"shutdown: {{drain: {drain}, grace: {grace}}}"
        )
        path.write_text(text)
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
        started.append(process)
        running = GatewayProcess(process, {}, [])
        line = await running.read_until("gateway_started")
        running.urls = {k[: -len("_url")]: v for k, v in line.items() if k.endswith("_url")}
        return running

    yield start
    for process in started:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def status_of(client: aiohttp.ClientSession, url: str) -> int:
    async with client.get(url) as response:
        await response.read()
        return response.status


async def test_sigterm_drains_serves_and_finishes_in_flight_then_exits_zero(
    start_process: Any, client: aiohttp.ClientSession
) -> None:
    """After SIGTERM /readyz is 503 at once, new requests are served during the drain, the one
    in flight completes 200, and the process exits 0 within drain + grace."""
    gw: GatewayProcess = await start_process(drain="1s", grace="3s")
    proxy, health = gw.urls["proxy"], gw.urls["health"]
    assert await status_of(client, health + "/readyz") == 200
    assert await status_of(client, proxy + "/echo/before") == 200  # leaves a pooled connection

    async def slow() -> tuple[int, bytes]:
        async with client.get(proxy + "/slow?seconds=1") as response:
            return response.status, await response.read()

    in_flight = asyncio.create_task(slow())

    async def slow_in_flight() -> bool:
        async with client.get(gw.urls["metrics"] + "/metrics") as response:
            return "gateway_requests_in_flight 1.0" in await response.text()

    await eventually(slow_in_flight)
    signalled = time.monotonic()
    gw.process.send_signal(signal.SIGTERM)
    await gw.read_until("draining")
    assert await status_of(client, health + "/readyz") == 503
    assert await status_of(client, health + "/livez") == 200

    # The pooled keep-alive connection and a new connection are both served during the drain.
    assert await status_of(client, proxy + "/echo/kept") == 200
    async with aiohttp.ClientSession() as fresh, fresh.get(proxy + "/echo/during") as response:
        assert response.status == 200
        assert (await response.json())["path"] == "/echo/during"

    assert await in_flight == (200, b"slow")
    assert await asyncio.wait_for(gw.process.wait(), timeout=6) == 0
    assert time.monotonic() - signalled < 1 + 3
    await gw.read_until("stopped")
    access = [line for line in gw.lines if line.get("event") == "access"]
    assert {(line["path"], line["status"]) for line in access} >= {
        ("/slow", 200),
        ("/echo/during", 200),
    }


async def test_a_second_signal_cuts_the_drain_short(
    start_process: Any, client: aiohttp.ClientSession
) -> None:
    """A second SIGTERM during a long drain makes the gateway stop at once, still exiting 0."""
    gw: GatewayProcess = await start_process(drain="30s", grace="3s")
    gw.process.send_signal(signal.SIGTERM)
    await gw.read_until("draining")
    assert await status_of(client, gw.urls["health"] + "/readyz") == 503
    signalled = time.monotonic()
    gw.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(gw.process.wait(), timeout=5) == 0
    assert time.monotonic() - signalled < 2

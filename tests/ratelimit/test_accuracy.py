"""Exact across replicas: two gateway processes sharing one Redis admit exactly the limit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from tests.conftest import RedisServer, policy_text
from tests.upstream_app import HITS

ROOT = Path(__file__).resolve().parents[2]


async def start_gateway(policy: Path) -> tuple[asyncio.subprocess.Process, str, asyncio.Task[None]]:
    """`python -m gateway run`; returns the process, its proxy URL and the stdout drainer."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "run", "--policy", str(policy),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    stdout = process.stdout
    async with asyncio.timeout(15):
        while True:
            raw = await stdout.readline()
            assert raw, "the gateway exited before it started"
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                if line.get("event") == "gateway_started":
                    break

    async def drain() -> None:  # a full stdout pipe would block the gateway's logging
        while await stdout.readline():
            pass

    return process, line["proxy_url"], asyncio.create_task(drain())


async def test_two_processes_sharing_redis_admit_exactly_the_limit(
    upstream: TestServer, redis: RedisServer, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    """50 concurrent clients spread over 2 gateways, limit 100 per minute: exactly 100 pass."""
    body = f"""
store: {{url: "{redis.url}", on_error: closed}}
logging: {{access: {{mode: "off"}}}}
routes:
  - name: api
    match: {{path_prefix: /echo}}
    rate_limit:
      - {{name: per-minute, key: [route], limit: 100, window: 1m}}
"""
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text(body, str(upstream.make_url("")).rstrip("/")))
    first, second = await start_gateway(path), await start_gateway(path)
    try:
        # The sliding window's previous minute fades after a boundary; stay clear of one.
        if time.time() % 60 > 52:  # the run takes ~2 s; at worst this waits 8 s
            await asyncio.sleep(60 - time.time() % 60 + 0.1)
        urls = [first[1] + "/echo", second[1] + "/echo"]

        async def one_client(n: int) -> list[int]:
            connector = aiohttp.TCPConnector(limit=1)
            async with aiohttp.ClientSession(connector=connector) as session:
                statuses = []
                for i in range(6):
                    async with session.get(urls[(n + i) % 2]) as response:
                        await response.read()
                        statuses.append(response.status)
                return statuses

        results = await asyncio.gather(*(one_client(n) for n in range(50)))
        statuses = [status for result in results for status in result]
        assert statuses.count(200) == 100
        assert statuses.count(429) == 200
        assert upstream.app[HITS]["echo"] == 100
    finally:
        for process, _, drainer in (first, second):
            process.send_signal(signal.SIGTERM)
            await process.wait()
            drainer.cancel()

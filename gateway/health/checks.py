"""Dependency probes declared in the policy (tcp or http), run in the background, results cached.

/readyz and /health read the cache; no health request ever waits on a probe.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from gateway.policy.model import DependencyCheck


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    latency_ms: float | None
    checked_at: float
    error: str | None = None


async def probe(check: DependencyCheck, session: aiohttp.ClientSession) -> CheckResult:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(check.timeout):
            if check.type == "tcp":
                host, _, port = check.target.rpartition(":")
                _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
                writer.close()
                await writer.wait_closed()
            else:
                async with session.get(check.target, allow_redirects=False) as response:
                    if response.status >= 400:
                        raise ConnectionError(f"HTTP {response.status}")
    except (TimeoutError, OSError, ValueError, aiohttp.ClientError) as exc:
        message = (
            "timed out" if isinstance(exc, asyncio.TimeoutError) else str(exc) or type(exc).__name__
        )
        return CheckResult(False, None, time.time(), message)
    return CheckResult(True, round((time.perf_counter() - started) * 1000, 3), time.time())

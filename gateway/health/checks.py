"""Dependency probes declared in the policy (tcp or http), run in the background, results cached.

/readyz and /health read the cache; no health request ever waits on a probe.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import aiohttp

from gateway.policy.model import DependencyCheck


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    latency_ms: float
    checked_at: float
    error: str | None = None


async def probe(check: DependencyCheck, session: aiohttp.ClientSession) -> CheckResult:
    """One probe: a TCP connect, or an HTTP GET answered below 400, within the check's timeout."""
    started = time.perf_counter()
    error: str | None = None
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
                        error = f"HTTP {response.status}"
    except TimeoutError:
        error = f"timed out after {check.timeout:g}s"
    except OSError as exc:
        # asyncio's message names the address; the errno says what happened ("Connection refused").
        error = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
    except (ValueError, aiohttp.ClientError) as exc:
        error = str(exc) or type(exc).__name__
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    return CheckResult(error is None, latency_ms, time.time(), error)


Report = Callable[[DependencyCheck, CheckResult, CheckResult | None], None]
"""Called after each probe with the check, its new result and the previous one."""


@dataclass(eq=False)
class Prober:
    """Probes each check when it is due, all due checks at once, and keeps the last results."""

    report: Report
    results: dict[str, CheckResult] = field(default_factory=dict)
    _next_due: dict[str, float] = field(default_factory=dict)

    async def run_due(
        self, session: aiohttp.ClientSession, checks: Iterable[DependencyCheck], now: float
    ) -> float:
        """Probe the checks that are due; return how long until the next one is."""
        checks = tuple(checks)
        due = [c for c in checks if self._next_due.get(c.name, 0.0) <= now]
        for check in due:
            self._next_due[check.name] = now + check.interval
        # Concurrently: one slow dependency must not delay the others' results.
        for check, result in zip(
            due, await asyncio.gather(*(probe(c, session) for c in due)), strict=True
        ):
            previous = self.results.get(check.name)
            self.results[check.name] = result
            self.report(check, result, previous)
        if not checks:
            return 1.0
        return max(0.0, min(self._next_due[c.name] for c in checks) - time.monotonic())

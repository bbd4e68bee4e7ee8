"""Helpers for the chaos tests: a bounded load loop, figures, and a gateway's open descriptors."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

MAX_LOAD_SECONDS = 20.0
"""A load loop stops by itself after this, whatever the test does."""


@dataclass(frozen=True)
class Outcome:
    """One request of a load loop: when it started and ended, and how it was answered."""

    started: float
    ended: float
    status: int | None  # None: the request failed at the transport (reset, refused, timeout)
    reason: str | None = None  # the problem+json `reason` of a gateway-made answer
    error: str | None = None


@dataclass
class Load:
    """`clients` concurrent clients sending GET requests back to back until stopped."""

    url: str | Callable[[int], str]
    clients: int = 4
    timeout: float = 10.0
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _count: int = 0

    def start(self) -> Load:
        self._tasks = [asyncio.create_task(self._client()) for _ in range(self.clients)]
        return self

    def halt(self) -> None:
        """Start no new request (those in flight go on), as a load balancer that saw /readyz."""
        self._stop.set()

    async def stop(self) -> list[Outcome]:
        """Halt, then wait for the requests in flight; every outcome so far."""
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.outcomes

    def _next_url(self) -> str:
        self._count += 1
        return self.url(self._count) if callable(self.url) else self.url

    async def _client(self) -> None:
        deadline = time.monotonic() + MAX_LOAD_SECONDS
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not self._stop.is_set() and time.monotonic() < deadline:
                self.outcomes.append(await one_request(session, self._next_url()))


async def one_request(session: aiohttp.ClientSession, url: str) -> Outcome:
    started = time.monotonic()
    try:
        async with session.get(url) as response:
            body = await response.read()
            reason = None
            if response.content_type == "application/problem+json":
                reason = (await response.json(content_type=None)).get("reason")
            del body
            return Outcome(started, time.monotonic(), response.status, reason)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Outcome(started, time.monotonic(), None, error=repr(exc))


def failed(outcomes: list[Outcome]) -> list[Outcome]:
    """Requests that got no HTTP answer at all, or a 5xx."""
    return [o for o in outcomes if o.status is None or o.status >= 500]


def millis(values: list[float]) -> str:
    """p50/max of durations in seconds, as milliseconds."""
    return f"p50 {statistics.median(values) * 1000:.2f} ms, max {max(values) * 1000:.2f} ms"


async def poll_until(check: Callable[[], bool], within: float, every: float = 0.005) -> float:
    """Seconds until `check()` held (polled every `every` s); fails after `within` seconds."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(every)
    return time.monotonic() - started


def open_fds() -> int:
    """This process's open file descriptors (the in-process gateway's among them)."""
    return len(os.listdir("/proc/self/fd"))


def connections_to(port: int) -> int:
    """Established TCP connections whose remote end is 127.0.0.1:port, from /proc/net/tcp."""
    wanted = f"0100007F:{port:04X}"
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            # fields[2] is the remote address, fields[3] the state (01 = ESTABLISHED).
            if fields[2] == wanted and fields[3] == "01":
                count += 1
    return count

"""The bulkhead: at most `limit` calls in flight, and an optional bounded queue with a wait cap."""

from __future__ import annotations

import asyncio
from collections import deque


class Bulkhead:
    """A semaphore that refuses instead of queueing without bound.

    A slow upstream otherwise pins every gateway worker on one route; beyond the limit a request
    waits at most `max_wait` in a queue of `queue` places, then is refused.
    """

    def __init__(self, limit: int, queue: int = 0, max_wait: float = 0.0) -> None:
        self.limit = limit
        self.queue = queue
        self.max_wait = max_wait
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> bool:
        """True with a place taken (give it back with `release`), False when refused."""
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return True
        if len(self._waiters) >= self.queue or self.max_wait <= 0:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.max_wait):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                # The place was handed over just as the wait ended: pass it on.
                self.release()
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                return False
            raise
        return True

    def release(self) -> None:
        """Give a place back; the longest waiter, if any, takes it over."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.in_flight -= 1

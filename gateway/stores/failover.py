"""A shared store with a way out: on_error open, closed or local, and back by itself.

While the primary fails, it is tried again at most every `retry_interval` (by the first request
after that time), so a dead Redis costs one failed attempt per interval, not one per request.
In `local` mode the fallback counts in memory with the limit divided by the number of replicas,
so the fleet as a whole stays near the configured limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from gateway.errors import StoreUnavailable
from gateway.stores.base import ArrivalTime, LimitStore, WindowCount
from gateway.stores.memory import MemoryStore

Mode = Literal["primary", "fallback"]
OnSwitch = Callable[[Mode, str | None], None]
"""Called with the new mode and, when failing over, the error that caused it."""


class FailoverStore:
    def __init__(
        self,
        primary: LimitStore,
        *,
        on_error: Literal["open", "closed", "local"],
        replicas: int = 1,
        retry_interval: float = 1.0,
        fallback: MemoryStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_switch: OnSwitch | None = None,
    ) -> None:
        self.kind = primary.kind
        self.primary = primary
        self.fallback = fallback or MemoryStore()
        self.on_error = on_error
        self.replicas = replicas
        self.retry_interval = retry_interval
        self.mode: Mode = "primary"
        self.last_error: str | None = None
        self.switches = 0
        self._clock = clock
        self._retry_at = 0.0
        self._on_switch = on_switch

    def _try_primary(self) -> bool:
        if self.mode == "primary":
            return True
        now = self._clock()
        if now < self._retry_at:
            return False
        # One probe per interval: requests arriving while it is in flight stay on the fallback,
        # so a Redis that hangs (rather than refuses) delays one request, not all of them.
        self._retry_at = now + self.retry_interval
        return True

    def _failed(self, exc: StoreUnavailable) -> None:
        self._retry_at = self._clock() + self.retry_interval
        self.last_error = str(exc.__cause__ or exc)
        if self.mode == "primary":
            self._switch("fallback")

    def _answered(self) -> None:
        if self.mode == "fallback":
            self.last_error = None
            self._switch("primary")

    def _switch(self, mode: Mode) -> None:
        self.mode = mode
        self.switches += 1
        if self._on_switch is not None:
            self._on_switch(mode, self.last_error)

    def _unavailable(self) -> StoreUnavailable:
        return StoreUnavailable(f"Rate-limit store unavailable: {self.last_error}")

    async def acquire_window(
        self,
        key: str,
        previous_key: str,
        weight: float,
        limit: float,
        cost: int,
        ttl: float,
        now: float,
    ) -> WindowCount:
        if self.mode == "primary" or self._try_primary():
            try:
                result = await self.primary.acquire_window(
                    key, previous_key, weight, limit, cost, ttl, now
                )
            except StoreUnavailable as exc:
                self._failed(exc)
            else:
                if self.mode != "primary":
                    self._answered()
                return result
        if self.on_error != "local":
            raise self._unavailable()
        return await self.fallback.acquire_window(
            key, previous_key, weight, limit / self.replicas, cost, ttl, now
        )

    async def acquire_tat(
        self, key: str, increment: float, capacity: float, now: float
    ) -> ArrivalTime:
        if self.mode == "primary" or self._try_primary():
            try:
                result = await self.primary.acquire_tat(key, increment, capacity, now)
            except StoreUnavailable as exc:
                self._failed(exc)
            else:
                if self.mode != "primary":
                    self._answered()
                return result
        if self.on_error != "local":
            raise self._unavailable()
        # A rate divided by N: each unit costs N times the interval; the burst keeps its time.
        return await self.fallback.acquire_tat(key, increment * self.replicas, capacity, now)

    async def release(self, key: str, cost: int) -> None:
        if self.mode == "fallback":
            await self.fallback.release(key, cost)
            return
        try:
            await self.primary.release(key, cost)
        except StoreUnavailable as exc:
            self._failed(exc)  # the slot's lease expiry gives it back in the end

    async def reset(self, prefix: str) -> int:
        count = await self.fallback.reset(prefix)
        return count + await self.primary.reset(prefix)

    async def close(self) -> None:
        await self.primary.close()
        await self.fallback.close()

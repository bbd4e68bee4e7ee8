"""The small interface every rate-limit store offers: two atomic decisions, a reset, a close.

The in-process store (MemoryStore) also offers the two decisions as plain calls: the limiter's
fast path takes them without a coroutine per level.

Both decisions are check-and-take in one step: a request over the limit takes nothing. A cost
of 0 reads without writing (the admin port's usage view). Times are the caller's clock, so the
same strategy code gives the same answers on every store.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol


class WindowCount(NamedTuple):
    allowed: bool
    current: int
    """The current window's count, after this request when it was allowed."""
    previous: int
    """The previous window's count (0 when the caller passed weight 0)."""


class ArrivalTime(NamedTuple):
    allowed: bool
    tat: float
    """GCRA's theoretical arrival time, after this request when it was allowed."""


class LimitStore(Protocol):
    kind: str
    """memory, redis, ... (a bounded metric label)."""

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
        """Admit when `previous * weight + current + cost <= limit`, then add cost to current."""
        ...

    async def acquire_tat(
        self, key: str, increment: float, capacity: float, now: float
    ) -> ArrivalTime:
        """GCRA: admit when `max(tat, now) + increment - now <= capacity`, then store it."""
        ...

    async def release(self, key: str, cost: int) -> None:
        """Give back what acquire_window took (concurrency slots); the key goes at zero."""
        ...

    async def reset(self, prefix: str) -> int:
        """Forget every key starting with prefix; return how many went."""
        ...

    async def close(self) -> None: ...

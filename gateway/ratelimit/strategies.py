"""The rate-limit algorithms, as pure engines over the store interface with the time passed in.

fixed_window   one counter per window; the window index is part of the key, so a new window
               starts from zero without any reset and old windows simply expire.
sliding_window two fixed windows, the previous one weighted by how much of it still overlaps
               the sliding window (Cloudflare's counter-weighted approximation): O(1) memory
               per key, unlike a log of timestamps.
token_bucket   GCRA: one timestamp per key (the theoretical arrival time); `burst` requests
               may come at once, then one every window/limit.
Calendar quotas (day, month in a time zone) are fixed windows whose bounds come from the
calendar.

Each strategy decides through `hit` (any store, awaited) or `decide` (an in-process store,
called): the same arithmetic around the one store call, so the limiter's fast path pays no
coroutine per level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Final, NamedTuple, Protocol
from zoneinfo import ZoneInfo

from gateway.stores.base import ArrivalTime, LimitStore, WindowCount
from gateway.stores.memory import MemoryStore

# A NamedTuple's own constructor is a Python-level call; tuple.__new__ builds the same object
# at a third of the cost, on a path taken by every request.
_new: Final = tuple.__new__


class Decision(NamedTuple):  # a tuple: made on every request, and cheaper than a dataclass
    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    """Seconds until the quota is whole again (or, when limited, until a retry can pass)."""
    retry_after: float
    """Seconds until a request of this cost could pass; 0 when allowed."""


class Strategy:
    """A counting algorithm. A base class rather than a Protocol: compiled, a call through it
    is a direct one, where a Protocol's method is looked up by name on every request."""

    limit: int
    window: float
    """The nominal period in seconds (advertised in RateLimit-Policy)."""

    async def hit(
        self, store: LimitStore, key: str, cost: int, now: float, scale: float = 1.0
    ) -> Decision:
        """`scale` (adaptive throttling) multiplies the limit for this decision."""
        raise NotImplementedError

    def decide(
        self, store: MemoryStore, key: str, cost: int, now: float, scale: float = 1.0
    ) -> Decision:
        """`hit` on the in-process store, without awaiting."""
        raise NotImplementedError


class Period(Protocol):
    @property
    def length(self) -> float: ...

    def bounds(self, now: float) -> tuple[int, float, float]:
        """(index, start, end) of the period containing now."""
        ...


def scaled(limit: int, scale: float) -> int:
    """A limit under adaptive throttling: whole requests, and never below one."""
    return limit if scale == 1.0 else max(1, int(limit * scale))


@dataclass(frozen=True, slots=True)
class Fixed:
    length: float

    def bounds(self, now: float) -> tuple[int, float, float]:
        index = int(now // self.length)
        start = index * self.length
        return index, start, start + self.length


@dataclass(frozen=True, slots=True)
class Calendar:
    unit: str  # day | month
    zone: ZoneInfo

    @property
    def length(self) -> float:
        return 86400.0 if self.unit == "day" else 30 * 86400.0

    def bounds(self, now: float) -> tuple[int, float, float]:
        today = datetime.fromtimestamp(now, self.zone).date()
        if self.unit == "day":
            first, following = today, today + timedelta(days=1)
            index = today.toordinal()
        else:
            first = today.replace(day=1)
            following = (first + timedelta(days=32)).replace(day=1)
            index = first.year * 12 + first.month
        return index, self._midnight(first), self._midnight(following)

    def _midnight(self, day: date) -> float:
        return datetime.combine(day, time(0), tzinfo=self.zone).timestamp()


class FixedWindow(Strategy):
    def __init__(self, limit: int, period: Period) -> None:
        self.limit = limit
        self.period = period
        self.window = period.length

    def _window(self, key: str, now: float, scale: float) -> tuple[int, str, float]:
        """The scaled limit, the window's key and the seconds left in it."""
        index, _, end = self.period.bounds(now)
        return scaled(self.limit, scale), f"{key}:{index}", end - now

    async def hit(
        self, store: LimitStore, key: str, cost: int, now: float, scale: float = 1.0
    ) -> Decision:
        limit, window_key, left = self._window(key, now, scale)
        # The previous key is the current one: unread at weight 0, and in the same cluster slot.
        counted = await store.acquire_window(
            window_key, window_key, 0.0, limit, cost, left + 1.0, now
        )
        return _fixed(counted, limit, left)

    def decide(
        self, store: MemoryStore, key: str, cost: int, now: float, scale: float = 1.0
    ) -> Decision:
        limit, window_key, left = self._window(key, now, scale)
        counted = store.window(window_key, window_key, 0.0, limit, cost, left + 1.0, now)
        return _fixed(counted, limit, left)


def _fixed(counted: WindowCount, limit: int, reset_after: float) -> Decision:
    remaining = max(0, limit - counted.current)
    if counted.allowed:
        return _new(Decision, (True, limit, remaining, reset_after, 0.0))
    return _new(Decision, (False, limit, remaining, reset_after, reset_after))


class SlidingWindow(Strategy):
    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        # The current window's bounds and its index as key suffixes: worked out when the
        # window turns, not per request (a float floor division costs more than the rest).
        self._start = self._end = 0.0
        self._suffixes = ("", "")

    def _windows(self, key: str, now: float, scale: float) -> tuple[int, float, float, str, str]:
        """The scaled limit, the current window's start, the previous window's weight, and
        the two windows' keys."""
        window = self.window
        limit = self.limit if scale == 1.0 else scaled(self.limit, scale)
        start = self._start
        if not start <= now < self._end:  # a new window (or a clock set back)
            index = int(now // window)
            start = self._start = index * window
            self._end = start + window
            self._suffixes = (f":{index}", f":{index - 1}")
        current, previous = self._suffixes
        weight = 1.0 - (now - start) / window
        return limit, start, weight, key + current, key + previous

    async def hit(
        self, store: LimitStore, key: str, cost: int, now: float, scale: float = 1.0
    ) -> Decision:
        limit, start, weight, current, previous = self._windows(key, now, scale)
        counted = await store.acquire_window(
            current, previous, weight, limit, cost, 2 * self.window, now
        )
        return self._decision(counted, limit, cost, start, weight, now)

    def decide(
        self, store: MemoryStore, key: str, cost: int, now: float, scale: float = 1.0
    ) -> Decision:
        limit, start, weight, current, previous = self._windows(key, now, scale)
        counted = store.window(current, previous, weight, limit, cost, 2 * self.window, now)
        return self._decision(counted, limit, cost, start, weight, now)

    def _decision(
        self, counted: WindowCount, limit: int, cost: int, start: float, weight: float, now: float
    ) -> Decision:
        window = self.window
        used = counted.previous * weight + counted.current
        to_window_end = start + window - now
        if counted.allowed:  # then used <= limit: int() is the floor
            return _new(Decision, (True, limit, int(limit - used + 1e-9), to_window_end, 0.0))
        remaining = max(0, math.floor(limit - used + 1e-9))
        room = limit - counted.current - cost
        if room >= 0 and counted.previous > 0:
            # The previous window's weight falls until the request fits in this window.
            retry = start + window * (1.0 - room / counted.previous) - now
        else:
            # Only the next window helps: this one's count then fades in turn.
            fade = max(0.0, 1.0 - (limit - cost) / counted.current) if counted.current else 0.0
            retry = to_window_end + window * fade
        retry = max(retry, 0.001)
        return _new(Decision, (False, limit, remaining, retry, retry))


class Concurrency(Strategy):
    """At most `limit` requests in flight per key; a slot is released when the response ends,
    or by expiry after `lease` seconds should the replica holding it die."""

    def __init__(self, limit: int, lease: float) -> None:
        self.limit = limit
        self.window = lease

    async def hit(
        self, store: LimitStore, key: str, cost: int, now: float, scale: float = 1.0
    ) -> Decision:
        limit = scaled(self.limit, scale)
        slots = key + ":inflight"
        counted = await store.acquire_window(slots, slots, 0.0, limit, cost, self.window, now)
        return _slots(counted, limit)

    def decide(
        self, store: MemoryStore, key: str, cost: int, now: float, scale: float = 1.0
    ) -> Decision:
        limit = scaled(self.limit, scale)
        slots = key + ":inflight"
        return _slots(store.window(slots, slots, 0.0, limit, cost, self.window, now), limit)

    async def release(self, store: LimitStore, key: str, cost: int) -> None:
        await store.release(key + ":inflight", cost)


def _slots(counted: WindowCount, limit: int) -> Decision:
    remaining = max(0, limit - counted.current)
    if counted.allowed:
        return _new(Decision, (True, limit, remaining, 0.0, 0.0))
    # Nobody knows when a slot frees up; one second is a polite guess.
    return _new(Decision, (False, limit, remaining, 1.0, 1.0))


class TokenBucket(Strategy):
    """GCRA with `limit` per `window` and room for `burst` at once."""

    def __init__(self, limit: int, window: float, burst: int | None = None) -> None:
        self.limit = limit
        self.window = window
        self.burst = burst or limit
        self.interval = window / limit
        self.capacity = self.burst * self.interval

    def _rate(self, cost: int, scale: float) -> tuple[int, float, float, float]:
        """burst, interval, capacity and this request's increment, at `scale`."""
        burst, interval, capacity = self.burst, self.interval, self.capacity
        if scale != 1.0:  # a slower rate and a smaller bucket
            burst, interval = scaled(burst, scale), interval / scale
            capacity = burst * interval
        return burst, interval, capacity, cost * interval

    async def hit(
        self, store: LimitStore, key: str, cost: int, now: float, scale: float = 1.0
    ) -> Decision:
        burst, interval, capacity, increment = self._rate(cost, scale)
        result = await store.acquire_tat(key, increment, capacity, now)
        return _bucket(result, burst, interval, capacity, increment, now)

    def decide(
        self, store: MemoryStore, key: str, cost: int, now: float, scale: float = 1.0
    ) -> Decision:
        burst, interval, capacity, increment = self._rate(cost, scale)
        result = store.tat(key, increment, capacity, now)
        return _bucket(result, burst, interval, capacity, increment, now)


def _bucket(
    result: ArrivalTime, burst: int, interval: float, capacity: float, increment: float, now: float
) -> Decision:
    ahead = max(result.tat - now, 0.0)
    remaining = max(0, math.floor((capacity - ahead) / interval + 1e-9))
    if result.allowed:
        return _new(Decision, (True, burst, remaining, ahead, 0.0))
    retry = max(ahead + increment - capacity, 0.001)
    return _new(Decision, (False, burst, remaining, retry, retry))

"""The in-process store: a bounded dict with expiry and least-recently-used eviction.

Every method runs without an await inside, so each decision is atomic on the event loop and no
lock is needed (none is ever held across an await). The decisions are plain methods
(`window`, `tat`) that the limiter calls directly; the async ones are the store interface.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from gateway.stores.base import ArrivalTime, WindowCount

# A NamedTuple's own constructor is a Python-level call; tuple.__new__ builds the same object
# at a third of the cost, on a path taken by every request.
_new: Final = tuple.__new__


class MemoryStore:
    kind = "memory"

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        # key -> [value, expires_at]; expiry is in the callers' clock, like their `now`.
        self._data: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def _entry(self, key: str, now: float) -> list[float] | None:
        """The live entry of key, marked as just used; None when absent or expired."""
        data = self._data
        entry = data.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del data[key]
            return None
        data.move_to_end(key)
        return entry

    def _insert(self, key: str, value: float, expires_at: float, now: float) -> None:
        data = self._data
        data[key] = [value, expires_at]
        if len(data) > self.max_keys:
            data.popitem(last=False)
        # Keys of past windows are never read again: each new key sweeps up to two expired ones
        # from the cold end, so they drain faster than new windows appear.
        for _ in range(2):
            oldest = next(iter(data))
            if data[oldest][1] > now:
                break
            del data[oldest]

    def window(
        self,
        key: str,
        previous_key: str,
        weight: float,
        limit: float,
        cost: int,
        ttl: float,
        now: float,
    ) -> WindowCount:
        """acquire_window, answered at once."""
        data = self._data
        entry = data.get(key)  # self._entry(key, now), inlined on the hottest path
        if entry is not None:
            if entry[1] <= now:
                del data[key]
                entry = None
            else:
                data.move_to_end(key)
        current = int(entry[0]) if entry is not None else 0
        previous = 0
        if weight > 0:
            # Only read: the previous window is never written again, so it is not marked used.
            before = data.get(previous_key)
            if before is not None and before[1] > now:
                previous = int(before[0])
        if previous * weight + current + cost > limit:
            return _new(WindowCount, (False, current, previous))
        if cost > 0:
            current += cost
            if entry is not None:
                entry[0], entry[1] = current, now + ttl
            else:
                self._insert(key, current, now + ttl, now)
        return _new(WindowCount, (True, current, previous))

    def tat(self, key: str, increment: float, capacity: float, now: float) -> ArrivalTime:
        """acquire_tat, answered at once."""
        entry = self._entry(key, now)
        tat = entry[0] if entry is not None and entry[0] > now else now
        new = tat + increment
        if new - now > capacity:
            return _new(ArrivalTime, (False, tat))
        if increment > 0:
            if entry is not None:
                entry[0], entry[1] = new, new
            else:
                self._insert(key, new, new, now)
        return _new(ArrivalTime, (True, new))

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
        return self.window(key, previous_key, weight, limit, cost, ttl, now)

    async def acquire_tat(
        self, key: str, increment: float, capacity: float, now: float
    ) -> ArrivalTime:
        return self.tat(key, increment, capacity, now)

    async def release(self, key: str, cost: int) -> None:
        entry = self._data.get(key)
        if entry is not None:
            entry[0] -= cost
            if entry[0] <= 0:
                del self._data[key]

    async def reset(self, prefix: str) -> int:
        doomed = [key for key in self._data if key.startswith(prefix)]
        for key in doomed:
            del self._data[key]
        return len(doomed)

    async def close(self) -> None:
        self._data.clear()

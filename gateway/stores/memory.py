"""The in-process store: a bounded dict with expiry and least-recently-used eviction.

Every method runs without an await inside, so each decision is atomic on the event loop and no
lock is needed (none is ever held across an await).
"""

from __future__ import annotations

from collections import OrderedDict

from gateway.stores.base import ArrivalTime, WindowCount


class MemoryStore:
    kind = "memory"

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        # key -> [value, expires_at]; expiry is in the callers' clock, like their `now`.
        self._data: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def _get(self, key: str, now: float) -> float | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return entry[0]

    def _set(self, key: str, value: float, expires_at: float, now: float) -> None:
        data = self._data
        entry = data.get(key)
        if entry is not None:
            data.move_to_end(key)
            entry[0], entry[1] = value, expires_at
        else:
            data[key] = [value, expires_at]
            if len(data) > self.max_keys:
                data.popitem(last=False)
        # Keys of past windows are never read again: each write sweeps up to two expired ones
        # from the cold end, so they drain faster than new windows appear.
        for _ in range(2):
            oldest = next(iter(data))
            if data[oldest][1] > now:
                break
            del data[oldest]

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
        current = int(self._get(key, now) or 0)
        previous = int(self._get(previous_key, now) or 0) if weight > 0 else 0
        if previous * weight + current + cost > limit:
            return WindowCount(False, current, previous)
        if cost > 0:
            current += cost
            self._set(key, current, now + ttl, now)
        return WindowCount(True, current, previous)

    async def acquire_tat(
        self, key: str, increment: float, capacity: float, now: float
    ) -> ArrivalTime:
        tat = max(self._get(key, now) or now, now)
        new = tat + increment
        if new - now > capacity:
            return ArrivalTime(False, tat)
        if increment > 0:
            self._set(key, new, new, now)
        return ArrivalTime(True, new)

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

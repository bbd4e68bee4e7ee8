"""Error groups shared by replicas through Redis, when the policy's store is Redis.

Each group is one hash (count, first/last seen, what it is) and a sorted set orders groups by
last seen, trimmed to `max_groups`. One script does a record atomically. Every key carries the
hash tag `{gw-errors}`, so a cluster keeps them in one slot and the script may build key names.
Redis trouble is logged and the local store goes on counting: capture never waits on Redis.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.capture.events import ErrorEvent
from gateway.observability.logs import get_logger

log = get_logger("gateway.capture")

INDEX = "gw:{gw-errors}:groups"
PREFIX = "gw:{gw-errors}:group:"

# KEYS: the index, the group prefix. ARGV: fingerprint, timestamp, meta JSON, event id, max.
RECORD_SCRIPT = """
local key = KEYS[2] .. ARGV[1]
local count = redis.call('HINCRBY', key, 'count', 1)
redis.call('HSETNX', key, 'first_seen', ARGV[2])
redis.call('HSETNX', key, 'meta', ARGV[3])
redis.call('HSET', key, 'last_seen', ARGV[2], 'last_event_id', ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[5])
if excess > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[1], 0, excess - 1)) do
    redis.call('DEL', KEYS[2] .. old)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1)
end
return count
"""

SHARED_SCHEMES = ("redis://", "rediss://")


class RedisGroups:
    """The shared view of the groups; the in-memory GroupStore stays the per-replica one."""

    def __init__(self, url: str, *, max_groups: int, timeout: float = 1.0) -> None:
        self.max_groups = max_groups
        self._client: aioredis.Redis = aioredis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._record = self._client.register_script(RECORD_SCRIPT)

    async def record(self, events: Sequence[ErrorEvent]) -> bool:
        """Count the events in their shared groups; False (and a log line) if Redis failed."""
        if not events:
            return True
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for event in events:
                    await self._record(
                        keys=[INDEX, PREFIX],
                        args=[
                            event.fingerprint,
                            repr(event.timestamp),
                            json.dumps(_meta(event)),
                            event.id,
                            self.max_groups,
                        ],
                        client=pipe,
                    )
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("shared_groups_unavailable", error_type=type(exc).__name__)
            return False
        return True

    async def snapshot(self) -> list[dict[str, Any]]:
        """Every shared group, the most frequent first; raises RedisError when Redis fails."""
        members = await self._client.zrevrange(INDEX, 0, self.max_groups - 1)
        fingerprints = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
        async with self._client.pipeline(transaction=False) as pipe:
            for fingerprint in fingerprints:
                pipe.hgetall(PREFIX + fingerprint)
            rows = await pipe.execute()
        groups = []
        for fingerprint, row in zip(fingerprints, rows, strict=True):
            if not row:
                continue  # trimmed between the two reads
            groups.append(
                {
                    "fingerprint": fingerprint,
                    **json.loads(row[b"meta"]),
                    "count": int(row[b"count"]),
                    "first_seen": float(row[b"first_seen"]),
                    "last_seen": float(row[b"last_seen"]),
                    "last_event_id": row[b"last_event_id"].decode(),
                }
            )
        return sorted(groups, key=lambda group: -int(group["count"]))

    async def close(self) -> None:
        await self._client.aclose()


def _meta(event: ErrorEvent) -> dict[str, object]:
    return {
        "title": event.title,
        "reason": event.reason,
        "category": event.category,
        "route": event.route,
        "status": event.status,
        "exception_type": event.exception.type if event.exception else None,
    }

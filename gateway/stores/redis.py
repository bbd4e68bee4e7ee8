"""The Redis store: each decision is one EVALSHA of a script registered once per client.

redis-py's registered scripts load themselves again on NOSCRIPT (after SCRIPT FLUSH, a restart
or a failover), so no decision ever needs a second round trip in steady state. Every Redis or
socket error is mapped here, once, to StoreUnavailable.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError

from gateway.errors import StoreUnavailable
from gateway.stores.base import ArrivalTime, WindowCount

# KEYS: current window, previous window. ARGV: weight, limit, cost, ttl in ms.
WINDOW_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local weight = tonumber(ARGV[1])
local previous = 0
if weight > 0 then previous = tonumber(redis.call('GET', KEYS[2]) or '0') end
local cost = tonumber(ARGV[3])
if previous * weight + current + cost > tonumber(ARGV[2]) then
  return {0, current, previous}
end
if cost > 0 then
  current = redis.call('INCRBY', KEYS[1], cost)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return {1, current, previous}
"""

# KEYS: the arrival-time key. ARGV: now, increment, capacity. Floats travel as %.17g strings
# because Lua numbers returned to Redis are truncated to integers.
TAT_SCRIPT = """
local now = tonumber(ARGV[1])
local increment = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if tat < now then tat = now end
local new = tat + increment
if new - now > tonumber(ARGV[3]) then
  return {0, string.format('%.17g', tat)}
end
if increment > 0 then
  redis.call('SET', KEYS[1], string.format('%.17g', new), 'PX', math.ceil((new - now) * 1000))
end
return {1, string.format('%.17g', new)}
"""

# KEYS: a concurrency counter. ARGV: cost. Never below zero, and gone at zero.
RELEASE_SCRIPT = """
local left = redis.call('DECRBY', KEYS[1], ARGV[1])
if left <= 0 then redis.call('DEL', KEYS[1]) end
return left
"""

_GLOB_SPECIAL = re.compile(r"[\\*?\[\]]")
_FAILURES = (RedisError, OSError, asyncio.TimeoutError)


def connect(url: str, timeout: float) -> tuple[Any, list[Any]]:
    """A client for redis://, rediss://, redis+cluster://host:port and
    redis+sentinel://host:port[,host:port]/SERVICE[/DB], and the other clients to close."""
    # A failed store is handled by the failover above us: retrying here would only add delay.
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    if url.startswith("redis+cluster://"):
        cluster = RedisCluster.from_url(
            "redis://" + url.removeprefix("redis+cluster://"), **options
        )
        return cluster, []
    if url.startswith("redis+sentinel://"):
        hosts, _, rest = url.removeprefix("redis+sentinel://").partition("/")
        service, _, db = rest.partition("/")
        sentinels = [(h.rpartition(":")[0], int(h.rpartition(":")[2])) for h in hosts.split(",")]
        sentinel = Sentinel(sentinels, **options)  # type: ignore[no-untyped-call]  # untyped in redis-py
        master = sentinel.master_for(service or "mymaster", db=int(db or 0), **options)
        return master, list(sentinel.sentinels)
    return aioredis.Redis.from_url(url, **options), []


class _Batcher:
    """Decisions started in the same event-loop turn go to Redis as one pipeline.

    Each one is still its own atomic script; batching only shares the round trip and the
    client's per-call overhead, which dominate the cost of a decision under concurrency.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._pending: list[tuple[Any, list[str], list[Any], asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def call(self, script: Any, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        pending = self._pending
        pending.append((script, keys, args, future))
        if len(pending) == 1:
            # The task's first step runs at the next loop turn: it takes every call made
            # until then.
            task = loop.create_task(self._send())
            self._tasks.add(task)  # held until done, so it cannot be collected mid-flight
            task.add_done_callback(self._tasks.discard)
        return future

    async def _send(self) -> None:
        batch, self._pending = self._pending, []
        try:
            results = await self._execute(batch)
            missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if missing:  # SCRIPT FLUSH, a restart or a failover: load once, send those again
                for script in {id(batch[i][0]): batch[i][0] for i in missing}.values():
                    script.sha = await self._client.script_load(script.script)
                again = await self._execute([batch[i] for i in missing])
                for i, result in zip(missing, again, strict=True):
                    results[i] = result
        except Exception as exc:  # the whole pipeline failed: every caller hears of it
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue  # the caller went away (a cancelled request)
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _execute(
        self, batch: list[tuple[Any, list[str], list[Any], asyncio.Future[Any]]]
    ) -> list[Any]:
        # The pool's connection used directly, as a non-transactional pipeline does it: one
        # write, then one reply per script. Pipeline objects add per-call bookkeeping (retries
        # we disable, watch state, telemetry hooks) that costs more than the round trip here.
        pool = self._client.connection_pool
        conn = await pool.get_connection()
        try:
            commands = [
                ("EVALSHA", script.sha, len(keys), *keys, *args) for script, keys, args, _ in batch
            ]
            await conn.send_packed_command(conn.pack_commands(commands))
            results: list[Any] = []
            for _ in batch:
                try:
                    results.append(await conn.read_response())
                except ResponseError as exc:  # this script's own error, NOSCRIPT included
                    results.append(exc)
        except BaseException:
            # Replies may be left unread on the socket: it must not serve another call.
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)
        return results

    async def close(self) -> None:
        for task in list(self._tasks):
            await asyncio.gather(task, return_exceptions=True)


async def _direct(script: Any, keys: list[str], args: list[Any]) -> Any:
    return await script(keys=keys, args=args)


class RedisStore:
    kind = "redis"

    def __init__(self, url: str, *, timeout: float = 0.25, namespace: str = "gw") -> None:
        self.url = url
        self._namespace = namespace + ":"
        self._client, self._others = connect(url, timeout)
        self._window = self._client.register_script(WINDOW_SCRIPT)
        self._tat = self._client.register_script(TAT_SCRIPT)
        self._release = self._client.register_script(RELEASE_SCRIPT)
        self._batcher = _Batcher(self._client)
        # redis-py refuses EVALSHA in cluster pipelines: there each decision goes on its own.
        self._call = _direct if isinstance(self._client, RedisCluster) else self._batcher.call

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
        try:
            allowed, current, previous = await self._call(
                self._window,
                [self._namespace + key, self._namespace + previous_key],
                [repr(weight), repr(float(limit)), cost, max(1, int(ttl * 1000))],
            )
        except _FAILURES as exc:
            raise StoreUnavailable(f"Rate-limit store unavailable: {exc}") from exc
        return WindowCount(bool(allowed), int(current), int(previous))

    async def acquire_tat(
        self, key: str, increment: float, capacity: float, now: float
    ) -> ArrivalTime:
        try:
            allowed, tat = await self._call(
                self._tat, [self._namespace + key], [repr(now), repr(increment), repr(capacity)]
            )
        except _FAILURES as exc:
            raise StoreUnavailable(f"Rate-limit store unavailable: {exc}") from exc
        return ArrivalTime(bool(allowed), float(tat))

    async def release(self, key: str, cost: int) -> None:
        try:
            await self._release(keys=[self._namespace + key], args=[cost])
        except _FAILURES as exc:
            raise StoreUnavailable(f"Rate-limit store unavailable: {exc}") from exc

    async def reset(self, prefix: str) -> int:
        try:
            pattern = _GLOB_SPECIAL.sub(r"\\\g<0>", self._namespace + prefix) + "*"
            doomed = [key async for key in self._client.scan_iter(match=pattern)]
            if doomed:
                await self._client.delete(*doomed)
        except _FAILURES as exc:
            raise StoreUnavailable(f"Rate-limit store unavailable: {exc}") from exc
        return len(doomed)

    async def close(self) -> None:
        await self._batcher.close()
        await self._client.aclose()
        for other in self._others:
            await other.aclose()

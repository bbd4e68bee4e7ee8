"""The Redis store: each decision is one EVALSHA of a script, loaded again on NOSCRIPT.

A script is named by its text's SHA-1, so after SCRIPT FLUSH, a restart or a failover the one
NOSCRIPT decision loads it and goes again; in steady state no decision needs a second round
trip. Decisions travel pipelined on one connection that redis-py opens (see _Pipeline). Every
Redis or socket error is mapped here, once, to StoreUnavailable.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import deque
from collections.abc import Awaitable
from typing import Any, Final

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, ReadOnlyError, RedisError, ResponseError

from gateway.errors import StoreUnavailable, caused_by
from gateway.stores.base import ArrivalTime, WindowCount

# A NamedTuple's own constructor is a Python-level call; tuple.__new__ builds the same object
# at a third of the cost, on a path taken by every request.
_new: Final = tuple.__new__

# KEYS: current window, previous window. ARGV: weight, limit, cost, ttl in ms.
WINDOW_SCRIPT: Final = """
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

# KEYS: the arrival-time key. ARGV: now, increment, capacity. Floats come back as %.17g strings
# because Lua numbers returned to Redis are truncated to integers.
TAT_SCRIPT: Final = """
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
_FAILURES: Final = (RedisError, OSError, asyncio.TimeoutError)


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
        sentinel = Sentinel(sentinels, **options)
        master = sentinel.master_for(service or "mymaster", db=int(db or 0), **options)
        return master, list(sentinel.sentinels)
    return aioredis.Redis.from_url(url, **options), []


def _error(text: str) -> ResponseError:
    """redis-py's class for an error reply, as its own parser would pick it."""
    if text.startswith("NOSCRIPT"):
        return NoScriptError(text)
    if text.startswith("READONLY"):
        return ReadOnlyError(text)
    return ResponseError(text)


class _Link(asyncio.Protocol):
    """One connection, pipelined: commands go out in order and each reply settles the oldest
    waiting future, in data_received, without a coroutine per reply.

    The commands of one event-loop turn leave in one write. One timer per connection, not one
    per command, fails everything waiting once the oldest command is `timeout` late (a late
    reply would desynchronise the rest, so the connection is dropped with them).
    """

    def __init__(self, transport: asyncio.Transport, timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self.transport = transport
        # redis-py's stream protocol still hears of the end, so its disconnect() completes.
        self._stream = transport.get_protocol()
        self.open = not transport.is_closing()
        self._timeout = timeout
        self._waiting: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._outgoing: list[bytes] = []
        self._reader = hiredis.Reader()
        self._timer: asyncio.TimerHandle | None = None

    def send(self, command: bytes, *, first: bool = False) -> asyncio.Future[Any]:
        """Queue a command for the end of this loop turn, or, `first`, write it at once ahead
        of those queued (a released slot is then seen by the decisions that follow it)."""
        loop = self._loop
        future = loop.create_future()
        if not self.open:
            future.set_exception(ConnectionError("Connection closed"))
            return future
        entry = (loop.time() + self._timeout, future)
        outgoing = self._outgoing
        if first:
            self._waiting.insert(len(self._waiting) - len(outgoing), entry)
            outgoing.insert(0, command)
            self._flush()
            return future
        self._waiting.append(entry)
        outgoing.append(command)
        if len(outgoing) == 1:
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        if not self._outgoing:
            return  # written already, ahead of schedule
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        if self.open:
            self.transport.write(data)
            if self._timer is None and self._waiting:
                self._timer = self._loop.call_at(self._waiting[0][0], self._expire)

    def _expire(self) -> None:
        self._timer = None
        waiting = self._waiting
        if not waiting:
            return
        deadline = waiting[0][0]
        if deadline <= self._loop.time():
            self._fail(TimeoutError("Timeout reading from Redis"))
        else:
            self._timer = self._loop.call_at(deadline, self._expire)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        try:
            # hiredis answers False while a reply is incomplete (our scripts never return a
            # RESP3 boolean, the one reply that could read the same).
            while (reply := reader.gets()) is not False:
                if not waiting:
                    raise ValueError("a reply that no command asked for")
                future = waiting.popleft()[1]
                if isinstance(reply, hiredis.ReplyError):
                    error = _error(str(reply))
                    if not future.done():
                        future.set_exception(error)
                    if isinstance(error, ReadOnlyError):
                        # A master demoted by a failover: the next decision connects again
                        # (through Sentinel, to the new master), as redis-py itself would.
                        raise ValueError("the server is now a read-only replica")
                elif not future.done():  # done: its caller went away (a cancelled request)
                    future.set_result(reply)
        except (ValueError, hiredis.ProtocolError) as exc:
            self._fail(ConnectionError(f"Redis connection dropped: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"Connection to Redis lost: {exc or 'closed by the server'}"))
        self._stream.connection_lost(exc)

    def _fail(self, error: Exception) -> None:
        self.open = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, deque()
        for _, future in waiting:
            if not future.done():
                future.set_exception(error)
        self._outgoing.clear()
        self.transport.close()


class _Pipeline:
    """The decisions' way to Redis: one pipelined connection (see _Link), opened by redis-py
    (so URL options, AUTH, SELECT, TLS and Sentinel all apply), then read by us.

    redis-py's own command path costs more per decision than the round trip it waits on
    (a pool checkout with health check, a timeout context and a coroutine per reply part);
    here a decision is one write in a shared packet and one parse in data_received.
    """

    def __init__(self, client: Any, timeout: float, scripts: tuple[str, ...]) -> None:
        self._pool = client.connection_pool
        self._scripts = scripts
        self._timeout = timeout
        self._link: _Link | None = None
        self._connection: Any = None
        self._attempt: asyncio.Future[_Link] | None = None

    def call(self, command: bytes, *, first: bool = False) -> Awaitable[Any]:
        """The reply to `command`; connected, the link's future itself (no coroutine to step
        through per decision)."""
        link = self._link
        if link is None or not link.open:
            return self._connect_and_send(command, first)
        return link.send(command, first=first)

    async def _connect_and_send(self, command: bytes, first: bool) -> Any:
        link = await self._connect()
        return await link.send(command, first=first)

    async def _connect(self) -> _Link:
        """The callers that find no connection share one attempt, and its failure: while Redis
        hangs they all fail after one timeout, not one timeout after another."""
        attempt = self._attempt
        if attempt is None:
            attempt = self._attempt = asyncio.ensure_future(self._open())
            attempt.add_done_callback(self._attempted)
        return await asyncio.shield(attempt)  # a caller cancelled does not cancel the others'

    def _attempted(self, attempt: asyncio.Future[_Link]) -> None:
        self._attempt = None
        if not attempt.cancelled():
            attempt.exception()  # seen by the callers; marked retrieved for a lone one

    async def _open(self) -> _Link:
        await self._drop()
        connection = await self._pool.get_connection()
        self._connection = connection
        # Loaded on every new connection (a new connection may mean a restarted or a
        # failed-over server): the first decisions then need no NOSCRIPT round.
        for script in self._scripts:
            await connection.send_command("SCRIPT", "LOAD", script)
            await connection.read_response()
        # The stream redis-py read its handshake from hands the socket over to us.
        transport = connection._writer.transport
        link = _Link(transport, self._timeout)
        transport.set_protocol(link)
        self._link = link
        return link

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect()
            await self._pool.release(connection)

    async def close(self) -> None:
        if self._attempt is not None:
            self._attempt.cancel()
        await self._drop()


def _sha(script: str) -> str:
    """The name Redis gives a script: the SHA-1 of its text."""
    return hashlib.sha1(script.encode()).hexdigest()


def _head(script: str, keys: int, args: int) -> bytes:
    """The constant start of `EVALSHA sha keys ...` in RESP."""
    return b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%b\r\n$%d\r\n%d\r\n" % (
        3 + keys + args,
        _sha(script).encode(),
        len(str(keys)),
        keys,
    )


def _command(head: bytes, values: tuple[str, ...]) -> bytes:
    # One join over all the pieces (a tuple, not *values: compiled, a star call is generic).
    parts: list[str] = []
    for value in values:
        parts.append("$")
        parts.append(str(len(value)))
        parts.append("\r\n")
        parts.append(value)
        parts.append("\r\n")
    text = "".join(parts)
    if text.isascii():  # lengths in characters are lengths in bytes
        return head + text.encode()
    encoded = [value.encode() for value in values]
    return head + b"".join([b"$%d\r\n%b\r\n" % (len(data), data) for data in encoded])


class RedisStore:
    kind = "redis"

    def __init__(self, url: str, *, timeout: float = 0.25, namespace: str = "gw") -> None:
        self.url = url
        self._namespace = namespace + ":"
        self._client, self._others = connect(url, timeout)
        # redis-py refuses EVALSHA in cluster pipelines, and a cluster spreads keys over
        # nodes: there each decision goes on its own through redis-py's registered scripts.
        self._cluster = isinstance(self._client, RedisCluster)
        self._window = self._client.register_script(WINDOW_SCRIPT)
        self._tat = self._client.register_script(TAT_SCRIPT)
        self._release = self._client.register_script(RELEASE_SCRIPT)
        scripts = (WINDOW_SCRIPT, TAT_SCRIPT, RELEASE_SCRIPT)
        self._pipeline = None if self._cluster else _Pipeline(self._client, timeout, scripts)
        self._window_head = _head(WINDOW_SCRIPT, 2, 4)
        self._tat_head = _head(TAT_SCRIPT, 1, 3)
        self._release_head = _head(RELEASE_SCRIPT, 1, 1)

    async def _evalsha(self, script: str, command: bytes, *, first: bool = False) -> Any:
        pipeline = self._pipeline
        assert pipeline is not None  # every caller checks self._cluster first
        try:
            return await pipeline.call(command, first=first)
        except NoScriptError:
            # SCRIPT FLUSH, a restart or a failover: load it (its sha is its text's, so the
            # command stands as it is) and send once more. NOSCRIPT means it did not run.
            pass  # awaited after the handler: see tests/ops/test_native.py
        await self._client.script_load(script)
        return await pipeline.call(command, first=first)

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
        ns = self._namespace
        keys = (ns + key, ns + previous_key)
        # Floats go as C99 hex literals: exact as repr is, at a seventh of its cost, and
        # Lua's tonumber reads them (through strtod).
        args = (float(weight).hex(), float(limit).hex(), str(cost), str(max(1, int(ttl * 1000))))
        try:
            if self._cluster:
                reply = await self._window(keys=keys, args=args)
            else:
                reply = await self._evalsha(WINDOW_SCRIPT, _command(self._window_head, keys + args))
        except _FAILURES as exc:
            raise caused_by(StoreUnavailable(f"Rate-limit store unavailable: {exc}"), exc)
        allowed, current, previous = reply
        return _new(WindowCount, (allowed == 1, int(current), int(previous)))

    async def acquire_tat(
        self, key: str, increment: float, capacity: float, now: float
    ) -> ArrivalTime:
        key = self._namespace + key
        args = (float(now).hex(), float(increment).hex(), float(capacity).hex())  # as above
        try:
            if self._cluster:
                reply = await self._tat(keys=[key], args=args)
            else:
                reply = await self._evalsha(TAT_SCRIPT, _command(self._tat_head, (key, *args)))
        except _FAILURES as exc:
            raise caused_by(StoreUnavailable(f"Rate-limit store unavailable: {exc}"), exc)
        allowed, tat = reply
        return _new(ArrivalTime, (allowed == 1, float(tat)))

    async def release(self, key: str, cost: int) -> None:
        key = self._namespace + key
        try:
            if self._cluster:
                await self._release(keys=[key], args=[cost])
            else:
                command = _command(self._release_head, (key, str(cost)))
                await self._evalsha(RELEASE_SCRIPT, command, first=True)
        except _FAILURES as exc:
            raise caused_by(StoreUnavailable(f"Rate-limit store unavailable: {exc}"), exc)

    async def reset(self, prefix: str) -> int:
        try:
            pattern = _GLOB_SPECIAL.sub(r"\\\g<0>", self._namespace + prefix) + "*"
            doomed = [key async for key in self._client.scan_iter(match=pattern)]
            if doomed:
                await self._client.delete(*doomed)
        except _FAILURES as exc:
            raise caused_by(StoreUnavailable(f"Rate-limit store unavailable: {exc}"), exc)
        return len(doomed)

    async def close(self) -> None:
        if self._pipeline is not None:
            await self._pipeline.close()
        await self._client.aclose()
        for other in self._others:
            await other.aclose()

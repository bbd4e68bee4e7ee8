"""A lean upstream client: pooled keep-alive connections on asyncio protocols and llhttp.

aiohttp's ClientSession costs ~250 µs of CPU per request here (../shared/notes/perf.md); this
client does only what a proxy needs: it sends the given head byte for byte (no cookies, no
automatic headers beyond the body's framing), parses the answer with llhttp through httptools,
streams both bodies, and reuses a connection only after a response read to its end with
keep-alive allowed. A pooled connection that the upstream closed before answering is retried
once on a new one, for idempotent requests with a replayable body, as aiohttp and nginx do.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Final, cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.errors import Rejection, UpstreamConnectError, UpstreamTimeout, caused_by
from gateway.upstream.client import Timeouts, UpstreamResponse
from gateway.upstream.headers import Fields, field_text

# RFC 9110 §9.2.2; the methods aiohttp and nginx retry on a connection found stale.
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# Methods for which aiohttp adds no `Content-Length: 0` to a request without a body.
_BODYLESS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_HIGH_WATER: Final = 256 * 1024
"""Buffered response bytes at which reading from the upstream pauses (the client is slow)."""
_FRAMING: Final = frozenset({"content-length", "transfer-encoding"})
"""A response with neither field (and a body) ends when the upstream closes the connection."""
_INLINE_BODY: Final = 16 * 1024
"""Bodies up to this size travel in the same write as the head."""


class _Stale(Exception):
    """The connection closed before any byte of the answer: the request may not have arrived."""


class _HeadDone(Exception):
    """Raised from the parser callback to stop at the end of a HEAD answer's header block."""


@dataclass(frozen=True, slots=True)
class _Origin:
    key: str
    host: str
    port: int
    ssl: ssl.SSLContext | None


class _Connection(asyncio.Protocol):
    """One upstream connection and the response it is reading."""

    def __init__(self, pool: LeanUpstreamClient, origin: _Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.counted = True  # in the pool's count of open connections
        self.reused = False  # it already carried a response: it may have gone stale
        self.parser: httptools.HttpResponseParser | None = None
        # The parser of a response that ended cleanly, for the next one: llhttp reads one
        # message after another, and making a parser costs as much as parsing a small head.
        self.spare: httptools.HttpResponseParser | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.drain: asyncio.Future[None] | None = None
        self.paused_writing = False
        self.paused_reading = False
        self.error: BaseException | None = None
        self._deadline: float | None = None  # of the wait in progress, if any
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._reset(head=False)

    def _reset(self, head: bool) -> None:
        self.head = head
        self.got_bytes = False
        self.reason = b""
        self.raw_headers: Fields = []
        self.status = 0
        self.headers_done = False
        self.interim = False
        self.complete = False
        self.keep_alive = False
        self.until_close = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:  # bytes on an idle connection: nothing can be trusted on it any more
            self.abort()
            return
        self.got_bytes = True
        try:
            parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _HeadDone):
                self._fail(UpstreamConnectError("The upstream sent an invalid response"))
                return
            # A HEAD answer ends with its header block; bytes after it make the connection unsafe.
            self.keep_alive = self.keep_alive and data.endswith(b"\r\n\r\n")
            self._message_done()
        except httptools.HttpParserUpgrade:
            # 101 Switching Protocols outside a WebSocket upgrade: nothing to reuse.
            self.keep_alive = False
            self._message_done()
        except httptools.HttpParserError:
            self._fail(UpstreamConnectError("The upstream sent an invalid response"))

    def eof_received(self) -> bool | None:
        return False  # close the transport: a half-closed upstream sends nothing more

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._discard(self)
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)
        if self.parser is None or self.complete or self.error is not None:
            self._wake()
            return
        if self.headers_done and self.until_close:
            self.keep_alive = False
            self._message_done()
        elif not self.got_bytes:
            self._fail(_Stale())
        else:
            self._fail(UpstreamConnectError("The upstream broke off its response"))

    def pause_writing(self) -> None:
        self.paused_writing = True

    def resume_writing(self) -> None:
        self.paused_writing = False
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)

    # --- httptools callbacks ---

    def on_message_begin(self) -> None:
        if self.complete:
            # Bytes past the end of the answer, in the same read: an upstream out of step
            # with its own framing. Neither the connection nor its parser is used again.
            self.spare = None
            self.keep_alive = False

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((field_text(name), field_text(value)))

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.interim = True  # 100 Continue, 103 Early Hints: the real answer follows
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True
        if self.head:
            raise _HeadDone
        if status not in (204, 304):
            self.until_close = True
            for name, _ in self.raw_headers:
                size = len(name)  # content-length or transfer-encoding; the rest by length
                if (size == 14 or size == 17) and name.lower() in _FRAMING:
                    self.until_close = False
                    break
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.paused_reading and self.transport is not None:
            self.paused_reading = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            self.raw_headers = []
            self.reason = b""
            return
        self.spare = self.parser
        self._message_done()

    # --- the request side ---

    def _message_done(self) -> None:
        self.complete = True
        self.parser = None
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            # Once woken, a wait needs no second call: the head, the body and the end
            # usually come in one read, each wanting to wake it.
            self.waiter = None
            if not waiter.done():  # not cancelled meanwhile
                waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.parser = None
        self.abort()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def abort(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.parser is not None and self.error is None:
            # Closed by us mid-answer: the close must not read as the end of an until-close body.
            self.error = UpstreamConnectError("The upstream connection was closed mid-response")
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self.closed = True
        self.pool._discard(self)

    async def wait(self, read_timeout: float, deadline: float | None = None) -> None:
        """Until the parser has news (headers, body bytes, the end), or `read_timeout` passes,
        or the try's `deadline` does.

        The connection's timer outlives the wait: a later wait whose deadline is no earlier
        keeps it, and when it fires it moves on to the deadline then in force. So a busy
        connection makes a timer once per timeout, not one per request (then cancelled).
        """
        if self.error is not None:
            raise self.error
        loop = self.loop
        waiter = self.waiter = loop.create_future()
        at = loop.time() + read_timeout
        if deadline is not None and deadline < at:
            at = deadline
        self._deadline = at
        if self._timer is None or self._timer_at > at:
            self._arm(at)
        try:
            await waiter
        finally:
            self.waiter = None
            self._deadline = None

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(at, self._timer_fired)
        self._timer_at = at

    def _timer_fired(self) -> None:
        self._timer = None
        at = self._deadline
        if at is None:
            return  # between waits: the next one arms its own
        # Loop timers may fire up to a clock tick early (uvloop's clock counts milliseconds).
        if at > self.loop.time() + 0.001:
            self._arm(at)
            return
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            self._fail(UpstreamTimeout("The upstream did not answer in time"))

    async def write_body(self, body: AsyncIterable[bytes], chunked: bool) -> None:
        transport = self.transport
        assert transport is not None
        async for chunk in body:
            if self.closed:
                return
            if not chunk:
                continue
            if chunked:
                transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:
                transport.write(chunk)
            if self.paused_writing:
                self.drain = self.loop.create_future()
                await self.drain
                self.drain = None
        if chunked and not self.closed:
            transport.write(b"0\r\n\r\n")

    def body_failed(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        if not isinstance(error, Rejection):
            wrapped = UpstreamConnectError("The request body could not be sent")
            wrapped.__cause__ = error
            error = wrapped
        self._fail(error)


class _LeanResponse:
    __slots__ = ("_body_task", "_conn", "_headers", "_read", "fields", "reason", "status")

    def __init__(
        self, conn: _Connection, read_timeout: float, body_task: asyncio.Task[None] | None
    ) -> None:
        self._conn: _Connection | None = conn
        self._read = read_timeout
        self._body_task = body_task
        self.status = conn.status
        self.reason: str | None = conn.reason.decode("latin-1") or None
        self.fields = conn.raw_headers
        self._headers: CIMultiDictProxy[str] | None = None

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        # Made only when asked for (a Retry-After...): the proxy forwards from `fields`.
        if self._headers is None:
            self._headers = CIMultiDictProxy(CIMultiDict(self.fields))
        return self._headers

    def body(self) -> AsyncIterator[bytes]:
        return _LeanBody(self)

    def arrived_body(self) -> bytes | None:
        conn = self._conn
        if conn is None or not conn.complete or conn.error is not None:
            return None
        chunks = conn.chunks
        data = (chunks[0] if len(chunks) == 1 else b"".join(chunks)) if chunks else b""
        chunks.clear()
        conn.buffered = 0
        return data

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        body_task = self._body_task
        body_sent = body_task is None or (body_task.done() and not body_task.cancelled())
        if body_task is not None and not body_task.done():
            body_task.cancel()
        if (
            conn.complete
            and conn.keep_alive
            and not conn.chunks
            and body_sent
            and conn.error is None
            and not conn.closed
        ):
            conn.pool._give_back(conn)
        else:
            conn.abort()


class _LeanBody:
    """A response body as it arrives, in the chunks buffered since the last read; it ends when
    the response does or once the response is released.

    A class rather than an async generator: mypyc does not compile those."""

    __slots__ = ("_response",)

    def __init__(self, response: _LeanResponse) -> None:
        self._response = response

    def __aiter__(self) -> _LeanBody:
        return self

    async def __anext__(self) -> bytes:
        response = self._response
        while (conn := response._conn) is not None:
            chunks = conn.chunks
            if chunks:
                data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                conn.buffered = 0
                if conn.paused_reading and conn.transport is not None and not conn.closed:
                    conn.paused_reading = False
                    conn.transport.resume_reading()
                return data
            if conn.complete:
                break
            try:
                await conn.wait(response._read)
            except (UpstreamConnectError, UpstreamTimeout):
                raise
            except Exception as exc:  # stale, or the request body failed once headers were in
                raise caused_by(UpstreamConnectError("The upstream broke off its response"), exc)
        raise StopAsyncIteration


class LeanUpstreamClient:
    """Pooled keep-alive upstream connections, at most `max_connections` open at once."""

    def __init__(self, max_connections: int) -> None:
        self._limit = max_connections
        self._open = 0
        self._idle: dict[str, list[_Connection]] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._origins: dict[str, _Origin] = {}
        self._last_origin: _Origin | None = None
        # Bound at the first request: asyncio.get_running_loop() costs a getpid() syscall.
        self._loop: asyncio.AbstractEventLoop | None = None

    async def send(
        self,
        method: str,
        url: str,
        fields: Fields,
        body: bytes | AsyncIterable[bytes] | None,
        timeouts: Timeouts,
        deadline: float | None = None,
    ) -> UpstreamResponse:
        origin, target = self._origin(url)
        head, chunked = _head(method, target, fields, body)
        replayable = body is None or isinstance(body, bytes)
        conn = await self._acquire(origin, timeouts.connect, fresh=False, deadline=deadline)
        try:
            return await self._exchange(conn, method, head, body, chunked, timeouts.read, deadline)
        except _Stale:
            if not (conn.reused and replayable and method in _IDEMPOTENT):
                raise caused_by(
                    UpstreamConnectError("The upstream closed the connection without answering"),
                    None,
                )
        # The upstream closed an idle connection as we sent on it: once more, on a new one.
        conn = await self._acquire(origin, timeouts.connect, fresh=True, deadline=deadline)
        try:
            return await self._exchange(conn, method, head, body, chunked, timeouts.read, deadline)
        except _Stale:
            raise caused_by(
                UpstreamConnectError("The upstream closed the connection without answering"), None
            )

    async def _exchange(
        self,
        conn: _Connection,
        method: str,
        head: bytes,
        body: bytes | AsyncIterable[bytes] | None,
        chunked: bool,
        read_timeout: float,
        deadline: float | None,
    ) -> UpstreamResponse:
        transport = conn.transport
        assert transport is not None
        conn._reset(head=method == "HEAD")
        parser = conn.spare
        conn.spare = None
        conn.parser = parser if parser is not None else httptools.HttpResponseParser(conn)
        body_task: asyncio.Task[None] | None = None
        if body is None:
            transport.write(head)
        elif isinstance(body, bytes):
            if len(body) <= _INLINE_BODY:
                transport.write(head + body)
            else:
                transport.writelines((head, body))
        else:
            transport.write(head)
            body_task = asyncio.ensure_future(conn.write_body(body, chunked))
            body_task.add_done_callback(conn.body_failed)
        try:
            while not conn.headers_done:
                await conn.wait(read_timeout, deadline)
        except BaseException as exc:
            if body_task is not None and not body_task.done():
                body_task.cancel()
            conn.abort()
            if isinstance(exc, _Stale) and body_task is not None:
                raise caused_by(
                    UpstreamConnectError("The upstream closed the connection without answering"),
                    None,
                )
            raise
        conn.reused = True
        return _LeanResponse(conn, read_timeout, body_task)

    def _origin(self, url: str) -> tuple[_Origin, str]:
        """The connection pool key and the request target of an absolute http(s) URL."""
        last = self._last_origin
        if last is not None and url.startswith(last.key):  # a sidecar's one upstream, mostly
            target = url[len(last.key) :]
            if target.startswith("/"):  # not a longer port or host that starts the same
                return last, target
        scheme, _, rest = url.partition("://")
        slash = rest.find("/")
        authority, target = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
        key = url[: len(scheme) + 3 + len(authority)]
        origin = self._origins.get(key)
        if origin is None:
            host, _, port = authority.rpartition(":")
            if not host or not port.isdigit() or authority.endswith("]"):
                host, port = authority, "443" if scheme == "https" else "80"
            context = ssl.create_default_context() if scheme == "https" else None
            origin = _Origin(key, host.strip("[]"), int(port), context)
            if len(self._origins) < 1024:  # upstreams come from the policy: a handful
                self._origins[key] = origin
        self._last_origin = origin
        return origin, target

    async def _acquire(
        self, origin: _Origin, connect_timeout: float, fresh: bool, deadline: float | None
    ) -> _Connection:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        by = loop.time() + connect_timeout
        deadline = by if deadline is None or by < deadline else deadline
        while True:
            if not fresh:
                idle = self._idle.get(origin.key)
                while idle:
                    conn = idle.pop()
                    if not conn.closed:
                        return conn
            if self._open < self._limit:
                break
            if self._evict_idle():
                continue
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError as late:  # named apart from `failure`: mypyc types it once
                raise caused_by(UpstreamTimeout("No upstream connection became free in time"), late)
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        self._open += 1
        created: list[_Connection] = []

        def protocol() -> _Connection:
            created.append(_Connection(self, origin))
            return created[0]

        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(
                    protocol,
                    origin.host,
                    origin.port,
                    ssl=origin.ssl,
                    server_hostname=origin.host if origin.ssl is not None else None,
                )
        except BaseException as failure:
            if created:  # a transport was made, then dropped: count it once
                created[0].abort()
            else:
                self._open -= 1
                self._wake_one()
            if isinstance(failure, TimeoutError):
                # As nginx's proxy_connect_timeout: a timeout (504), not a refusal (502).
                raise caused_by(
                    UpstreamTimeout("The upstream did not accept a connection in time"), failure
                )
            if isinstance(failure, OSError):
                raise caused_by(UpstreamConnectError("The upstream could not be reached"), failure)
            raise
        return conn

    def _evict_idle(self) -> bool:
        """Close one idle connection (of any origin) to make room; False if none is idle."""
        for idle in self._idle.values():
            if idle:
                idle.pop(0).abort()
                return True
        return False

    def _give_back(self, conn: _Connection) -> None:
        self._idle.setdefault(conn.origin.key, []).append(conn)
        self._wake_one()

    def _discard(self, conn: _Connection) -> None:
        if not conn.counted:
            return
        conn.counted = False
        self._open -= 1
        idle = self._idle.get(conn.origin.key)
        if idle and conn in idle:
            idle.remove(conn)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        for idle in self._idle.values():
            for conn in list(idle):
                conn.abort()
        self._idle.clear()


def _head(
    method: str,
    target: str,
    fields: Fields,
    body: bytes | AsyncIterable[bytes] | None,
) -> tuple[bytes, bool]:
    """The request line and fields as sent, and whether the body goes chunked."""
    chunked = False
    # One join over all the pieces: a string per field line, then joined, cost more.
    parts = [method, " ", target, " HTTP/1.1\r\n"]
    for name, value in fields:
        parts.append(name)
        parts.append(": ")
        parts.append(value)
        parts.append("\r\n")
    lines = len(fields)
    if body is None:
        if method not in _BODYLESS and not _has_length(fields):
            parts.append("Content-Length: 0\r\n")
            lines += 1
    elif isinstance(body, bytes):
        if not _has_length(fields):
            parts.append("Content-Length: ")
            parts.append(str(len(body)))
            parts.append("\r\n")
            lines += 1
    elif not _has_length(fields):
        parts.append("Transfer-Encoding: chunked\r\n")
        lines += 1
        chunked = True
    parts.append("\r\n")
    text = "".join(parts)
    # A CR or LF inside a name or value would split the head: header injection.
    breaks = lines + 2
    if text.count("\n") != breaks or text.count("\r") != breaks:
        raise UpstreamConnectError("A request header carries a line break")
    return text.encode("utf-8", "surrogateescape"), chunked


def _has_length(fields: Fields) -> bool:
    return any(name.lower() == "content-length" for name, _ in fields)

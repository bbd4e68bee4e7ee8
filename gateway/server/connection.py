"""One client connection: llhttp parses requests, the pipeline answers them one at a time, in order.

Pipelined requests queue behind the one being answered; a request head that llhttp refuses
becomes a problem+json answer in its place in that queue, and the connection closes after it.
A connection waiting for a request head (the first, or the next after an answer) is closed after
`limits.header_timeout`, which is what cuts clients that drip their headers.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Final, cast

import httptools
from aiohttp import HttpVersion, HttpVersion10, HttpVersion11, web

from gateway.errors import BadRequest, HeaderFieldsTooLarge, Rejection, caused_by
from gateway.server.body import RequestBody, broken_framing, cut_short
from gateway.server.request import ProxyRequest
from gateway.upstream.headers import Fields, IPNetwork, field_text, peer_facts

if TYPE_CHECKING:
    from gateway.server.listener import ProxyServer

MAX_HEADERS: Final = 128
"""Header fields a request may carry (aiohttp's default); more is a 431."""
MAX_QUEUED: Final = 32
"""Pipelined requests parsed ahead of the one being answered before reading pauses (aiohttp's
bound); reading resumes once half of them are answered."""
LINGER: Final = 10.0
"""Seconds an unread body is still read and discarded after the answer (aiohttp's lingering)."""
NO_BODY: Final = frozenset({204, 304})
"""Statuses whose answers never carry a body (RFC 9110 §6.4.1)."""
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_HTTP_11: Final = HttpVersion11  # constants: compiled, read without a lookup by name
_HTTP_10: Final = HttpVersion10
_VERSIONS: Final = {"1.1": _HTTP_11, "1.0": _HTTP_10}


class StreamedAnswer:
    """The head of an answer whose body the proxy streams (`HttpConnection.write`).

    Its fields are a list, as they came and in order, with the set of their lower-case names
    beside it: the head is written once from them, and a header map built for every answer
    only to be read through once cost more than the rest of the answer's head."""

    __slots__ = ("fields", "names", "reason", "status")

    def __init__(self, status: int, reason: str | None, fields: Fields, names: set[str]) -> None:
        self.status = status
        self.reason = reason
        self.fields = fields
        self.names = names


Answer = web.Response | StreamedAnswer
PrepareHook = Callable[[ProxyRequest, Answer], str]
"""Run as an answer's head is written: returns head lines of its own ("Name: value\r\n"...,
"" for none), having removed any field of the same name from the answer's headers."""
Handler = Callable[[ProxyRequest], Awaitable[Answer]]
Step = Callable[[ProxyRequest, Handler], Awaitable[Answer]]
"""A pipeline step: answers a request itself or through the handler behind it."""


class Bound:
    """A step with the handler behind it bound in: `Bound(step, handler)(request)` is
    `step(request, handler)`. functools.partial with a keyword would copy a dict and parse the
    keyword on every call, once per step and request; this is one vectorcall."""

    __slots__ = ("handler", "step")

    def __init__(self, step: Step, handler: Handler) -> None:
        self.step = step
        self.handler = handler

    def __call__(self, request: ProxyRequest) -> Awaitable[Answer]:
        return self.step(request, self.handler)


class _DateHeader:
    """The Date header value, formatted once a second rather than once a response."""

    def __init__(self) -> None:
        self._second = 0
        self._value = ""

    def now(self) -> str:
        wall = time.time()
        if int(wall) != self._second:
            self._second = int(wall)
            self._value = formatdate(wall, usegmt=True)
        return self._value


DATE: Final = _DateHeader()


def drop_fields(answer: Answer, names: frozenset[str]) -> None:
    """Remove the answer's fields of these lower-case names (a hook writes its own instead)."""
    if type(answer) is StreamedAnswer:
        if answer.names.isdisjoint(names):  # the common case, in one C call
            return
        answer.fields = [f for f in answer.fields if f[0].lower() not in names]
        answer.names -= names
        return
    headers = cast(web.Response, answer).headers
    for name in names:
        if name in headers:
            del headers[name]


class HttpConnection(asyncio.Protocol):
    """One client connection: its parser, its queue of requests, and the answer being written."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.loop = server.loop
        limits = server.limits()
        self._max_line = limits.max_header_line
        self._max_field = limits.max_header_size
        self._header_timeout = limits.header_timeout
        # A whole head: the request line and a few fields at their largest. Counted as bytes
        # arrive, since llhttp hands a header over only once it is complete.
        self._max_head = self._max_line + 8 * self._max_field
        self.head_deadline: float | None = None
        """When the head being awaited is late (loop time); None when none is awaited."""
        self._head_bytes = -1  # bytes of the head being received; -1 between heads
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.local_host = ""
        self._parser = httptools.HttpRequestParser(self)
        self._url: list[bytes] = []
        self._url_size = 0
        self._headers: Fields = []
        self._header_bytes = 0
        self._body: RequestBody | None = None  # the body the parser is feeding
        # A list, not a deque: compiled, its append and pop(0) are direct calls, and it holds
        # MAX_QUEUED items at most.
        self._queue: list[ProxyRequest | Rejection] = []
        self._wakeup: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._paused_writing = False
        self._drain: asyncio.Future[None] | None = None
        self._paused_reading = False
        self._body_paused = False  # a request body's buffer is full
        self._queue_paused = False  # MAX_QUEUED requests wait for their answers
        self._peer_eof = False
        self._parsing = True  # false after a parse error or an upgrade: bytes are not HTTP now
        self._tunnel: Callable[[bytes], None] | None = None
        self._tunnel_backlog: list[bytes] = []
        self._tunnel_eof: Callable[[], None] | None = None
        self._upgraded = False
        self._lingering = False
        self._unread = False  # the last answered request left part of its body unread
        self._serving: ProxyRequest | None = None
        self._head: bytes | None = None  # an answer head held to travel with its first body bytes
        self._chunked = False
        self._closing = False  # answer what is in flight, then close
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self._peer_facts: tuple[tuple[IPNetwork, ...], str, bool] | None = None

    def peer_facts(self, trusted: tuple[IPNetwork, ...]) -> tuple[str, bool]:
        """The peer's address and whether `trusted` holds it: the same for every request of
        the connection, so worked out once (again only after a reload changed the networks)."""
        cached = self._peer_facts
        if cached is None or cached[0] is not trusted:
            cached = self._peer_facts = (trusted, *peer_facts(self.peer, trusted))
        return cached[1], cached[2]

    # -- transport events ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else ""
        local = transport.get_extra_info("sockname")
        self.local_host = f"{local[0]}:{local[1]}" if isinstance(local, tuple) else ""
        self.server.connections.add(self)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._tunnel(data)
            return
        if not self._parsing:
            if self._upgraded and not self._lingering:
                self._tunnel_backlog.append(data)  # frames sent before the upstream's 101
                if len(self._tunnel_backlog) > 16:  # a client that will not wait for the 101
                    self.pause_reading()
            return  # lingering, or after a parse error: discarded
        if self._head_bytes >= 0:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
            if self._head_bytes > self._max_head:  # still inside the head after all of that
                raise HeaderFieldsTooLarge(
                    f"The request head is larger than {self._max_head} bytes"
                )
        # One name per exception type: mypyc gives a name one type for the whole function.
        except HeaderFieldsTooLarge as too_large:
            self._refuse(too_large)
        except httptools.HttpParserUpgrade as upgrade:
            self._parsing = False
            self._upgraded = True
            rest = data[upgrade.args[0] :]
            if rest:
                self._tunnel_backlog.append(rest)
        except httptools.HttpParserCallbackError as failed:
            cause = failed.__context__
            self._refuse(cause if isinstance(cause, Rejection) else _not_http())
        except httptools.HttpParserError:
            self._refuse(_not_http())

    def eof_received(self) -> bool | None:
        # No request can follow, but those already queued (pipelined just before the FIN)
        # are still answered, in order; the connection closes after the last of them.
        self._parsing = False
        self._peer_eof = True
        if self._tunnel_eof is not None:  # an upgraded connection: the upstream hears the FIN
            self._tunnel_eof()
            return True  # and may still send, until it closes in turn
        if self._body is not None:  # the client stopped sending before its body's end
            self._body.fail(cut_short())
            self._body = None
        if self._lingering or (self._serving is None and not self._queue):
            return None  # nothing to answer: let the transport close
        return True  # a half-closed client may still read the answer to what it sent

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._parsing = False
        self._stop_timers()
        self.server.forget(self)
        if self._body is not None:
            self._body.fail(cut_short())
            self._body = None
        for item in self._queue:
            if isinstance(item, ProxyRequest):
                item.content.fail(cut_short())
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_exception(ConnectionResetError("The client closed the connection"))
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake()

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- flow control asked for by request bodies ------------------------------------------

    def pause_reading(self) -> None:
        self._body_paused = True
        self._sync_reading()

    def resume_reading(self) -> None:
        self._body_paused = False
        self._sync_reading()

    def _sync_reading(self) -> None:
        """Read from the client unless a full body buffer or a full queue says otherwise."""
        transport = self.transport
        if transport is None:
            return
        wanted = not (self._body_paused or self._queue_paused)
        if wanted and self._paused_reading:
            self._paused_reading = False
            transport.resume_reading()
        elif not wanted and not self._paused_reading:
            self._paused_reading = True
            transport.pause_reading()

    def send_continue(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_CONTINUE)

    # -- llhttp callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        self._url.clear()
        self._url_size = 0
        self._headers = []
        self._header_bytes = 0

    def on_url(self, part: bytes) -> None:
        self._url_size += len(part)
        if self._url_size > self._max_line:
            raise HeaderFieldsTooLarge(
                f"A header field or the request line is longer than {self._max_line} bytes"
            )
        self._url.append(part)

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self._headers) >= MAX_HEADERS:
            raise HeaderFieldsTooLarge("The request has more header fields than the parser allows")
        size = len(name) + len(value)
        if size + 2 > self._max_field:
            raise HeaderFieldsTooLarge(
                f"A header field or the request line is longer than {self._max_field} bytes"
            )
        # Decoded as they come (names as latin-1, values as UTF-8 with undecodable bytes kept
        # as surrogates, as aiohttp does): the steps read the list, a map is made if asked.
        self._headers.append((name.decode("latin-1"), field_text(value)))
        self._header_bytes += size + 4  # name, ": ", value, CRLF: the bytes the client sent

    def on_headers_complete(self) -> None:
        self._head_bytes = -1
        self._stop_timers()
        parser = self._parser
        version_text = parser.get_http_version()
        version = _VERSIONS.get(version_text)
        if version is None:
            major, _, minor = version_text.partition(".")
            version = HttpVersion(int(major or 0), int(minor or 0))
        try:
            target = b"".join(self._url).decode("utf-8")
        except UnicodeDecodeError:
            raise caused_by(BadRequest("The request target is not valid UTF-8"), None)
        # A fragment never travels (RFC 9112 §3.2): cut it, as aiohttp did, so that routes and
        # limits see the path the upstream will serve.
        target = target.partition("#")[0]
        fields = self._headers
        host: str | None = None
        hosts = 0
        codings: list[str] = []
        length_text: str | None = None
        expect = ""
        for name, value in fields:  # the fields the framing rests on, in one pass, by length
            size = len(name)
            if size == 4:
                if name.lower() == "host":
                    hosts += 1
                    if host is None:
                        host = value
            elif size == 14:
                if length_text is None and name.lower() == "content-length":
                    length_text = value
            elif size == 17:
                if name.lower() == "transfer-encoding":
                    codings += [coding.strip().lower() for coding in value.split(",")]
            elif size == 6 and not expect and name.lower() == "expect":
                expect = value
        if hosts > 1 or (host is None and version == _HTTP_11):
            raise BadRequest("A request needs exactly one Host header")
        chunked = bool(codings)
        if chunked and (version != _HTTP_11 or codings != ["chunked"]):
            # Only chunked is decoded here; forwarding a body still under another coding
            # without saying so would change it, and HTTP/1.0 has no transfer codings.
            raise BadRequest("Transfer-Encoding other than one chunked coding is not served")
        length = int(length_text) if length_text is not None else None
        body = RequestBody(self)
        has_body = bool(length) or chunked
        if has_body:
            self._body = body
            if version == _HTTP_11 and "100-continue" in expect.lower():
                body.expects_continue = True
        else:
            body.finish()
        request = ProxyRequest(
            self,
            parser.get_method().decode("ascii"),
            target,
            version,
            fields,
            self.local_host if host is None else host,
            self._header_bytes,
            body,
            length,
            chunked,
            has_body,
            parser.should_keep_alive(),
        )
        self._queue.append(request)
        if len(self._queue) >= MAX_QUEUED and not self._queue_paused:
            self._queue_paused = True  # a client pipelining without reading its answers
            self._sync_reading()
        self._wake()

    def on_body(self, data: bytes) -> None:
        if self._body is not None:
            self._body.feed(data)

    def on_message_complete(self) -> None:
        if self._body is not None:
            self._body.finish()
            self._body = None

    # -- answering -------------------------------------------------------------------------

    def _wake(self) -> None:
        if self._task is None and self._queue and self.transport is not None:
            self._task = self.loop.create_task(self._serve())
            return
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def _refuse(self, error: Rejection) -> None:
        """The parser gave up: answer in place of the request it was reading, or fail the body
        of the one being answered (whose upstream may have begun receiving it)."""
        self._parsing = False
        body, self._body = self._body, None
        if body is not None:
            queued = self._queue[-1] if self._queue else None
            if not (isinstance(queued, ProxyRequest) and queued.content is body):
                body.fail(broken_framing())  # the client's fault: a 400 from that request
                self._closing = True
                return
            self._queue.pop()  # not started: nothing of it reached the upstream
        self._queue.append(error)
        self._wake()

    async def _serve(self) -> None:
        """Answer the queued requests in order, for as long as the connection lives."""
        while self.transport is not None:
            if not self._queue:
                if self._closing or not self._parsing:
                    break
                self._wakeup = self.loop.create_future()
                await self._wakeup
                self._wakeup = None
                continue
            item = self._queue.pop(0)
            if self._queue_paused and len(self._queue) <= MAX_QUEUED // 2:
                self._queue_paused = False
                self._sync_reading()
            if isinstance(item, Rejection):
                self.server.refused_unparsed(self, item)
                self._unread = True  # the client may be sending the rest of what we refused
                break
            keep_alive = await self._answer(item)
            if not keep_alive:
                self._unread = not item.content.is_eof()
                break
            if not self._queue:
                self._await_head()
        if self._unread and self.transport is not None:
            self._linger()
        else:
            self._close()

    def _linger(self) -> None:
        """Close after an answer given before the body was read, as nginx's lingering_close:
        send FIN, then read and discard what the client still sends, for LINGER seconds at most,
        so that the client reads the answer instead of a connection reset."""
        transport = self.transport
        assert transport is not None
        if self._peer_eof:  # the client sends nothing more: nothing to discard
            self._close()
            return
        self._lingering = True
        self._parsing = False
        self._body = None
        self._queue_paused = False
        self.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
        self._stop_timers()
        self._timer = self.loop.call_later(LINGER, self._close)

    async def _answer(self, request: ProxyRequest) -> bool:
        """Run the pipeline for one request; whether the connection may carry another."""
        self._serving = request
        self._head = None
        try:
            answer = await self.server.handler(request)
            # The class first: a Response is a MutableMapping, so isinstance() alone would go
            # through ABCMeta's machinery for every streamed answer.
            if type(answer) is not StreamedAnswer and isinstance(answer, web.Response):
                await self.send_response(request, answer)
            if self._head is not None:  # a streamed head nobody wrote a body after
                self.end_body()
        except ConnectionResetError:
            return False  # the client went away before its answer was written
        except Exception:
            self.server.log_unexpected(request)
            return False
        finally:
            self._serving = None
        if not request.keep_alive or self._closing or self.transport is None:
            return False
        if not request.content.is_eof():
            # The pipeline answered without reading the whole body: the rest of it cannot be
            # told apart from a next request unless llhttp reads it through; stop here instead.
            return False
        return self._parsing or bool(self._queue)  # a refused head still waits for its answer

    def keeps_alive(self, request: ProxyRequest) -> bool:
        return (
            request.keep_alive
            and not self._closing
            and (self._parsing or bool(self._queue))
            and not self.server.closing
            and request.content.is_eof()
        )

    def start_answer(self, request: ProxyRequest, answer: Answer, length: int | None) -> None:
        """Write (or hold, to travel with the body) the head of `answer` to `request`.

        `length` is the body's size when known; None streams it chunked (HTTP/1.1) or until
        the connection closes (HTTP/1.0). HEAD and 204/304 answers never carry a body.
        """
        lines = ""
        for hook in self.server.prepare_hooks:
            lines += hook(request, answer)
        status = answer.status
        keep_alive = self.keeps_alive(request)
        no_body = status in NO_BODY or status < 200
        self._chunked = False
        framing = []
        if request.method == "HEAD":
            if length is not None and not no_body:  # the length a GET would have had
                framing.append(f"Content-Length: {length}")
        elif not no_body:
            if length is not None:
                framing.append(f"Content-Length: {length}")
            elif request.version == _HTTP_11:
                self._chunked = True
                framing.append("Transfer-Encoding: chunked")
            else:
                keep_alive = False  # an HTTP/1.0 body of unknown length ends with the connection
        if not keep_alive:
            framing.append("Connection: close")
            self._closing = True
        elif request.version == _HTTP_10:
            framing.append("Connection: keep-alive")
        self._head = render_answer_head(answer, framing, lines)

    async def write(self, data: bytes) -> None:
        """A piece of the streamed body; waits while the client reads slower than we send."""
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("The client closed the connection")
        if self._chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        head = self._head
        if head is not None:
            self._head = None
            data = head + data
        transport.write(data)
        if self._paused_writing:
            self._drain = self.loop.create_future()
            try:
                await self._drain
            finally:
                self._drain = None

    def end_body(self, last: bytes = b"") -> None:
        """The end of the answer, after `last`, its final piece (the whole of a small body):
        with the head if it is still held, in one write."""
        transport = self.transport
        data = self._head or b""
        self._head = None
        if self._chunked:
            if last:
                data += b"%x\r\n%b\r\n" % (len(last), last)
            data += b"0\r\n\r\n"
            self._chunked = False
        elif last:
            data += last
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    async def send_response(self, request: ProxyRequest, response: web.Response) -> None:
        """A whole answer the pipeline built itself (a problem, a 429...)."""
        body = response.body
        payload = body if isinstance(body, bytes) else b""
        if response.keep_alive is False:  # force_close()
            self._closing = True
        self.start_answer(request, response, len(payload))
        if payload and request.method != "HEAD":
            await self.write(payload)
        self.end_body()

    # -- upgrades --------------------------------------------------------------------------

    def switch_protocols(self, request: ProxyRequest, answer: StreamedAnswer, early: bytes) -> None:
        """Write the upstream's 101 as it came (its Connection and Upgrade included)."""
        lines = ""
        for hook in self.server.prepare_hooks:
            lines += hook(request, answer)
        self._head = None
        self._chunked = False
        if self.transport is not None:
            head = render_answer_head(answer, (), lines)
            self.transport.write(head + early)

    def tunnel_to(self, sink: Callable[[bytes], None], eof: Callable[[], None]) -> None:
        """From now on every byte the client sends goes to `sink` (an upgraded connection),
        and its FIN to `eof`: a half-close travels as one, as nginx and Envoy pass it on."""
        self._tunnel = sink
        self._tunnel_eof = eof
        self._closing = True
        backlog, self._tunnel_backlog = self._tunnel_backlog, []
        self.resume_reading()  # paused while the backlog waited; the sink may pause it again
        for data in backlog:
            sink(data)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return self._serving is None and not self._queue

    def close_when_idle(self) -> None:
        """Shutdown: close now if nothing is being answered, else after the current answer."""
        self._closing = True
        if self.idle:
            self._close()

    def _close(self) -> None:
        self._stop_timers()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> asyncio.Task[None] | None:
        """Cut the connection; the task still answering on it, if any, to cancel."""
        if self.transport is not None:
            self.transport.abort()
        task = self._task
        return task if task is not None and not task.done() else None

    def _await_head(self) -> None:
        """Start the header timeout: a deadline the server's sweep reads (ProxyServer.sweep),
        not a timer handle made and cancelled for every request."""
        self._stop_timers()
        self.head_deadline = self.loop.time() + self._header_timeout

    def _stop_timers(self) -> None:
        self.head_deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def header_timed_out(self) -> None:
        self.head_deadline = None
        if self.idle:
            self._close()


def _not_http() -> BadRequest:
    return BadRequest("The request is not valid HTTP/1.1")


def render_answer_head(answer: Answer, framing: Iterable[str], rendered: str) -> bytes:
    """`render_head` for a streamed answer's fields or a built response's header map."""
    if type(answer) is StreamedAnswer:
        fields: Iterable[tuple[str, str]] = answer.fields
        dated = "date" in answer.names
    else:
        headers = cast(web.Response, answer).headers
        fields = headers.items()
        dated = "Date" in headers
    return render_head(answer.status, answer.reason, fields, dated, framing, rendered)


def render_head(
    status: int,
    reason: str | None,
    fields: Iterable[tuple[str, str]],
    dated: bool,
    framing: Iterable[str],
    rendered: str = "",
) -> bytes:
    """The status line, our framing fields, Date unless `dated` (the answer has one), the
    answer's fields, the lines the prepare hooks rendered, CRLF."""
    # One join over all the pieces: a string per line, then joined, cost more.
    parts = ["HTTP/1.1 ", str(status), " ", reason or _reason(status), "\r\n"]
    for field in framing:
        parts.append(field)
        parts.append("\r\n")
    if not dated:
        parts.append("Date: ")
        parts.append(DATE.now())
        parts.append("\r\n")
    for name, value in fields:
        parts.append(name)
        parts.append(": ")
        parts.append(value)
        parts.append("\r\n")
    parts.append(rendered)
    parts.append("\r\n")
    return "".join(parts).encode("utf-8", "surrogateescape")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""

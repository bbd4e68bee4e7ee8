"""WebSocket upgrades: ask the upstream first, pass its 101 back, then tunnel bytes both ways.

As nginx and Envoy do, the gateway does not speak WebSocket itself: once the upstream has
switched protocols, frames (pings and closes included) travel untouched in both directions
until either side closes; a client's half-close (FIN) is passed on as one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from urllib.parse import urlsplit

import httptools

from gateway.errors import UpstreamConnectError, UpstreamTimeout
from gateway.server.body import HIGH_WATER
from gateway.server.connection import HttpConnection, StreamedAnswer
from gateway.server.request import ProxyRequest
from gateway.upstream.client import CHUNK_SIZE, Timeouts
from gateway.upstream.headers import Fields


class _Head:
    """llhttp callbacks collecting the upstream's answer to the upgrade request."""

    def __init__(self) -> None:
        self.fields: Fields = []
        self.reason = ""
        self.done = False

    def on_status(self, reason: bytes) -> None:
        self.reason += reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name.decode("latin-1"), value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        self.done = True


async def proxy_websocket(
    request: ProxyRequest, url: str, fields: Fields, timeouts: Timeouts
) -> StreamedAnswer:
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    context = ssl.create_default_context() if secure else None
    try:
        async with asyncio.timeout(timeouts.connect):
            reader, writer = await asyncio.open_connection(
                parts.hostname, parts.port or (443 if secure else 80), ssl=context
            )
    except TimeoutError as exc:
        raise UpstreamTimeout("The upstream did not accept a connection in time") from exc
    except OSError as exc:
        raise UpstreamConnectError("The upstream could not be reached") from exc
    try:
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        lines = [f"GET {target} HTTP/1.1", "Connection: Upgrade", "Upgrade: websocket"]
        lines += [f"{name}: {value}" for name, value in fields]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape"))
        status, head, early = await _read_head(reader, timeouts.read)
        if status != 101:
            raise UpstreamConnectError(f"The upstream refused the WebSocket upgrade ({status})")
        names = {name.lower() for name, _ in head.fields}
        answer = StreamedAnswer(101, head.reason or None, head.fields, names)
        connection = request.connection
        connection.switch_protocols(request, answer, early)
        forward = _Forward(writer, connection)
        connection.tunnel_to(forward, forward.eof)
        pump = asyncio.ensure_future(_pump(reader, connection))
        try:
            await asyncio.wait((pump, connection.lost), return_when=asyncio.FIRST_COMPLETED)
        finally:
            pump.cancel()
        return answer
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _read_head(reader: asyncio.StreamReader, read_timeout: float) -> tuple[int, _Head, bytes]:
    """The upstream's status and head, and the bytes that came after it (its first frames)."""
    callbacks = _Head()
    parser = httptools.HttpResponseParser(callbacks)
    try:
        async with asyncio.timeout(read_timeout):
            while True:
                data = await reader.read(CHUNK_SIZE)
                if not data:
                    raise UpstreamConnectError("The upstream closed the WebSocket upgrade")
                try:
                    parser.feed_data(data)
                except httptools.HttpParserUpgrade as upgrade:
                    return parser.get_status_code(), callbacks, data[upgrade.args[0] :]
                if callbacks.done:
                    return parser.get_status_code(), callbacks, b""
    except TimeoutError as exc:
        raise UpstreamTimeout("The upstream did not answer the WebSocket upgrade in time") from exc
    except httptools.HttpParserError as exc:
        raise UpstreamConnectError("The upstream's answer is not valid HTTP/1.1") from exc


class _Forward:
    """Client to upstream; stops reading the client while the upstream's buffer is full."""

    def __init__(self, writer: asyncio.StreamWriter, connection: HttpConnection) -> None:
        self.writer = writer
        self.connection = connection
        self.draining: asyncio.Task[None] | None = None

    def __call__(self, data: bytes) -> None:
        self.writer.write(data)
        full = self.writer.transport.get_write_buffer_size() > HIGH_WATER
        if full and self.draining is None:
            self.connection.pause_reading()
            self.draining = asyncio.ensure_future(self._resume_when_drained())

    def eof(self) -> None:
        """The client half-closed: so does the upstream side, once what is queued is sent."""
        if self.writer.can_write_eof() and not self.writer.is_closing():
            self.writer.write_eof()

    async def _resume_when_drained(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()
        self.draining = None
        self.connection.resume_reading()


async def _pump(reader: asyncio.StreamReader, connection: HttpConnection) -> None:
    """Upstream to client, until the upstream closes (the client side closes after it)."""
    with contextlib.suppress(ConnectionResetError):
        while data := await reader.read(CHUNK_SIZE):
            await connection.write(data)

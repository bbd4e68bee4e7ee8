"""Helpers for the proxy's end-to-end tests: raw sockets, where a client library would normalise."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from gateway.observability.logs import configure_logging
from gateway.policy.model import Upstream
from gateway.upstream.clients import CLIENTS
from tests.conftest import GatewayFactory

ROUTES = """
routes:
  - name: default
    match: {path_prefix: /}
"""


@dataclass
class RawResponse:
    """A response as read off the wire, headers kept in their order and spelling."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.body)  # type: ignore[no-any-return]


class RawConnection:
    """One client TCP connection that writes exact bytes and reads HTTP/1.1 responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, address: str) -> RawConnection:
        host, _, port = address.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, *, head: bool = False) -> RawResponse:
        """Read one response; `head` when it answers a HEAD (no body whatever the headers say)."""
        status_line = await asyncio.wait_for(self.reader.readline(), 10)
        assert status_line, "the connection closed without a response"
        status = int(status_line.split()[1])
        headers: list[tuple[str, str]] = []
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name, value.strip()))
        found = RawResponse(status, headers, b"")
        if head or status in (204, 304) or 100 <= status < 200:
            return found
        if (found.header("Transfer-Encoding") or "").lower() == "chunked":
            found.body = await self._chunked()
        elif (length := found.header("Content-Length")) is not None:
            found.body = await self.reader.readexactly(int(length))
        else:
            found.body = await self.reader.read()
        return found

    async def _chunked(self) -> bytes:
        body = io.BytesIO()
        while True:
            size = int((await self.reader.readline()).split(b";")[0], 16)
            if size == 0:
                while await self.reader.readline() not in (b"\r\n", b""):
                    pass
                return body.getvalue()
            body.write(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    async def nothing_more(self) -> bytes:
        """Whatever else arrives within 300 ms (b'' when the connection is idle or closed)."""
        try:
            return await asyncio.wait_for(self.reader.read(65536), 0.3)
        except TimeoutError:
            return b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def exchange(address: str, data: bytes, *, head: bool = False) -> RawResponse:
    """Send exact bytes on a fresh connection and read one response."""
    connection = await RawConnection.open(address)
    try:
        await connection.send(data)
        return await connection.response(head=head)
    finally:
        await connection.close()


async def upstream_hits(upstream: TestServer) -> dict[str, int]:
    """The upstream's own count of requests that reached it, by route."""
    raw = await exchange(
        f"{upstream.host}:{upstream.port}", b"GET /_hits HTTP/1.1\r\nHost: u\r\n\r\n"
    )
    return raw.json()


@pytest.fixture(autouse=True, params=sorted(CLIENTS))
def upstream_client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every proxy test runs against each upstream client: the suite is their shared contract.

    The client under test is registered under the policy's default name, so the policies the
    tests write need no change.
    """
    name: str = request.param
    default = Upstream.model_fields["client"].default
    monkeypatch.setitem(CLIENTS, default, CLIENTS[name])
    return name


@pytest.fixture
def log_stream(make_gateway: GatewayFactory) -> Iterator[io.StringIO]:
    """A stream to send the gateway's log lines to, once it started (start() configures logging).

    It depends on make_gateway so that it is torn down first, before the gateway logs its stop.
    """
    stream = io.StringIO()
    yield stream
    configure_logging("info")


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """The JSON log lines written to the stream."""
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


@dataclass
class RawUpstream:
    """A hand-written upstream: records each request head and answers canned bytes."""

    answer: bytes
    heads: list[bytes]
    server: asyncio.Server | None = None
    connections: int = 0

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                self.heads.append(head)
                writer.write(self.answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

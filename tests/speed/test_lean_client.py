"""The lean upstream client's connection handling, against hand-written upstreams on sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from gateway.errors import UpstreamConnectError, UpstreamTimeout
from gateway.upstream.client import Timeouts
from gateway.upstream.lean import LeanUpstreamClient

TIMEOUTS = Timeouts(connect=1.0, read=1.0)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class Upstream:
    """A loopback server running `serve(reader, writer, connection_number)` per connection."""

    def __init__(self, serve: Serve) -> None:
        self.serve = serve
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.serve(reader, writer, self.connections)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def upstream(serve: Serve) -> AsyncIterator[Upstream]:
    server = Upstream(serve)
    server.server = await asyncio.start_server(server._accept, "127.0.0.1", 0)
    try:
        yield server
    finally:
        server.server.close()


@pytest.fixture
async def lean() -> AsyncIterator[LeanUpstreamClient]:
    client = LeanUpstreamClient(max_connections=8)
    yield client
    await client.close()


async def get(
    client: LeanUpstreamClient, url: str, method: str = "GET", body: bytes | None = None
) -> tuple[int, bytes]:
    response = await client.send(method, url, [("Host", "u")], body, TIMEOUTS)
    try:
        data = b"".join([chunk async for chunk in response.body()])
    finally:
        response.release()
    return response.status, data


async def answer_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    while True:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await writer.drain()


async def test_sequential_requests_share_one_connection(lean: LeanUpstreamClient) -> None:
    """Requests one after another travel on one kept-alive upstream connection."""
    async with upstream(answer_each) as server:
        for _ in range(3):
            assert await get(lean, server.url + "/x") == (200, b"ok")
    assert server.connections == 1


async def _stale_after_first(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
) -> None:
    """The first connection answers once, then closes on the next request without answering."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(OK)
    await writer.drain()
    if n == 1:
        await reader.readuntil(b"\r\n\r\n")
        return  # closed unanswered: the race of an upstream's idle timeout
    await answer_each(reader, writer, n)


async def test_stale_pooled_connection_is_retried_once_for_get(lean: LeanUpstreamClient) -> None:
    """A GET sent on a pooled connection the upstream closes unanswered succeeds on a new one."""
    async with upstream(_stale_after_first) as server:
        assert await get(lean, server.url + "/a") == (200, b"ok")
        assert await get(lean, server.url + "/b") == (200, b"ok")
    assert server.connections == 2


async def test_stale_pooled_connection_is_not_retried_for_post(lean: LeanUpstreamClient) -> None:
    """A POST on a pooled connection closed unanswered fails: it may have reached the upstream."""
    async with upstream(_stale_after_first) as server:
        assert await get(lean, server.url + "/a") == (200, b"ok")
        with pytest.raises(UpstreamConnectError):
            await get(lean, server.url + "/b", method="POST", body=b"once")
    assert server.connections == 1


async def test_body_until_close_is_read_whole_and_not_reused(lean: LeanUpstreamClient) -> None:
    """An answer without length ends when the upstream closes; the next request reconnects."""

    async def until_close(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 200 OK\r\n\r\nall of ")
        await w.drain()
        w.write(b"it")

    async with upstream(until_close) as server:
        assert await get(lean, server.url) == (200, b"all of it")
        assert await get(lean, server.url) == (200, b"all of it")
    assert server.connections == 2


async def test_connection_close_answer_is_not_reused(lean: LeanUpstreamClient) -> None:
    """An answer saying Connection: close makes the next request open a new connection."""

    async def closing(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await w.drain()
        await r.read()  # keep the socket open: the client must not send on it again

    async with upstream(closing) as server:
        assert await get(lean, server.url) == (200, b"ok")
        assert await get(lean, server.url) == (200, b"ok")
    assert server.connections == 2


async def test_unread_body_closes_the_connection(lean: LeanUpstreamClient) -> None:
    """A response released before its body was read is not reused (its bytes would remain)."""

    async def big(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        while True:
            await r.readuntil(b"\r\n\r\n")
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000)
            await w.drain()

    async with upstream(big) as server:
        response = await lean.send("GET", server.url, [("Host", "u")], None, TIMEOUTS)
        response.release()
        assert (await get(lean, server.url))[1] == b"x" * 100000
    assert server.connections == 2


async def test_truncated_body_is_a_connect_error(lean: LeanUpstreamClient) -> None:
    """An answer shorter than its Content-Length raises, never passes as a whole body."""

    async def short(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await w.drain()

    async with upstream(short) as server:
        with pytest.raises(UpstreamConnectError):
            await get(lean, server.url)


async def test_stalled_body_is_a_timeout(lean: LeanUpstreamClient) -> None:
    """A body that stops flowing for longer than the read timeout raises UpstreamTimeout."""

    async def stall(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await w.drain()
        await asyncio.sleep(5)

    async with upstream(stall) as server:
        response = await lean.send(
            "GET", server.url, [("Host", "u")], None, Timeouts(connect=1, read=0.2)
        )
        with pytest.raises(UpstreamTimeout):
            async for _ in response.body():
                pass
        response.release()


async def test_garbage_answer_is_a_connect_error(lean: LeanUpstreamClient) -> None:
    """Bytes that are not HTTP raise UpstreamConnectError."""

    async def garbage(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await w.drain()
        await asyncio.sleep(1)

    async with upstream(garbage) as server:
        with pytest.raises(UpstreamConnectError):
            await get(lean, server.url)


async def test_pool_limit_queues_requests_on_one_connection() -> None:
    """With max_connections 1, concurrent requests wait their turn and share one connection."""
    client = LeanUpstreamClient(max_connections=1)

    async def slow(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        while True:
            await r.readuntil(b"\r\n\r\n")
            await asyncio.sleep(0.02)
            w.write(OK)
            await w.drain()

    try:
        async with upstream(slow) as server:
            results = await asyncio.gather(*(get(client, server.url) for _ in range(4)))
    finally:
        await client.close()
    assert results == [(200, b"ok")] * 4
    assert server.connections == 1


async def test_interim_answer_is_skipped(lean: LeanUpstreamClient) -> None:
    """A 103 Early Hints before the answer is skipped: the final answer is what comes back."""

    async def hints(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + OK)
        await w.drain()
        await asyncio.sleep(1)

    async with upstream(hints) as server:
        response = await lean.send("GET", server.url, [("Host", "u")], None, TIMEOUTS)
        assert response.status == 200
        assert "Link" not in response.headers
        assert b"".join([c async for c in response.body()]) == b"ok"
        response.release()


async def test_header_with_line_break_is_refused(lean: LeanUpstreamClient) -> None:
    """A header value carrying CR LF never reaches the wire (no header injection)."""
    async with upstream(answer_each) as server:
        with pytest.raises(UpstreamConnectError):
            await lean.send(
                "GET", server.url, [("Host", "u"), ("X", "a\r\nEvil: 1")], None, TIMEOUTS
            )
    assert server.connections == 0


async def test_requests_alternating_between_upstreams_reach_their_own(
    lean: LeanUpstreamClient,
) -> None:
    """The client remembers the last upstream to skip parsing its URL again; requests that
    alternate between two upstreams (and a URL that only starts like the last one's) still
    go where their URL says."""

    def answering(body: bytes) -> Serve:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
                await writer.drain()

        return serve

    async with upstream(answering(b"one")) as one, upstream(answering(b"two")) as two:
        for _ in range(3):
            assert await get(lean, one.url + "/x") == (200, b"one")
            assert await get(lean, two.url + "/x") == (200, b"two")
    origin, target = lean._origin("http://10.0.0.1:80/a")
    longer, longer_target = lean._origin("http://10.0.0.1:8080/b")
    assert (origin.port, target) == (80, "/a")
    assert (longer.port, longer_target) == (8080, "/b")

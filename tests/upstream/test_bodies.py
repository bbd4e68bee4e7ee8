"""Bodies travel both ways as streams: chunked or sized, large or empty, HEAD/204/304 without."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import psutil
import pytest

from tests.conftest import GatewayFactory
from tests.upstream.conftest import ROUTES, RawConnection, exchange

MIB = 1 << 20
LARGE = 200 * MIB
FLAT = 30 * MIB


class PeakRss:
    """Samples this process's resident memory while a transfer runs."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.start = self._process.memory_info().rss
        self.peak = self.start
        self._task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self._process.memory_info().rss)
            await asyncio.sleep(0.02)

    def stop(self) -> int:
        self._task.cancel()
        return self.peak - self.start


async def _zeros(total: int, chunk: int = 256 * 1024) -> AsyncIterator[bytes]:
    block = bytes(chunk)
    sent = 0
    while sent < total:
        piece = block[: min(chunk, total - sent)]
        sent += len(piece)
        yield piece


async def test_large_upload_streams_with_flat_memory(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """A 200 MB chunked upload reaches the upstream whole while the process grows < 30 MB."""
    gw = await make_gateway(ROUTES)
    rss = PeakRss()
    async with client.post(gw.proxy + "/count", data=_zeros(LARGE)) as response:
        assert response.status == 200
        assert (await response.json())["received"] == LARGE
    growth = rss.stop()
    assert growth < FLAT, f"RSS grew {growth / MIB:.1f} MiB"


async def test_large_download_streams_with_flat_memory(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """A 200 MB download arrives whole, with its Content-Length, while the process grows < 30 MB."""
    gw = await make_gateway(ROUTES)
    rss = PeakRss()
    received = 0
    async with client.get(gw.proxy + f"/sized?bytes={LARGE}") as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == str(LARGE)
        async for chunk in response.content.iter_chunked(256 * 1024):
            received += len(chunk)
    growth = rss.stop()
    assert received == LARGE
    assert growth < FLAT, f"RSS grew {growth / MIB:.1f} MiB"


async def test_chunked_request_body_arrives_intact(make_gateway: GatewayFactory) -> None:
    """A Transfer-Encoding: chunked upload (with a chunk extension) reaches the upstream whole."""
    gw = await make_gateway(ROUTES)
    request = (
        b"POST /echo HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n"
    )
    response = await exchange(gw.gateway.addresses["proxy"], request)
    echoed = response.json()
    assert echoed["body"] == "hello world!"
    sent = {k.lower(): v for k, v in echoed["headers"]}
    # The body went upstream as a stream: re-chunked, never a made-up Content-Length.
    assert sent.get("transfer-encoding") == "chunked"
    assert "content-length" not in sent


async def test_content_length_request_body_keeps_its_length(make_gateway: GatewayFactory) -> None:
    """A sized upload reaches the upstream with the same Content-Length, not re-chunked."""
    gw = await make_gateway(ROUTES)
    request = b"PUT /echo HTTP/1.1\r\nHost: app\r\nContent-Length: 11\r\n\r\nhello world"
    echoed = (await exchange(gw.gateway.addresses["proxy"], request)).json()
    sent = {k.lower(): v for k, v in echoed["headers"]}
    assert echoed["body"] == "hello world"
    assert sent["content-length"] == "11"
    assert "transfer-encoding" not in sent


async def test_chunked_upstream_response_arrives_intact(make_gateway: GatewayFactory) -> None:
    """A chunked upstream answer reaches the client chunked and whole."""
    gw = await make_gateway(ROUTES)
    response = await exchange(
        gw.gateway.addresses["proxy"],
        b"GET /stream?chunks=7&size=1000 HTTP/1.1\r\nHost: app\r\n\r\n",
    )
    assert response.status == 200
    assert response.header("Transfer-Encoding") == "chunked"
    assert response.header("Content-Length") is None
    assert response.body == b"x" * 7000


@pytest.mark.parametrize(
    ("target", "version", "framing", "body"),
    [
        pytest.param("/stream?chunks=2&size=5", "1.1", "chunked", b"x" * 10, id="chunked-1.1"),
        pytest.param("/stream?chunks=2&size=5", "1.0", None, b"x" * 10, id="chunked-1.0"),
        pytest.param("/sized?bytes=5", "1.1", "5", b"y" * 5, id="sized-1.1"),
        pytest.param("/sized?bytes=0", "1.1", "0", b"", id="empty-1.1"),
    ],
)
async def test_small_answers_keep_their_framing_and_the_connection(
    make_gateway: GatewayFactory, target: str, version: str, framing: str | None, body: bytes
) -> None:
    """A small answer, all of it read with its head, leaves in one piece in the framing the
    client understands; a keep-alive client then sends its next request on the same
    connection and gets that answer too."""
    gw = await make_gateway(ROUTES)
    keep = "Connection: keep-alive\r\n" if version == "1.0" else ""
    ask = f"GET {target} HTTP/{version}\r\nHost: app\r\n{keep}\r\n".encode()
    conn = await RawConnection.open(gw.gateway.addresses["proxy"])
    for _ in range(2 if version == "1.1" else 1):
        await conn.send(ask)
        response = await conn.response()
        assert response.status == 200
        assert response.body == body
        if framing == "chunked":
            assert response.header("Transfer-Encoding") == "chunked"
        elif framing is None:  # HTTP/1.0 without a length: the close ends the body
            assert response.header("Transfer-Encoding") is None
            assert response.header("Content-Length") is None
        else:
            assert response.header("Content-Length") == framing
    conn.writer.close()


async def test_sized_upstream_response_keeps_its_content_length(
    make_gateway: GatewayFactory,
) -> None:
    """An upstream answer with a Content-Length reaches the client with the same one."""
    gw = await make_gateway(ROUTES)
    response = await exchange(
        gw.gateway.addresses["proxy"], b"GET /sized?bytes=12345 HTTP/1.1\r\nHost: app\r\n\r\n"
    )
    assert response.header("Content-Length") == "12345"
    assert response.header("Transfer-Encoding") is None
    assert len(response.body) == 12345


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("/sized?bytes=4321", id="sized"),
        pytest.param("/echo", id="json"),
    ],
)
async def test_head_carries_upstream_length_and_no_body(
    make_gateway: GatewayFactory, target: str
) -> None:
    """A HEAD answer carries the upstream's Content-Length, and the connection has no body bytes."""
    gw = await make_gateway(ROUTES)
    connection = await RawConnection.open(gw.gateway.addresses["proxy"])
    try:
        await connection.send(f"HEAD {target} HTTP/1.1\r\nHost: app\r\n\r\n".encode())
        response = await connection.response(head=True)
        assert response.status == 200
        assert response.header("Transfer-Encoding") is None
        if target.startswith("/sized"):
            assert response.header("Content-Length") == "4321"
        else:
            assert int(response.header("Content-Length") or "0") > 0
        assert await connection.nothing_more() == b""
    finally:
        await connection.close()


@pytest.mark.parametrize("code", [204, 304], ids=str)
async def test_no_content_answers_have_no_body_and_no_transfer_encoding(
    make_gateway: GatewayFactory, code: int
) -> None:
    """204 and 304 reach the client without body or Transfer-Encoding; keep-alive still works."""
    gw = await make_gateway(ROUTES)
    connection = await RawConnection.open(gw.gateway.addresses["proxy"])
    try:
        await connection.send(f"GET /status/{code} HTTP/1.1\r\nHost: app\r\n\r\n".encode())
        response = await connection.response()
        assert response.status == code
        assert response.header("Transfer-Encoding") is None
        assert response.header("Content-Length") in (None, "0")
        # The next request on the same connection is read cleanly: no stray body bytes.
        await connection.send(b"GET /echo/next HTTP/1.1\r\nHost: app\r\n\r\n")
        following = await connection.response()
        assert following.status == 200
        assert following.json()["raw_path"] == "/echo/next"
    finally:
        await connection.close()


async def test_expect_continue_is_answered_by_the_gateway(make_gateway: GatewayFactory) -> None:
    """A client waiting for 100 Continue gets it and sends its body; Expect never goes upstream."""
    gw = await make_gateway(ROUTES)
    connection = await RawConnection.open(gw.gateway.addresses["proxy"])
    try:
        await connection.send(
            b"POST /echo HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await connection.response()
        assert interim.status == 100
        await connection.send(b"hello")
        response = await connection.response()
    finally:
        await connection.close()
    echoed = response.json()
    assert echoed["body"] == "hello"
    assert "expect" not in {name.lower() for name, _ in echoed["headers"]}

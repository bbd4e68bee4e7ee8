"""Requests the HTTP parser refuses get a precise problem+json answer and never go upstream."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import GatewayFactory
from tests.upstream.conftest import ROUTES, RawConnection, exchange, upstream_hits

LIMITS = ROUTES + "limits: {max_header_size: 1KiB, max_header_line: 1KiB}\n"

MALFORMED = [
    pytest.param(b"HELLO\r\n\r\n", 400, id="garbage-request-line"),
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, id="tls-on-plain-port"),
    pytest.param(b"GET /echo HTTP/9.9\r\nHost: a\r\n\r\n", 400, id="unknown-version"),
    pytest.param(b"GET /echo HTTP/1.1\r\nHost: a\r\nNoColonHere\r\n\r\n", 400, id="no-colon"),
    pytest.param(b"GET /echo HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400, id="space-in-name"),
    pytest.param(b"GET /echo HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", 400, id="nul-in-value"),
    pytest.param(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
        id="two-content-lengths",
    ),
    pytest.param(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        400,
        id="smuggling-cl-and-te",
    ),
    pytest.param(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked, x\r\n\r\n",
        400,
        id="chunked-not-last",
    ),
    pytest.param(
        b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 2000 + b"\r\n\r\n",
        431,
        id="oversized-header-value",
    ),
    pytest.param(
        b"GET /echo HTTP/1.1\r\nHost: a\r\nX-" + b"n" * 2000 + b": v\r\n\r\n",
        431,
        id="oversized-header-name",
    ),
    pytest.param(
        b"GET /echo/" + b"p" * 2000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
        431,
        id="oversized-request-line",
    ),
]


@pytest.mark.parametrize(("raw", "status"), MALFORMED)
async def test_malformed_request_is_refused_with_a_problem(
    make_gateway: GatewayFactory, upstream: TestServer, raw: bytes, status: int
) -> None:
    """A request the parser refuses gets a 4xx problem+json, quotes nothing, reaches no upstream."""
    gw = await make_gateway(LIMITS)
    connection = await RawConnection.open(gw.gateway.addresses["proxy"])
    try:
        await connection.send(raw)
        response = await connection.response()
        # Nothing after a refused request can be trusted: the gateway closes the connection.
        assert await asyncio.wait_for(connection.reader.read(), 5) == b""
    finally:
        await connection.close()
    assert response.status == status
    assert response.header("Content-Type") == "application/problem+json"
    problem = response.json()
    expected = "bad-request" if status == 400 else "header-fields-too-large"
    assert problem["type"] == f"urn:gateway:problem:{expected}"
    assert problem["request_id"] == response.header("X-Request-ID")
    assert b"vvvv" not in response.body and b"nnnn" not in response.body
    assert "echo" not in await upstream_hits(upstream)


async def test_header_just_under_the_limit_passes(make_gateway: GatewayFactory) -> None:
    """A header field within limits.max_header_size reaches the upstream."""
    gw = await make_gateway(LIMITS)
    raw = b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 900 + b"\r\n\r\n"
    response = await exchange(gw.gateway.addresses["proxy"], raw)
    assert response.status == 200


async def test_broken_chunked_body_never_completes_upstream(
    make_gateway: GatewayFactory, upstream: TestServer
) -> None:
    """A chunked body with a bad chunk size fails the request; the upstream gets no whole body."""
    gw = await make_gateway(ROUTES)
    raw = (
        b"POST /count HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\nzz\r\nnope\r\n0\r\n\r\n"
    )
    response = await exchange(gw.gateway.addresses["proxy"], raw)
    assert response.status == 400
    assert response.header("Content-Type") == "application/problem+json"


async def test_chunked_body_broken_mid_stream_is_the_clients_fault(
    make_gateway: GatewayFactory, upstream: TestServer
) -> None:
    """A bad chunk arriving after the upstream was already called is a 400, not an upstream 502."""
    gw = await make_gateway(ROUTES)
    connection = await RawConnection.open(gw.gateway.addresses["proxy"])
    try:
        await connection.send(
            b"POST /count HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
        )
        await asyncio.sleep(0.2)  # the request is on its way upstream, its body still open
        await connection.send(b"zz\r\nnope\r\n0\r\n\r\n")
        response = await connection.response()
    finally:
        await connection.close()
    assert response.status == 400
    assert response.json()["type"] == "urn:gateway:problem:bad-request"


async def test_refused_requests_are_counted(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """Requests the parser refuses show in the metrics under route `unparsed`, by reason."""
    gw = await make_gateway(LIMITS)
    oversized = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 2000 + b"\r\n\r\n"
    await exchange(gw.gateway.addresses["proxy"], oversized)
    await exchange(gw.gateway.addresses["proxy"], b"HELLO\r\n\r\n")
    async with client.get(gw.url("metrics", "/metrics")) as response:
        text = await response.text()
    assert 'gateway_rejections_total{reason="header_fields_too_large",route="unparsed"} 1.0' in text
    assert 'gateway_rejections_total{reason="bad_request",route="unparsed"} 1.0' in text

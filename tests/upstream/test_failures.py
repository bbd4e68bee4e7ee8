"""Upstream failures: precise problem answers, broken streams stay broken, the gateway lives on."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import GatewayFactory, free_port, policy_text
from tests.upstream.conftest import ROUTES, RawConnection, RawUpstream

PROBLEM = "application/problem+json"


def _leaks(body: str, *secrets: str) -> list[str]:
    """Which of the secrets appear in the body."""
    return [s for s in secrets if s in body]


async def test_unreachable_upstream_is_a_502_problem_without_internals(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """A closed upstream port gives 502 upstream-connect-error naming neither address nor error."""
    port = free_port()
    gw = await make_gateway(policy_text(ROUTES, f"http://127.0.0.1:{port}"))
    async with client.get(gw.proxy + "/echo", headers={"X-Request-ID": "r-502"}) as response:
        assert response.status == 502
        assert response.content_type == PROBLEM
        text = await response.text()
    body = json.loads(text)
    assert body["type"] == "urn:gateway:problem:upstream-connect-error"
    assert body["request_id"] == "r-502"
    assert _leaks(text, str(port), "127.0.0.1", "Errno", "Connect call failed", "refused") == []


async def test_slow_upstream_is_a_504_problem(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """An upstream slower than `upstream.timeout` gives 504 upstream-timeout, on time."""
    url = str(upstream.make_url("")).rstrip("/")
    gw = await make_gateway(
        policy_text(ROUTES, None) + f'upstream: {{url: "{url}", timeout: 200ms}}\n'
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with client.get(gw.proxy + "/slow?seconds=5") as response:
        assert response.status == 504
        assert response.content_type == PROBLEM
        text = await response.text()
    assert loop.time() - started < 2
    assert (json.loads(text))["type"] == "urn:gateway:problem:upstream-timeout"
    assert _leaks(text, url, "TimeoutError", "sock_read") == []


@pytest.fixture
def unaccepting_port() -> Iterator[int]:
    """A port whose accept queue is full, so a new connection hangs in the handshake."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


async def test_connect_timeout_is_a_504_problem(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, unaccepting_port: int
) -> None:
    """An upstream that never completes the handshake gives 504 after `connect_timeout`.

    As nginx does (proxy_connect_timeout), a connect timeout is a timeout, not a refusal: 504.
    """
    gw = await make_gateway(
        policy_text(ROUTES, None)
        + f'upstream: {{url: "http://127.0.0.1:{unaccepting_port}", connect_timeout: 200ms}}\n'
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with client.get(gw.proxy + "/echo") as response:
        assert response.status == 504
        body = await response.json(content_type=PROBLEM)
    assert loop.time() - started < 2
    assert body["type"] == "urn:gateway:problem:upstream-timeout"
    assert body["detail"] == "The upstream did not accept a connection in time"


async def test_upstream_closing_early_breaks_the_response_and_the_gateway_keeps_serving(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """An upstream that closes mid-body leaves the client a broken response, not a short one."""
    gw = await make_gateway(ROUTES)
    async with client.get(gw.proxy + "/truncated") as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == "1000"
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    async with client.get(gw.proxy + "/echo/after") as response:
        assert response.status == 200
        assert (await response.json())["raw_path"] == "/echo/after"


ERRORS = [
    pytest.param("/status/500", 500, id="upstream-500"),
    pytest.param("/status/503", 503, id="upstream-503"),
    pytest.param("/status/404", 404, id="upstream-404"),
]


@pytest.mark.parametrize(("target", "status"), ERRORS)
async def test_keep_alive_connection_is_reused_after_an_error_answer(
    make_gateway: GatewayFactory, target: str, status: int
) -> None:
    """After an upstream error answer, the next request on the same client connection succeeds."""
    gw = await make_gateway(ROUTES)
    connection = await RawConnection.open(gw.gateway.addresses["proxy"])
    try:
        await connection.send(f"GET {target} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        assert (await connection.response()).status == status
        await connection.send(b"GET /echo/next HTTP/1.1\r\nHost: a\r\n\r\n")
        following = await connection.response()
        assert following.status == 200
        assert following.json()["raw_path"] == "/echo/next"
    finally:
        await connection.close()


async def test_bytes_after_an_upstream_answer_do_not_reach_the_next_request(
    make_gateway: GatewayFactory, upstream_client: str
) -> None:
    """An upstream that sends the start of another answer after each one: every request still
    gets its own answer, and no connection that carried such bytes is used again."""
    upstream = RawUpstream(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 2", [])
    await upstream.start()
    try:
        gw = await make_gateway(policy_text(ROUTES, upstream.url))
        connection = await RawConnection.open(gw.gateway.addresses["proxy"])
        try:
            for _ in range(3):
                await connection.send(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
                answer = await connection.response()
                assert (answer.status, answer.body) == (200, b"ok")
        finally:
            await connection.close()
        assert len(upstream.heads) == 3  # each request reached the upstream once
        if upstream_client == "lean":  # aiohttp's client drops such bytes and keeps the connection
            assert upstream.connections == 3
    finally:
        await upstream.stop()


ROUTES_WITH_DEAD = """
routes:
  - name: dead
    match: {{path_prefix: /dead}}
    upstream: {{url: "http://127.0.0.1:{port}"}}
  - name: default
    match: {{path_prefix: /}}
"""


async def test_keep_alive_connection_is_reused_after_a_gateway_rejection(
    make_gateway: GatewayFactory,
) -> None:
    """After a 502 from the gateway itself, the same client connection serves the next request."""
    port = free_port()
    gw = await make_gateway(ROUTES_WITH_DEAD.format(port=port))
    connection = await RawConnection.open(gw.gateway.addresses["proxy"])
    try:
        await connection.send(b"POST /dead HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
        assert (await connection.response()).status == 502
        await connection.send(b"GET /echo/next HTTP/1.1\r\nHost: a\r\n\r\n")
        following = await connection.response()
        assert following.status == 200
        assert following.json()["raw_path"] == "/echo/next"
    finally:
        await connection.close()

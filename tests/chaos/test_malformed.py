"""Hostile HTTP on raw sockets: refused precisely, nothing stopped reaches the upstream."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.chaos.conftest import Load, millis
from tests.conftest import GatewayFactory, RedisServer, RunningGateway
from tests.upstream.conftest import RawConnection, exchange, upstream_hits

POLICY = """
logging: {access: {mode: errors}}
limits: {header_timeout: 1s, body_timeout: 1s}
routes:
  - name: json
    match: {path_prefix: /echo/json}
    validation: {max_body: 1KiB, json: {}}
  - name: small
    match: {path_prefix: /echo/small}
    validation: {max_body: 1KiB}
  - name: default
    match: {path_prefix: /}
    timeout: {per_try: 1s}
"""

POST = b"POST /echo HTTP/1.1\r\nHost: a\r\n"
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"

REFUSED = [
    pytest.param(POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"3\r\nabc\r\n0\r\n\r\n", 400, id="te-twice"),
    pytest.param(POST + b"Transfer-Encoding : chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400,
                 id="te-space-before-colon"),
    pytest.param(POST + b"Transfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400,
                 id="te-unknown-coding"),
    pytest.param(POST + b"Transfer-Encoding:\r\n chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400,
                 id="te-obs-fold"),
    pytest.param(POST + b"Transfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc", 400,
                 id="te-identity-and-cl"),
    pytest.param(POST + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"3\r\nabc\r\n0\r\n\r\n", 400, id="te-gzip-then-chunked"),
    pytest.param(b"POST /echo HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"3\r\nabc\r\n0\r\n\r\n", 400, id="te-in-http-1.0"),
    pytest.param(POST + b"Content-Length: +3\r\n\r\nabc", 400, id="cl-plus-sign"),
    pytest.param(POST + b"Content-Length: 3, 3\r\n\r\nabc", 400, id="cl-list"),
    pytest.param(POST + b"Content-Length: 0x3\r\n\r\nabc", 400, id="cl-hex"),
    pytest.param(POST + b"Content-Length: -1\r\n\r\nabc", 400, id="cl-negative"),
    pytest.param(POST + b"Content-Length: 99999999999999999999999\r\n\r\nabc", 400,
                 id="cl-overflow"),
    pytest.param(CHUNKED + b"zz\r\nabc\r\n0\r\n\r\n", 400, id="chunk-size-not-hex"),
    pytest.param(CHUNKED + b"-3\r\nabc\r\n0\r\n\r\n", 400, id="chunk-size-negative"),
    pytest.param(CHUNKED + b"fffffffffffffffffff\r\nabc\r\n0\r\n\r\n", 400,
                 id="chunk-size-overflow"),
    pytest.param(CHUNKED + b"3 x\r\nabc\r\n0\r\n\r\n", 400, id="chunk-size-junk"),
    pytest.param(CHUNKED + b"3\r\nabcX\r\n0\r\n\r\n", 400, id="chunk-data-overrun"),
    pytest.param(CHUNKED + b"3\nabc\n0\n\n", 400, id="chunk-bare-lf"),
    pytest.param(b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, id="duplicate-host"),
    pytest.param(b"GET /echo HTTP/1.1\r\n\r\n", 400, id="no-host"),
    pytest.param(b"GET /echo HTTP/1.1\r\nHost: a\r\n" + b"".join(
        b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n", 431, id="too-many-headers"),
    pytest.param(b"GET /echo HTTP/1.1\nHost: a\n\n", 400, id="bare-lf-lines"),
    pytest.param(b"GET /echo HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", 400, id="bare-cr-value"),
    pytest.param(b"GET /echo HTTP/1.1\r\nHost: a\r\nX-A: a\nX-Injected: 1\r\n\r\n", 400,
                 id="lf-in-value"),
    pytest.param(b"GET /echo\r\nX-Injected: 1 HTTP/1.1\r\nHost: a\r\n\r\n", 400,
                 id="crlf-in-target"),
    pytest.param(b"GE(T /echo HTTP/1.1\r\nHost: a\r\n\r\n", 400, id="method-bad-token"),
    pytest.param(b"GET\x00 /echo HTTP/1.1\r\nHost: a\r\n\r\n", 400, id="method-nul"),
    pytest.param(b" /echo HTTP/1.1\r\nHost: a\r\n\r\n", 400, id="method-empty"),
    pytest.param(b"get /echo HTTP/1.1\r\nHost: a\r\n\r\n", 400, id="method-lowercase"),
    pytest.param(b"FOO /echo HTTP/1.1\r\nHost: a\r\n\r\n", 400, id="method-unknown"),
    pytest.param(b"GET /echo\r\n\r\n", 400, id="version-0.9"),
    pytest.param(b"GET /echo HTTP/2.0\r\nHost: a\r\n\r\n", 400, id="version-2.0-as-text"),
    pytest.param(b"GET /echo HTTP/1.2\r\nHost: a\r\n\r\n", 400, id="version-1.2"),
    pytest.param(b"GET /echo http/1.1\r\nHost: a\r\n\r\n", 400, id="version-lowercase"),
    pytest.param(b"GET /echo HTTP/1.1x\r\nHost: a\r\n\r\n", 400, id="version-junk"),
    pytest.param(b"GET /echo/\xff\xfe HTTP/1.1\r\nHost: a\r\n\r\n", 400, id="utf8-invalid-path"),
    pytest.param(b"GET /echo HTTP/1.1\r\nHost: a\r\nX-\xff: v\r\n\r\n", 400,
                 id="utf8-invalid-header-name"),
    # Connection: close, since a JSON body that is not UTF-8 is a bad body, not bad framing.
    pytest.param(b"POST /echo/json HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                 b"Connection: close\r\nContent-Length: 9\r\n\r\n{\"a\":\"\xff\"}", 400,
                 id="utf8-invalid-json"),
]  # fmt: skip


async def healthy(gw: RunningGateway) -> None:
    """The gateway still answers a well-formed request on a fresh connection."""
    ok = await exchange(gw.gateway.addresses["proxy"], b"GET /echo/ok HTTP/1.1\r\nHost: a\r\n\r\n")
    assert ok.status == 200


@pytest.mark.parametrize(("raw", "status"), REFUSED)
async def test_hostile_request_is_refused_and_never_forwarded(
    make_gateway: GatewayFactory, upstream: TestServer, raw: bytes, status: int
) -> None:
    """A smuggling shape, broken framing, bad method or version, or invalid UTF-8 gets its 4xx
    problem, the connection closes, the upstream sees nothing, and the gateway serves on."""
    gw = await make_gateway(POLICY)
    connection = await RawConnection.open(gw.gateway.addresses["proxy"])
    try:
        await connection.send(raw)
        response = await connection.response()
        after = await asyncio.wait_for(connection.reader.read(), 5)
    finally:
        await connection.close()
    assert (response.status, response.header("Content-Type")) == (
        status,
        "application/problem+json",
    )
    assert after == b"", "the connection must close: what follows cannot be trusted"
    assert "echo" not in await upstream_hits(upstream)
    await healthy(gw)


ACCEPTED = [
    pytest.param(b"GET http://evil.example/echo/abs HTTP/1.1\r\nHost: a\r\n\r\n", "/echo/abs",
                 id="absolute-form-goes-to-our-upstream"),
    pytest.param(b"GET /echo HTTP/1.1\r\nHost: a\r\nX-A: \xff\xfe\r\n\r\n", "/echo",
                 id="obs-text-header-value"),
    pytest.param(POST + b"Transfer-Encoding:\tchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "/echo",
                 id="te-tab-whitespace"),
    pytest.param(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
                 b"GET /echo/second HTTP/1.1\r\nHost: a\r\n\r\n", "/echo", id="pipelined"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "path"), ACCEPTED)
async def test_odd_but_valid_request_is_forwarded_once(
    make_gateway: GatewayFactory, upstream: TestServer, raw: bytes, path: str
) -> None:
    """Valid if unusual requests reach the upstream exactly as one request each, to our upstream
    only (an absolute-form target's host is never dialled)."""
    gw = await make_gateway(POLICY)
    connection = await RawConnection.open(gw.gateway.addresses["proxy"])
    try:
        await connection.send(raw)
        response = await connection.response()
    finally:
        await connection.close()
    assert response.status == 200
    assert response.json()["path"] == path
    assert response.json()["body"] in ("", "abc")
    await healthy(gw)


async def test_slow_header_clients_are_cut_and_others_served(
    make_gateway: GatewayFactory,
) -> None:
    """Clients dripping their headers (slowloris) are closed after limits.header_timeout, and
    meanwhile everyone else is served as usual."""
    gw = await make_gateway(POLICY)
    address = gw.gateway.addresses["proxy"]
    opened = time.monotonic()
    slow = [await RawConnection.open(address) for _ in range(20)]

    async def drip(connection: RawConnection) -> float:
        await connection.send(b"GET /echo HTTP/1.1\r\nHost: a\r\n")
        with contextlib.suppress(ConnectionError):
            for _ in range(50):  # at most 5 s
                await connection.send(b"X-Slow: 1\r\n")
                if connection.reader.at_eof():
                    break
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(connection.reader.read(1024), 0.1) == b"":
                        break
        return time.monotonic() - opened

    drips = asyncio.gather(*(drip(connection) for connection in slow))
    load = Load(gw.proxy + "/echo", clients=2).start()
    closed_after = await drips
    outcomes = await load.stop()
    for connection in slow:
        await connection.close()
    print(
        f"slow headers: 20 clients closed after {min(closed_after):.2f}-{max(closed_after):.2f} s "
        f"(header_timeout 1 s); {len(outcomes)} other requests served meanwhile, "
        f"{millis([o.ended - o.started for o in outcomes])}"
    )
    assert max(closed_after) < 2.5
    assert outcomes and {o.status for o in outcomes} == {200}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/echo", 504, id="streamed-upstream-timeout"),
        pytest.param("/echo/json", 408, id="read-by-validation-body-timeout"),
    ],
)
async def test_stalled_body_is_timed_out_and_others_served(
    make_gateway: GatewayFactory, path: str, status: int
) -> None:
    """A client that stops mid-body is answered within a second: 408 when the gateway reads the
    body itself (limits.body_timeout), 504 when it streams it (the route's timeout); everyone
    else is served meanwhile."""
    gw = await make_gateway(POLICY)
    address = gw.gateway.addresses["proxy"]
    stalled = await RawConnection.open(address)
    started = time.monotonic()
    await stalled.send(
        f"POST {path} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n".encode()
        + b'{"a": "'
    )
    load = Load(gw.proxy + "/echo/other", clients=2).start()
    try:
        response = await asyncio.wait_for(stalled.response(), 5)
    finally:
        outcomes = await load.stop()
        await stalled.close()
    waited = time.monotonic() - started
    print(
        f"stalled body to {path}: answered {response.status} after {waited:.2f} s; "
        f"{len(outcomes)} other requests served meanwhile"
    )
    assert response.status == status and waited < 2
    assert outcomes and {o.status for o in outcomes} == {200}


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_100_mb_body_against_a_small_limit_is_413_at_once(
    make_gateway: GatewayFactory, upstream: TestServer, framing: str
) -> None:
    """A 100 MB upload to a route with max_body 1KiB gets 413 within a second, the upstream sees
    nothing, and the gateway is done with the connection within aiohttp's lingering time."""
    gw = await make_gateway(POLICY)
    connection = await RawConnection.open(gw.gateway.addresses["proxy"])
    total = 100 * 1024 * 1024
    head = b"POST /echo/small HTTP/1.1\r\nHost: a\r\nContent-Type: application/octet-stream\r\n"
    head += (
        b"Content-Length: %d\r\n\r\n" % total
        if framing == "content-length"
        else b"Transfer-Encoding: chunked\r\n\r\n"
    )
    block = b"z" * (1 << 20)
    piece = block if framing == "content-length" else b"%x\r\n%s\r\n" % (len(block), block)
    sent = 0

    async def upload() -> None:
        nonlocal sent
        with contextlib.suppress(ConnectionError):
            await connection.send(head)
            while sent < total:
                await connection.send(piece)
                sent += len(block)

    started = time.monotonic()
    uploading = asyncio.create_task(upload())
    try:
        response = await asyncio.wait_for(connection.response(), 5)
        answered = time.monotonic() - started
        await asyncio.wait_for(uploading, 5)
        closed = time.monotonic() - started
    finally:
        uploading.cancel()
        await connection.close()
    print(
        f"100 MB {framing} body vs max_body 1KiB: {response.status} in {answered * 1000:.0f} ms, "
        f"connection closed after {closed:.2f} s and {sent / 2**20:.0f} MiB sent"
    )
    assert response.status == 413 and answered < 1
    # Like nginx's lingering_close, aiohttp discards the rest for up to 10 s before closing, so
    # that the client reads its 413 instead of a reset; on loopback that is the whole upload.
    assert closed < 5
    assert "echo" not in await upstream_hits(upstream)
    await healthy(gw)


async def test_gateway_stays_healthy_after_all_of_it(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """Every hostile request of this module sent back to back leaves /livez and /readyz green."""
    gw = await make_gateway(POLICY)
    address = gw.gateway.addresses["proxy"]
    for case in REFUSED:
        with contextlib.suppress(ConnectionError, AssertionError):
            await exchange(address, case.values[0])  # type: ignore[arg-type]
    for probe in ("/livez", "/readyz"):
        async with client.get(gw.url("health", probe)) as response:
            assert response.status == 200
    await healthy(gw)


FIELD_BYTES = bytes([0x09, *range(0x20, 0x7F), *range(0x80, 0x100)])
"""What RFC 9110 allows in a field value (obs-text included), which is rarely UTF-8."""
ANY_BYTE = bytes(range(0x01, 0x100))


async def test_random_header_bytes_never_make_a_5xx(
    make_gateway: GatewayFactory, redis: RedisServer
) -> None:
    """300 requests with random header names and bytes (undecodable UTF-8, controls, obs-text)
    on a route keyed by a header in Redis: each is served or refused with a 4xx, never a 5xx."""
    gw = await make_gateway(
        f'store: {{url: "{redis.url}"}}\n'
        "logging: {access: {mode: errors}}\n"
        "routes:\n  - name: keyed\n    match: {path_prefix: /}\n"
        "    rate_limit:\n"
        '      - {name: k, key: ["header:X-Api-Key", client_ip], limit: 1000, window: 1m}\n'
    )
    seed = random.Random(9)
    token = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    statuses: Counter[int] = Counter()
    for _ in range(300):
        headers = b""
        for _ in range(seed.randint(1, 4)):
            name = (
                b"X-Api-Key"
                if seed.random() < 0.5
                else bytes(seed.choice(token) for _ in range(seed.randint(1, 12)))
            )
            alphabet = ANY_BYTE if seed.random() < 0.2 else FIELD_BYTES
            value = bytes(seed.choice(alphabet) for _ in range(seed.randint(0, 40)))
            headers += name + b": " + value + b"\r\n"
        raw = b"GET /echo HTTP/1.1\r\nHost: a\r\n" + headers + b"Connection: close\r\n\r\n"
        try:
            statuses[(await exchange(gw.gateway.addresses["proxy"], raw)).status] += 1
        except (ConnectionError, AssertionError):
            statuses[0] += 1  # closed without an answer: allowed for garbage, counted
    print(f"random header bytes: statuses {dict(sorted(statuses.items()))}")
    assert not [status for status in statuses if status >= 500]
    assert statuses[200] > 0
    await healthy(gw)

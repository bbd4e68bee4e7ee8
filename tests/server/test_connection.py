"""The proxy port's own HTTP/1.1 server as a client sees it: keep-alive, pipelining, closes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from email.utils import parsedate_to_datetime

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import GatewayFactory, policy_text
from tests.ops.conftest import eventually
from tests.upstream.conftest import RawConnection, exchange, upstream_hits

POLICY = """
routes:
  - name: limited
    match: {path_prefix: /echo/limited}
    rate_limit:
      - {name: one, limit: 1, window: 1h}
  - name: small
    match: {path_prefix: /echo/small}
    validation: {max_body: 16}
  - name: default
    match: {path_prefix: /}
"""

HEADER_TIMEOUT = 0.4
SHORT_HEADER_TIMEOUT = f"limits: {{header_timeout: {int(HEADER_TIMEOUT * 1000)}ms}}\n" + POLICY


async def closed_by_gateway(connection: RawConnection, within: float = 2.0) -> bool:
    """Whether the gateway ends the connection (FIN, or a reset) within `within` seconds,
    sending nothing more before it."""
    try:
        rest = await asyncio.wait_for(connection.reader.read(), within)
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    assert rest == b"", f"unexpected bytes before the close: {rest[:200]!r}"
    return True


# -- keep-alive and closes ------------------------------------------------------------------


async def test_http10_client_asking_keep_alive_gets_it(make_gateway: GatewayFactory) -> None:
    """An HTTP/1.0 client sending Connection: keep-alive is told keep-alive and served twice on
    the same connection."""
    gw = await make_gateway(POLICY)
    connection = await RawConnection.open(gw.gateway.addresses["proxy"])
    try:
        for path in ("/echo/first", "/echo/second"):
            await connection.send(f"GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
            response = await connection.response()
            assert response.status == 200
            assert response.json()["raw_path"] == path
            assert (response.header("Connection") or "").lower() == "keep-alive"
            assert response.header("Content-Length") == str(len(response.body))
    finally:
        await connection.close()


CLOSING = [
    pytest.param(b"GET /echo HTTP/1.0\r\n\r\n", id="http10-without-keep-alive"),
    pytest.param(b"GET /echo HTTP/1.0\r\nHost: a\r\nConnection: close\r\n\r\n", id="http10-close"),
    pytest.param(b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", id="http11-close"),
]


@pytest.mark.parametrize("request_bytes", CLOSING)
async def test_connection_closes_after_the_answer_unless_kept_alive(
    make_gateway: GatewayFactory, request_bytes: bytes
) -> None:
    """A client that does not keep the connection alive gets its answer with Connection: close,
    then the connection ends."""
    gw = await make_gateway(POLICY)
    connection = await RawConnection.open(gw.gateway.addresses["proxy"])
    try:
        await connection.send(request_bytes)
        response = await connection.response()
        assert response.status == 200
        assert response.json()["path"] == "/echo"
        assert (response.header("Connection") or "").lower() == "close"
        assert await closed_by_gateway(connection)
    finally:
        await connection.close()


async def test_http10_body_of_unknown_length_ends_with_the_close(
    make_gateway: GatewayFactory,
) -> None:
    """A chunked upstream answer reaches an HTTP/1.0 client unframed, ended by the close, even
    when the client asked for keep-alive."""
    gw = await make_gateway(POLICY)
    connection = await RawConnection.open(gw.gateway.addresses["proxy"])
    try:
        await connection.send(
            b"GET /stream?chunks=5&size=300 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        )
        response = await connection.response()  # no length, no chunked: reads to the close
    finally:
        await connection.close()
    assert response.status == 200
    assert response.header("Transfer-Encoding") is None
    assert response.header("Content-Length") is None
    assert (response.header("Connection") or "").lower() == "close"
    assert response.body == b"x" * 1500


# -- pipelining -----------------------------------------------------------------------------


async def test_pipelined_answers_come_back_in_request_order(make_gateway: GatewayFactory) -> None:
    """Three requests written at once, the first slow, are answered in the order they were sent."""
    gw = await make_gateway(POLICY)
    connection = await RawConnection.open(gw.gateway.addresses["proxy"])
    try:
        await connection.send(
            b"GET /slow?seconds=0.3 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /echo/second HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /echo/third HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        first = await connection.response()
        second = await connection.response()
        third = await connection.response()
    finally:
        await connection.close()
    assert (first.status, first.body) == (200, b"slow")
    assert (second.status, second.json()["raw_path"]) == (200, "/echo/second")
    assert (third.status, third.json()["raw_path"]) == (200, "/echo/third")
    assert len({r.header("X-Request-ID") for r in (first, second, third)}) == 3


async def test_pipelined_requests_sent_with_the_clients_fin_are_all_answered(
    make_gateway: GatewayFactory,
) -> None:
    """Three requests then the client's half-close, at once: all three are answered in order
    (the last one saying Connection: close), then the gateway closes."""
    gw = await make_gateway(POLICY)
    connection = await RawConnection.open(gw.gateway.addresses["proxy"])
    try:
        connection.writer.write(
            b"GET /slow?seconds=0.2 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /echo/second HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /echo/third HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        connection.writer.write_eof()
        answers = [await connection.response() for _ in range(3)]
        assert await connection.reader.read() == b""  # closed after the third
    finally:
        await connection.close()
    assert [a.status for a in answers] == [200, 200, 200]
    assert answers[0].body == b"slow"
    assert [a.json()["raw_path"] for a in answers[1:]] == ["/echo/second", "/echo/third"]
    assert answers[2].header("Connection") == "close"


async def test_a_refused_head_in_a_pipeline_is_answered_after_those_before_it(
    make_gateway: GatewayFactory,
) -> None:
    """Two valid requests and a broken one written at once: both are answered, then the broken
    one gets its 400 problem, then the connection closes."""
    gw = await make_gateway(POLICY)
    connection = await RawConnection.open(gw.gateway.addresses["proxy"])
    try:
        await connection.send(
            b"GET /echo/one HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /echo/two HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /echo/three HTTP/1.1\r\nHost a\r\n\r\n"
        )
        answers = [await connection.response() for _ in range(3)]
        assert await closed_by_gateway(connection)
    finally:
        await connection.close()
    assert [a.status for a in answers] == [200, 200, 400]
    assert [a.json()["raw_path"] for a in answers[:2]] == ["/echo/one", "/echo/two"]
    assert answers[2].header("Content-Type") == "application/problem+json"


async def test_a_long_pipeline_is_answered_whole_and_in_order(make_gateway: GatewayFactory) -> None:
    """Two hundred requests written before any answer is read (reading pauses past 32 queued
    and resumes) are all answered, in order."""
    gw = await make_gateway(POLICY)
    connection = await RawConnection.open(gw.gateway.addresses["proxy"])
    try:
        await connection.send(
            b"".join(b"GET /echo/%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(200))
        )
        paths = [(await connection.response()).json()["raw_path"] for _ in range(200)]
    finally:
        await connection.close()
    assert paths == [f"/echo/{i}" for i in range(200)]


async def test_a_head_that_never_ends_is_refused_long_before_the_header_timeout(
    make_gateway: GatewayFactory, upstream: TestServer
) -> None:
    """A header value streamed without end gets 431 once the head passes its bound, not after
    limits.header_timeout and not after the gateway buffered all of it."""
    gw = await make_gateway(POLICY)
    connection = await RawConnection.open(gw.gateway.addresses["proxy"])
    started = time.monotonic()
    try:
        await connection.send(b"GET /echo/endless HTTP/1.1\r\nHost: a\r\nX-Big: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(64):  # 4 MiB, far past the bound of ~74 KB
                await connection.send(b"a" * 65536)
        response = await connection.response()
    finally:
        await connection.close()
    assert response.status == 431
    assert time.monotonic() - started < 5
    assert "/echo/endless" not in await upstream_hits(upstream)


async def test_a_fragment_never_reaches_routes_limits_or_the_upstream(
    make_gateway: GatewayFactory,
) -> None:
    """`/echo/limited#x` counts against the same limit as `/echo/limited` and travels without
    its fragment."""
    gw = await make_gateway(POLICY)
    first = await exchange(
        gw.gateway.addresses["proxy"], b"GET /echo/limited#x HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    second = await exchange(
        gw.gateway.addresses["proxy"], b"GET /echo/limited#y HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    assert (first.status, first.json()["raw_path"]) == (200, "/echo/limited")
    assert second.status == 429


# -- the idle timeout -----------------------------------------------------------------------


async def test_idle_keep_alive_connection_is_closed_after_header_timeout(
    make_gateway: GatewayFactory,
) -> None:
    """A keep-alive connection that sends nothing after its answer is closed once
    limits.header_timeout has passed, not before."""
    gw = await make_gateway(SHORT_HEADER_TIMEOUT)
    connection = await RawConnection.open(gw.gateway.addresses["proxy"])
    try:
        await connection.send(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await connection.response()).status == 200
        answered = time.monotonic()
        assert await closed_by_gateway(connection, within=HEADER_TIMEOUT * 5)
        idle = time.monotonic() - answered
    finally:
        await connection.close()
    assert HEADER_TIMEOUT * 0.8 <= idle < HEADER_TIMEOUT * 4


async def test_busy_keep_alive_connection_outlives_header_timeout(
    make_gateway: GatewayFactory,
) -> None:
    """A connection that sends its next request within limits.header_timeout of each answer is
    kept open for as long as it does, well past the timeout."""
    gw = await make_gateway(SHORT_HEADER_TIMEOUT)
    connection = await RawConnection.open(gw.gateway.addresses["proxy"])
    started = time.monotonic()
    try:
        for n in range(6):
            await connection.send(f"GET /echo/{n} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
            response = await connection.response()
            assert (response.status, response.json()["raw_path"]) == (200, f"/echo/{n}")
            await asyncio.sleep(HEADER_TIMEOUT / 2)  # the real pause between requests
    finally:
        await connection.close()
    assert time.monotonic() - started > HEADER_TIMEOUT * 2


# -- Expect: 100-continue refused -----------------------------------------------------------


REFUSED_BEFORE_BODY = [
    pytest.param("/echo/small", 1000, 413, id="over-max-body"),
    pytest.param("/echo/limited", 5, 429, id="rate-limited"),
]


@pytest.mark.parametrize(("path", "length", "status"), REFUSED_BEFORE_BODY)
async def test_expect_continue_refused_gets_final_answer_without_100(
    make_gateway: GatewayFactory, upstream: TestServer, path: str, length: int, status: int
) -> None:
    """A request waiting for 100 Continue that is refused on its head gets the final answer
    first (never a 100), with Connection: close, then the connection ends; its body never
    reaches the upstream."""
    gw = await make_gateway(POLICY)
    address = gw.gateway.addresses["proxy"]
    spent = await exchange(address, b"GET /echo/limited HTTP/1.1\r\nHost: a\r\n\r\n")
    assert spent.status == 200  # the rate-limited route's one request
    hits_before = (await upstream_hits(upstream)).get("echo", 0)
    connection = await RawConnection.open(address)
    try:
        await connection.send(
            f"POST {path} HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        response = await connection.response()
        assert response.status == status
        assert response.header("Content-Type") == "application/problem+json"
        assert (response.header("Connection") or "").lower() == "close"
        assert await closed_by_gateway(connection)
    finally:
        await connection.close()
    assert (await upstream_hits(upstream)).get("echo", 0) == hits_before


# -- headers on every answer ----------------------------------------------------------------


ANSWERS = [
    pytest.param(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n", 200, id="proxied"),
    pytest.param(b"GET /status/503 HTTP/1.1\r\nHost: a\r\n\r\n", 503, id="upstream-error"),
    pytest.param(b"GET /stream?chunks=2 HTTP/1.1\r\nHost: a\r\n\r\n", 200, id="streamed"),
    pytest.param(
        b"POST /echo/small HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\n\r\n" + b"z" * 40,
        413,
        id="problem",
    ),
    pytest.param(b"GET /echo HTTP/1.1\r\n\r\n", 400, id="problem-no-host"),
    pytest.param(b"NOT HTTP AT ALL\r\n\r\n", 400, id="unparsable"),
]


@pytest.mark.parametrize(("request_bytes", "status"), ANSWERS)
async def test_every_answer_carries_date_and_request_id(
    make_gateway: GatewayFactory, request_bytes: bytes, status: int
) -> None:
    """Every answer, the gateway's own problems included, has one current Date and one
    X-Request-ID."""
    gw = await make_gateway(POLICY)
    response = await exchange(gw.gateway.addresses["proxy"], request_bytes)
    assert response.status == status
    dates = response.all("Date")
    assert len(dates) == 1
    assert abs(parsedate_to_datetime(dates[0]).timestamp() - time.time()) < 5
    ids = response.all("X-Request-ID")
    assert len(ids) == 1 and ids[0]


async def test_head_problem_answer_has_length_but_no_body(make_gateway: GatewayFactory) -> None:
    """A problem answer to HEAD announces its Content-Length but sends no body, and the
    connection serves the next request cleanly."""
    gw = await make_gateway(POLICY)
    address = gw.gateway.addresses["proxy"]
    spent = await exchange(address, b"GET /echo/limited HTTP/1.1\r\nHost: a\r\n\r\n")
    assert spent.status == 200  # the rate-limited route's one request
    connection = await RawConnection.open(address)
    try:
        await connection.send(b"HEAD /echo/limited HTTP/1.1\r\nHost: a\r\n\r\n")
        response = await connection.response(head=True)
        assert response.status == 429
        assert response.header("Content-Type") == "application/problem+json"
        assert int(response.header("Content-Length") or "0") > 0
        assert response.header("Transfer-Encoding") is None
        assert await connection.nothing_more() == b""
        await connection.send(b"GET /echo/next HTTP/1.1\r\nHost: a\r\n\r\n")
        following = await connection.response()
        assert (following.status, following.json()["raw_path"]) == (200, "/echo/next")
    finally:
        await connection.close()


# -- graceful stop --------------------------------------------------------------------------


async def test_graceful_stop_closes_idle_connections_and_finishes_in_flight(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """On stop, an idle keep-alive connection is closed at once, new connections are refused,
    and a slow request in flight still gets its whole answer, with Connection: close."""
    gw = await make_gateway(POLICY)
    address = gw.gateway.addresses["proxy"]
    idle = await RawConnection.open(address)
    busy = await RawConnection.open(address)
    try:
        await idle.send(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await idle.response()).status == 200
        await busy.send(b"GET /slow?seconds=0.6 HTTP/1.1\r\nHost: a\r\n\r\n")

        async def slow_in_flight() -> bool:
            async with client.get(gw.url("metrics", "/metrics")) as response:
                return "gateway_requests_in_flight 1.0" in await response.text()

        await eventually(slow_in_flight)
        stopping = asyncio.create_task(gw.gateway.stop())
        assert await closed_by_gateway(idle, within=0.3)
        idle_closed = time.monotonic()
        host, _, port = address.rpartition(":")
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(host, int(port))
        response = await busy.response()
        slow_answered = time.monotonic()
        assert (response.status, response.body) == (200, b"slow")
        assert (response.header("Connection") or "").lower() == "close"
        assert await closed_by_gateway(busy)
        await asyncio.wait_for(stopping, 5)
    finally:
        await idle.close()
        await busy.close()
    assert idle_closed < slow_answered


async def test_stop_cuts_what_outlives_the_grace_period_and_leaves_nothing_running(
    make_gateway: GatewayFactory, upstream: TestServer, client: aiohttp.ClientSession
) -> None:
    """A request still in flight when shutdown.grace ends is cut, and once stop returns no task
    of the proxy port is left answering it."""
    text = policy_text(POLICY, str(upstream.make_url("")).rstrip("/"))
    gw = await make_gateway(text.replace("grace: 5s", "grace: 300ms"))
    busy = await RawConnection.open(gw.gateway.addresses["proxy"])
    try:
        await busy.send(b"GET /slow?seconds=5 HTTP/1.1\r\nHost: a\r\n\r\n")

        async def slow_in_flight() -> bool:
            async with client.get(gw.url("metrics", "/metrics")) as response:
                return "gateway_requests_in_flight 1.0" in await response.text()

        await eventually(slow_in_flight)
        started = time.monotonic()
        await asyncio.wait_for(gw.gateway.stop(), 3)
        stopped_after = time.monotonic() - started
        assert await closed_by_gateway(busy, within=1)
    finally:
        await busy.close()
    serving = [t for t in asyncio.all_tasks() if "HttpConnection._serve" in repr(t.get_coro())]
    assert serving == []
    assert stopped_after < 2


# -- upgrades other than WebSocket ----------------------------------------------------------


async def test_non_websocket_upgrade_is_served_as_a_plain_request_then_closed(
    make_gateway: GatewayFactory,
) -> None:
    """An Upgrade: h2c request is answered as plain HTTP/1.1 (the upstream never sees the
    upgrade), and the connection closes after that answer."""
    gw = await make_gateway(POLICY)
    connection = await RawConnection.open(gw.gateway.addresses["proxy"])
    try:
        await connection.send(
            b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
        )
        response = await connection.response()
        assert response.status == 200
        assert (response.header("Connection") or "").lower() == "close"
        assert response.header("Upgrade") is None
        assert await closed_by_gateway(connection)
    finally:
        await connection.close()
    sent = {name.lower(): value.lower() for name, value in response.json()["headers"]}
    assert "upgrade" not in sent and "http2-settings" not in sent
    assert "upgrade" not in sent.get("connection", "")

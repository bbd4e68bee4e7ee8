"""Headers between client and upstream: hop-by-hop ones stop at the gateway, the rest travel."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import GatewayFactory, policy_text
from tests.upstream.conftest import ROUTES, RawUpstream, exchange

HOP_BY_HOP = ["Connection", "Keep-Alive", "Proxy-Connection", "TE", "Transfer-Encoding", "Upgrade"]


def _sent(echoed: dict) -> dict[str, list[str]]:  # type: ignore[type-arg]
    """The headers the upstream received, by lower-cased name."""
    found: dict[str, list[str]] = {}
    for name, value in echoed["headers"]:
        found.setdefault(name.lower(), []).append(value)
    return found


async def test_hop_by_hop_request_headers_stop_at_the_gateway(make_gateway: GatewayFactory) -> None:
    """Connection and what it names, Keep-Alive, Proxy-Connection, TE, Upgrade stay here."""
    gw = await make_gateway(ROUTES)
    request = (
        b"GET /echo HTTP/1.1\r\nHost: app.example\r\n"
        b"Connection: keep-alive, X-Private-Hop\r\nX-Private-Hop: secret\r\n"
        b"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
        b"Upgrade: example/1\r\n\r\n"
    )
    sent = _sent((await exchange(gw.gateway.addresses["proxy"], request)).json())
    for name in [*HOP_BY_HOP, "X-Private-Hop"]:
        assert name.lower() not in sent, name


async def test_end_to_end_request_headers_reach_upstream(make_gateway: GatewayFactory) -> None:
    """Credentials, cookies, trace context and repeated headers reach the upstream unchanged."""
    gw = await make_gateway(ROUTES)
    request = (
        b"GET /echo HTTP/1.1\r\nHost: app.example\r\n"
        b"Proxy-Authorization: Basic cHJveHk6c2VjcmV0\r\nAuthorization: Bearer t0k3n\r\n"
        b"Cookie: a=1; b=2\r\n"
        b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
        b"tracestate: vendor=value\r\nAccept-Encoding: gzip\r\n"
        b"X-Multi: one\r\nX-Multi: two\r\n\r\n"
    )
    sent = _sent((await exchange(gw.gateway.addresses["proxy"], request)).json())
    assert sent["proxy-authorization"] == ["Basic cHJveHk6c2VjcmV0"]
    assert sent["authorization"] == ["Bearer t0k3n"]
    assert sent["cookie"] == ["a=1; b=2"]
    assert sent["traceparent"] == ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]
    assert sent["tracestate"] == ["vendor=value"]
    assert sent["accept-encoding"] == ["gzip"]
    assert sent["x-multi"] == ["one", "two"]


BARE = [
    pytest.param(b"GET /echo HTTP/1.1\r\nHost: app\r\n\r\n", set(), id="get"),
    pytest.param(
        b"POST /echo HTTP/1.1\r\nHost: app\r\nContent-Length: 2\r\n\r\nhi",
        {"content-length"},
        id="post-sized",
    ),
    pytest.param(
        b"PUT /echo HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nhi\r\n0\r\n\r\n",
        {"transfer-encoding"},
        id="put-chunked",
    ),
]


@pytest.mark.parametrize(("request_bytes", "framing"), BARE)
async def test_upstream_client_adds_no_headers_of_its_own(
    make_gateway: GatewayFactory, request_bytes: bytes, framing: set[str]
) -> None:
    """A bare request reaches the upstream with Host, framing, X-Forwarded-* and the id only."""
    gw = await make_gateway(ROUTES)
    sent = _sent((await exchange(gw.gateway.addresses["proxy"], request_bytes)).json())
    forwarded = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id"}
    assert set(sent) == {"host"} | framing | forwarded


@pytest.fixture
async def raw_upstream() -> AsyncIterator[RawUpstream]:
    """An upstream answering hop-by-hop headers, two cookies and an end-to-end header."""
    server = RawUpstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
        b"Connection: keep-alive, X-Private-Hop\r\nX-Private-Hop: 1\r\n"
        b"Keep-Alive: timeout=5, max=100\r\nProxy-Connection: keep-alive\r\n"
        b"Upgrade: example/1\r\nTE: trailers\r\n"
        b"Set-Cookie: session=abc; Path=/; HttpOnly\r\nSet-Cookie: theme=dark; Path=/\r\n"
        b"X-End: kept\r\n\r\nok",
        [],
    )
    await server.start()
    yield server
    await server.stop()


async def test_hop_by_hop_response_headers_stop_at_the_gateway(
    make_gateway: GatewayFactory, raw_upstream: RawUpstream
) -> None:
    """The upstream's hop-by-hop headers never reach the client; Set-Cookie twice and X-End do."""
    gw = await make_gateway(policy_text(ROUTES, raw_upstream.url))
    response = await exchange(gw.gateway.addresses["proxy"], b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert response.body == b"ok"
    names = {name.lower() for name, _ in response.headers}
    for name in ["Keep-Alive", "Proxy-Connection", "TE", "Transfer-Encoding", "Upgrade"]:
        assert name.lower() not in names, name
    assert "x-private-hop" not in names
    # Our own server may speak of its own connection, never repeat the upstream's.
    assert all("x-private-hop" not in v.lower() for v in response.all("Connection"))
    assert response.all("Set-Cookie") == [
        "session=abc; Path=/; HttpOnly",
        "theme=dark; Path=/",
    ]
    assert response.header("X-End") == "kept"


async def test_forwarded_headers_describe_the_client(make_gateway: GatewayFactory) -> None:
    """X-Forwarded-For keeps prior hops and appends the peer; Proto and Host describe the client."""
    gw = await make_gateway(ROUTES)
    request = (
        b"GET /echo HTTP/1.1\r\nHost: shop.example:8443\r\n"
        b"X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n"
        b"X-Forwarded-Host: spoofed.example\r\n\r\n"
    )
    sent = _sent((await exchange(gw.gateway.addresses["proxy"], request)).json())
    assert sent["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
    # The peer is not a trusted proxy: what it claims about scheme and host is replaced.
    assert sent["x-forwarded-proto"] == ["http"]
    assert sent["x-forwarded-host"] == ["shop.example:8443"]


async def test_trusted_proxy_keeps_its_forwarded_proto_and_host(
    make_gateway: GatewayFactory,
) -> None:
    """From a trusted peer, X-Forwarded-Proto/Host are kept and the client address is believed."""
    gw = await make_gateway(ROUTES + "forwarding: {trusted_proxies: [127.0.0.0/8]}\n")
    request = (
        b"GET /echo HTTP/1.1\r\nHost: internal:8080\r\n"
        b"X-Forwarded-For: 198.51.100.7, 10.1.2.3\r\nX-Forwarded-Proto: https\r\n"
        b"X-Forwarded-Host: shop.example\r\n\r\n"
    )
    sent = _sent((await exchange(gw.gateway.addresses["proxy"], request)).json())
    assert sent["x-forwarded-for"] == ["198.51.100.7, 10.1.2.3, 127.0.0.1"]
    assert sent["x-forwarded-proto"] == ["https"]
    assert sent["x-forwarded-host"] == ["shop.example"]


async def test_host_is_preserved_by_default(make_gateway: GatewayFactory) -> None:
    """Without a host_header setting the upstream sees the client's Host."""
    gw = await make_gateway(ROUTES)
    request = b"GET /echo HTTP/1.1\r\nHost: shop.example:8443\r\n\r\n"
    sent = _sent((await exchange(gw.gateway.addresses["proxy"], request)).json())
    assert sent["host"] == ["shop.example:8443"]


async def test_host_is_rewritten_to_the_upstream_when_asked(
    make_gateway: GatewayFactory, upstream: TestServer
) -> None:
    """With `host_header: upstream` the upstream sees its own host and port as Host."""
    url = str(upstream.make_url("")).rstrip("/")
    gw = await make_gateway(
        policy_text(ROUTES, None) + f'upstream: {{url: "{url}", host_header: upstream}}\n'
    )
    request = b"GET /echo HTTP/1.1\r\nHost: shop.example\r\n\r\n"
    sent = _sent((await exchange(gw.gateway.addresses["proxy"], request)).json())
    assert sent["host"] == [f"{upstream.host}:{upstream.port}"]
    assert sent["x-forwarded-host"] == ["shop.example"]


async def test_one_clients_cookie_never_reaches_another_clients_request(
    make_gateway: GatewayFactory,
) -> None:
    """A Set-Cookie answered to client A is not sent upstream on client B's request."""
    gw = await make_gateway(ROUTES)
    async with aiohttp.ClientSession() as client_a:
        url = gw.proxy + "/headers?h=Set-Cookie:session%3Dalice%3B%20Path%3D%2F"
        async with client_a.get(url) as response:
            assert response.headers["Set-Cookie"] == "session=alice; Path=/"
    async with aiohttp.ClientSession() as client_b, client_b.get(gw.proxy + "/echo") as response:
        assert "cookie" not in _sent(await response.json())

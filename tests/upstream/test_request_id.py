"""X-Request-ID: kept when well-formed, minted otherwise, sent upstream, returned, and logged."""

from __future__ import annotations

import io
import re

import pytest
from aiohttp.test_utils import TestServer

from gateway.observability.logs import configure_logging
from tests.conftest import GatewayFactory
from tests.upstream.conftest import ROUTES, exchange, log_lines, upstream_hits

MINTED = re.compile(r"^[0-9a-f]{32}$")


async def test_well_formed_id_travels_upstream_back_and_into_the_log(
    make_gateway: GatewayFactory, log_stream: io.StringIO
) -> None:
    """A well-formed X-Request-ID reaches the upstream, comes back, and names the access line."""
    gw = await make_gateway(ROUTES)
    configure_logging(stream=log_stream)
    rid = "req-2026.11.23:abc/DEF+1="
    response = await exchange(
        gw.gateway.addresses["proxy"],
        f"GET /echo HTTP/1.1\r\nHost: a\r\nX-Request-ID: {rid}\r\n\r\n".encode(),
    )
    sent = [v for k, v in response.json()["headers"] if k.lower() == "x-request-id"]
    assert sent == [rid]
    assert response.all("X-Request-ID") == [rid]
    access = [line for line in log_lines(log_stream) if line["event"] == "access"]
    assert [line["request_id"] for line in access] == [rid]


MALFORMED = [
    pytest.param(b"x" * 129, id="too-long"),
    pytest.param(b"has spaces in it", id="spaces"),
    pytest.param(b"caf\xc3\xa9", id="non-ascii"),
    pytest.param(b"a;b<script>", id="punctuation"),
]


@pytest.mark.parametrize("offered", MALFORMED)
async def test_malformed_id_is_replaced_by_a_minted_one(
    make_gateway: GatewayFactory, log_stream: io.StringIO, offered: bytes
) -> None:
    """A malformed X-Request-ID never travels: a minted id goes upstream, back and into the log."""
    gw = await make_gateway(ROUTES)
    configure_logging(stream=log_stream)
    response = await exchange(
        gw.gateway.addresses["proxy"],
        b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Request-ID: " + offered + b"\r\n\r\n",
    )
    assert response.status == 200
    sent = [v for k, v in response.json()["headers"] if k.lower() == "x-request-id"]
    assert len(sent) == 1
    assert MINTED.match(sent[0])
    assert response.all("X-Request-ID") == sent
    access = [line for line in log_lines(log_stream) if line["event"] == "access"]
    assert [line["request_id"] for line in access] == sent


SPLITTING = [
    pytest.param(b"abc\rX-Injected: 1", id="bare-cr"),
    pytest.param(b"abc\nX-Injected: 1", id="bare-lf"),
    pytest.param(b"abc\r\n X-Injected: 1", id="obs-fold"),
]


@pytest.mark.parametrize("offered", SPLITTING)
async def test_header_splitting_attempt_is_refused_before_the_upstream(
    make_gateway: GatewayFactory, upstream: TestServer, log_stream: io.StringIO, offered: bytes
) -> None:
    """A CR or LF inside the id (or a folded line) is a 400 problem+json with a minted id."""
    gw = await make_gateway(ROUTES)
    configure_logging(stream=log_stream)
    response = await exchange(
        gw.gateway.addresses["proxy"],
        b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Request-ID: " + offered + b"\r\n\r\n",
    )
    assert response.status == 400
    assert response.header("Content-Type") == "application/problem+json"
    rid = response.json()["request_id"]
    assert MINTED.match(rid)
    assert response.all("X-Request-ID") == [rid]
    assert "x-injected" not in {k.lower() for k, _ in response.headers}
    assert [line["request_id"] for line in log_lines(log_stream)] == [rid]
    assert "echo" not in await upstream_hits(upstream)

"""End-to-end: a request goes through the gateway to a real upstream and back."""

from __future__ import annotations

import aiohttp

from tests.conftest import GatewayFactory

ROUTES = """
routes:
  - name: api
    match: {path_prefix: /echo}
  - name: rest
    match: {path_prefix: /status}
"""


async def test_request_reaches_upstream_and_answer_comes_back(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """A GET through the proxy returns the upstream's answer with a request id."""
    gw = await make_gateway(ROUTES)
    async with client.get(gw.proxy + "/echo/hello?a=1") as response:
        assert response.status == 200
        body = await response.json()
        assert body["raw_path"] == "/echo/hello?a=1"
        assert len(response.headers["X-Request-ID"]) == 32


async def test_unmatched_request_is_404_problem(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """A path no route matches gets a 404 problem+json naming the request id."""
    gw = await make_gateway(ROUTES)
    async with client.get(gw.proxy + "/nothing", headers={"X-Request-ID": "req-1"}) as response:
        assert response.status == 404
        assert response.content_type == "application/problem+json"
        body = await response.json(content_type=None)
        assert body["type"] == "urn:gateway:problem:no-route"
        assert body["request_id"] == "req-1"

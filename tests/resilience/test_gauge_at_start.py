"""The breaker state is visible in /metrics from the moment a policy serves."""

from __future__ import annotations

import aiohttp

from tests.conftest import GatewayFactory

POLICY = """
routes:
  - name: api
    match: {path_prefix: /}
    circuit_breaker: {min_calls: 2, open_for: 30s}
"""

CLOSED = 'gateway_circuit_breaker_state{breaker="api",state="closed"} 1.0'


async def test_breaker_state_is_exported_before_any_request(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """A dashboard sees a route's breaker as closed before the route has served anything, and
    again after a reload that adds a breaker."""
    gw = await make_gateway(POLICY)
    async with client.get(gw.url("metrics", "/metrics")) as response:
        assert CLOSED in await response.text()
    assert gw.gateway.state is not None
    gw.write_policy(gw.policy_path.read_text().replace("name: api", "name: shop"))
    assert gw.gateway.state.reload()
    async with client.get(gw.url("metrics", "/metrics")) as response:
        assert CLOSED.replace('"api"', '"shop"') in await response.text()

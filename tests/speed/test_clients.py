"""The upstream client is the operator's choice, and the bound metric children count as before."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import generate_latest

from gateway.observability.metrics import GatewayMetrics
from gateway.upstream.client import AiohttpUpstreamClient
from gateway.upstream.lean import LeanUpstreamClient
from tests.conftest import GatewayFactory, policy_text

ROUTES = """
routes:
  - name: default
    match: {path_prefix: /}
"""


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        pytest.param("", LeanUpstreamClient, id="default-lean"),
        pytest.param("client: lean, ", LeanUpstreamClient, id="lean"),
        pytest.param("client: aiohttp, ", AiohttpUpstreamClient, id="aiohttp"),
    ],
)
async def test_policy_chooses_the_upstream_client(
    make_gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    upstream: TestServer,
    setting: str,
    expected: type,
) -> None:
    """`upstream.client` picks the client (lean by default) and requests flow through either."""
    url = str(upstream.make_url("")).rstrip("/")
    gw = await make_gateway(policy_text(ROUTES, None) + f'upstream: {{{setting}url: "{url}"}}\n')
    assert gw.gateway.state is not None
    assert type(gw.gateway.state.upstream) is expected
    async with client.post(gw.proxy + "/echo/x", data=b"hello") as response:
        assert response.status == 200
        assert (await response.json())["body"] == "hello"


def test_bound_children_count_into_the_same_series() -> None:
    """Counting through the cached children shows in /metrics exactly as `.labels()` would."""
    metrics = GatewayMetrics()
    bound = metrics.route("api")
    bound.requests("GET", 200).inc()
    bound.requests("GET", 204).inc()
    bound.requests("FROB", 500).inc()
    bound.duration.observe(0.002)
    metrics.upstream_calls.labels("api", "success").inc(3)
    assert metrics.route("api") is bound
    assert metrics.upstream_calls.labels("api", "success") is metrics.upstream_calls.labels(
        "api", "success"
    )
    text = generate_latest(metrics.registry).decode()
    assert 'gateway_requests_total{method="GET",route="api",status_class="2xx"} 2.0' in text
    assert 'gateway_requests_total{method="OTHER",route="api",status_class="5xx"} 1.0' in text
    assert 'gateway_request_duration_seconds_count{route="api"} 1.0' in text
    assert 'gateway_upstream_calls_total{outcome="success",route="api"} 3.0' in text

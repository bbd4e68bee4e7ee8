"""A Redis that dies and comes back, as clients, /health and /metrics see it."""

from __future__ import annotations

import aiohttp

from tests.conftest import GatewayFactory, RedisServer


def policy(redis_url: str, on_error: str, extra: str = "") -> str:
    return f"""
store: {{url: "{redis_url}", on_error: {on_error}, replicas: 2, retry_interval: 0s{extra}}}
routes:
  - name: api
    match: {{path_prefix: /echo}}
    rate_limit:
      - {{name: per-ip, limit: 4, window: 1h}}
"""


async def statuses(client: aiohttp.ClientSession, url: str, n: int) -> list[int]:
    result = []
    for _ in range(n):
        async with client.get(url) as response:
            result.append(response.status)
    return result


async def test_local_fallback_limits_in_memory_and_returns_to_redis(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, redis: RedisServer
) -> None:
    """Redis down: limit/replicas applies locally, /health says fallback; Redis back: primary."""
    gw = await make_gateway(policy(redis.url, "local"))
    assert await statuses(client, gw.proxy + "/echo", 1) == [200]
    redis.stop()
    try:
        assert await statuses(client, gw.proxy + "/echo", 3) == [200, 200, 429]
        async with client.get(gw.url("health", "/health")) as response:
            component = (await response.json())["components"]["ratelimit_store"]
        assert (component["status"], component["mode"]) == ("fail", "fallback")
        async with client.get(gw.url("health", "/readyz")) as response:
            assert response.status == 200  # not required for readiness by default
    finally:
        redis.start()
    assert await statuses(client, gw.proxy + "/echo", 1) == [200]  # a fresh Redis: count 1
    async with client.get(gw.url("health", "/health")) as response:
        component = (await response.json())["components"]["ratelimit_store"]
    assert (component["mode"], component["switches"]) == ("primary", 2)
    async with client.get(gw.url("metrics", "/metrics")) as response:
        text = await response.text()
    assert 'gateway_ratelimit_store_switches_total{to="fallback"} 1.0' in text
    assert 'gateway_ratelimit_store_switches_total{to="primary"} 1.0' in text
    assert 'gateway_ratelimit_store_mode{mode="primary"} 1.0' in text


async def test_closed_answers_503_while_redis_is_down(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, redis: RedisServer
) -> None:
    """on_error: closed refuses with a 503 problem, and /readyz fails when the policy asks."""
    gw = await make_gateway(policy(redis.url, "closed", ", required_for_readiness: true"))
    redis.stop()
    try:
        async with client.get(gw.proxy + "/echo") as response:
            assert response.status == 503
            assert response.content_type == "application/problem+json"
            assert (await response.json())["reason"] == "store_unavailable"
        async with client.get(gw.url("health", "/readyz")) as response:
            assert response.status == 503
            assert "ratelimit_store is fallback" in (await response.json())["reasons"]
    finally:
        redis.start()
    assert await statuses(client, gw.proxy + "/echo", 1) == [200]
    async with client.get(gw.url("health", "/readyz")) as response:
        assert response.status == 200
    async with client.get(gw.url("metrics", "/metrics")) as response:
        text = await response.text()
    assert (
        'gateway_ratelimit_decisions_total{outcome="store_error",route="api",rule="per-ip"} 1.0'
        in text
    )


async def test_open_admits_and_counts_store_errors(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, redis: RedisServer
) -> None:
    """on_error: open lets every request through while Redis is down, and counts each one."""
    gw = await make_gateway(policy(redis.url, "open"))
    redis.stop()
    try:
        assert await statuses(client, gw.proxy + "/echo", 6) == [200] * 6
    finally:
        redis.start()
    async with client.get(gw.url("metrics", "/metrics")) as response:
        text = await response.text()
    assert (
        'gateway_ratelimit_decisions_total{outcome="store_error",route="api",rule="per-ip"} 6.0'
        in text
    )

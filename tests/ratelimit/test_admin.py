"""The admin port's view of rate limiting: the rules, a key's usage, resets."""

from __future__ import annotations

import aiohttp

from tests.conftest import GatewayFactory


def policy(store_url: str) -> str:
    return f"""
store: {{url: "{store_url}"}}
routes:
  - name: api
    match: {{path_prefix: /echo}}
    rate_limit:
      - {{name: per-key, key: ['header:X-API-Key'], limit: 3, window: 1h}}
      - {{name: daily, key: [route], limit: 1000, calendar: day, algorithm: fixed_window,
          timezone: Europe/Paris}}
"""


async def test_the_rules_are_listed(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """GET /admin/ratelimit/rules lists each route's rules as compiled, and the store."""
    gw = await make_gateway(policy("memory://"))
    async with client.get(gw.url("admin", "/admin/ratelimit/rules")) as response:
        body = await response.json()
    assert body["store"]["kind"] == "memory"
    [route] = body["routes"]
    assert [r["name"] for r in route["rules"]] == ["per-key", "daily"]
    assert route["rules"][1]["calendar"] == "day"
    assert route["rules"][1]["timezone"] == "Europe/Paris"


async def test_a_key_s_usage_can_be_read_and_reset(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, store_url: str
) -> None:
    """An operator sees a client's remaining quota and gives it back with one reset."""
    gw = await make_gateway(policy(store_url))
    for _ in range(4):
        async with client.get(gw.proxy + "/echo", headers={"X-API-Key": "k1"}):
            pass
    query = "?route=api&rule=per-key&header:X-API-Key=k1"
    async with client.get(gw.url("admin", "/admin/ratelimit/usage" + query)) as response:
        usage = await response.json()
    assert (usage["limit"], usage["remaining"]) == (3, 0)
    async with client.post(gw.url("admin", "/admin/ratelimit/reset" + query)) as response:
        assert (await response.json())["deleted"] >= 1
    async with client.get(gw.proxy + "/echo", headers={"X-API-Key": "k1"}) as response:
        assert response.status == 200
        assert response.headers["X-RateLimit-Remaining"] == "2"


async def test_an_unknown_rule_is_a_404(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """Naming a rule the route does not have answers 404 with the names given."""
    gw = await make_gateway(policy("memory://"))
    url = gw.url("admin", "/admin/ratelimit/usage?route=api&rule=nope")
    async with client.get(url) as response:
        assert response.status == 404
        assert "'nope'" in (await response.json())["error"]

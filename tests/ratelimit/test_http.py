"""Rate limiting as a client sees it, through a real gateway, on the memory store and on Redis."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp.test_utils import TestServer

from tests.conftest import GatewayFactory
from tests.upstream_app import HITS


def policy(store_url: str, rules: str, extra_routes: str = "") -> str:
    return f"""
store: {{url: "{store_url}", retry_interval: 0s}}
routes:
  - name: api
    match: {{path_prefix: /echo}}
    rate_limit:
{rules}
{extra_routes}
"""


PER_IP = "      - {name: per-ip, limit: 3, window: 1h}"


async def test_over_the_limit_gets_a_429_problem_and_never_reaches_the_upstream(
    make_gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    upstream: TestServer,
    store_url: str,
) -> None:
    """The 4th request of a 3-per-hour rule is a 429 problem naming the rule and request id."""
    gw = await make_gateway(policy(store_url, PER_IP))
    for _ in range(3):
        async with client.get(gw.proxy + "/echo") as response:
            assert response.status == 200
    async with client.get(gw.proxy + "/echo", headers={"X-Request-ID": "abc-123"}) as response:
        assert response.status == 429
        assert response.content_type == "application/problem+json"
        body = await response.json()
        retry_after = response.headers["Retry-After"]
    assert body["rule"] == "per-ip"
    assert body["request_id"] == "abc-123"
    assert body["type"].endswith("rate-limited")
    assert "3 per 3600s" in body["detail"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    assert upstream.app[HITS]["echo"] == 3


async def test_responses_carry_the_draft_and_legacy_headers(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, store_url: str
) -> None:
    """Admitted and refused responses both tell the client its quota and what is left."""
    gw = await make_gateway(policy(store_url, PER_IP))
    async with client.get(gw.proxy + "/echo") as response:
        headers = response.headers
    assert headers["RateLimit-Policy"] == '"per-ip";q=3;w=3600'
    assert headers["RateLimit"].startswith('"per-ip";r=2;t=')
    assert (headers["X-RateLimit-Limit"], headers["X-RateLimit-Remaining"]) == ("3", "2")
    assert int(headers["X-RateLimit-Reset"]) >= 1
    for _ in range(3):
        async with client.get(gw.proxy + "/echo") as response:
            headers = response.headers
    assert response.status == 429
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["RateLimit"].startswith('"per-ip";r=0;t=')


async def test_header_families_are_switchable(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """`headers: draft|legacy|none` sends only the chosen header family."""
    rules = """      - {name: a, limit: 5, window: 1h, headers: draft}
      - {name: b, limit: 9, window: 1h, headers: none}"""
    gw = await make_gateway(policy("memory://", rules))
    async with client.get(gw.proxy + "/echo") as response:
        headers = response.headers
    assert headers["RateLimit-Policy"] == '"a";q=5;w=3600'
    assert "X-RateLimit-Limit" not in headers
    gw2 = await make_gateway(
        policy("memory://", "      - {name: a, limit: 5, window: 1h, headers: legacy}")
    )
    async with client.get(gw2.proxy + "/echo") as response:
        headers = response.headers
    assert "RateLimit-Policy" not in headers and "RateLimit" not in headers
    assert headers["X-RateLimit-Limit"] == "5"


async def test_the_gateways_fields_replace_those_the_upstream_sends(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """An upstream that limits too (or echoes the request id) is not heard twice: the client
    reads one value of each field, the gateway's; a family the rule leaves off passes through."""
    extra = """  - name: up
    match: {path_prefix: /headers}
    rate_limit:
      - {name: per-ip, limit: 3, window: 1h, headers: draft}"""
    gw = await make_gateway(policy("memory://", PER_IP, extra))
    sent = (
        "h=RateLimit-Policy:%22up%22%3Bq%3D1%3Bw%3D1&h=ratelimit:%22up%22%3Br%3D0%3Bt%3D1"
        "&h=X-RateLimit-Limit:1&h=X-RateLimit-Remaining:0&h=X-Request-ID:theirs"
    )
    async with client.get(gw.proxy + "/headers?" + sent, headers={"X-Request-ID": "ours"}) as r:
        headers = r.headers
    assert headers.getall("RateLimit-Policy") == ['"per-ip";q=3;w=3600']
    assert headers.getall("RateLimit")[0].startswith('"per-ip";r=2;t=')
    assert len(headers.getall("RateLimit")) == 1
    assert headers.getall("X-Request-ID") == ["ours"]
    # headers: draft renders no legacy fields, so the upstream's own pass untouched.
    assert headers.getall("X-RateLimit-Limit") == ["1"]
    assert headers.getall("X-RateLimit-Remaining") == ["0"]


async def test_every_rule_must_pass_and_the_tightest_answers(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, store_url: str
) -> None:
    """With a burst rule and an hourly rule, the burst rule refuses first and says so."""
    rules = """      - {name: hourly, limit: 100, window: 1h}
      - {name: burst, limit: 2, window: 1h, algorithm: token_bucket}"""
    gw = await make_gateway(policy(store_url, rules))
    async with client.get(gw.proxy + "/echo") as response:
        assert response.headers["X-RateLimit-Limit"] == "2"  # the least remaining speaks
        assert response.headers["RateLimit-Policy"] == '"hourly";q=100;w=3600, "burst";q=2;w=3600'
    async with client.get(gw.proxy + "/echo") as response:
        assert response.status == 200
    async with client.get(gw.proxy + "/echo") as response:
        assert response.status == 429
        assert (await response.json())["rule"] == "burst"
        assert int(response.headers["Retry-After"]) == 1800


async def test_shadow_mode_never_rejects_but_counts(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, store_url: str
) -> None:
    """A shadow rule lets everything through and counts what it would have refused."""
    rules = "      - {name: trial, limit: 2, window: 1h, mode: shadow}"
    gw = await make_gateway(policy(store_url, rules))
    for _ in range(5):
        async with client.get(gw.proxy + "/echo") as response:
            assert response.status == 200
            assert "RateLimit-Policy" not in response.headers
    async with client.get(gw.url("metrics", "/metrics")) as response:
        text = await response.text()
    assert (
        'gateway_ratelimit_decisions_total{outcome="shadow_limited",route="api",rule="trial"} 3.0'
        in text
    )
    assert (
        'gateway_ratelimit_decisions_total{outcome="allowed",route="api",rule="trial"} 2.0' in text
    )


async def test_a_header_key_separates_clients_and_missing_ones_share_a_bucket(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, store_url: str
) -> None:
    """Each API key has its own quota; requests without one share the anonymous quota."""
    rules = "      - {name: per-key, key: ['header:X-API-Key'], limit: 1, window: 1h}"
    gw = await make_gateway(policy(store_url, rules))

    async def status(headers: dict[str, str]) -> int:
        async with client.get(gw.proxy + "/echo", headers=headers) as response:
            return response.status

    assert [await status({"X-API-Key": "alice"}) for _ in range(2)] == [200, 429]
    assert await status({"X-API-Key": "bob"}) == 200
    assert [await status({}) for _ in range(2)] == [200, 429]


async def test_routes_without_rules_are_not_limited(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """A route with no rate_limit block sends no rate-limit headers and is never refused."""
    extra = """  - name: free
    match: {path_prefix: /status}"""
    gw = await make_gateway(policy("memory://", "      - {name: a, limit: 1, window: 1h}", extra))
    for _ in range(3):
        async with client.get(gw.proxy + "/status/200") as response:
            assert response.status == 200
            assert "RateLimit" not in response.headers


async def test_a_reload_keeps_the_counters_of_unchanged_rules(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, store_url: str
) -> None:
    """Editing the policy keeps an unchanged rule's counts; a changed rule starts afresh."""
    rules = """      - {name: kept, limit: 5, window: 1h}
      - {name: changed, limit: 5, window: 1h}"""
    gw = await make_gateway(policy(store_url, rules))
    for _ in range(2):
        async with client.get(gw.proxy + "/echo"):
            pass
    text = gw.policy_path.read_text().replace(
        "{name: changed, limit: 5, window: 1h}", "{name: changed, limit: 8, window: 1h}"
    )
    gw.write_policy(text)
    assert gw.gateway.state is not None and gw.gateway.state.reload()
    async with client.get(gw.proxy + "/echo") as response:
        rate_limit = response.headers["RateLimit"]
    assert rate_limit.startswith('"kept";r=2;t=')
    assert '"changed";r=7;t=' in rate_limit


async def test_the_store_is_a_health_component(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, store_url: str
) -> None:
    """/health shows the rate-limit store, its kind and mode."""
    gw = await make_gateway(policy(store_url, PER_IP))
    async with client.get(gw.url("health", "/health")) as response:
        component = (await response.json())["components"]["ratelimit_store"]
    assert component["status"] == "ok"
    assert component["mode"] == "primary"
    assert component["kind"] == store_url.partition(":")[0]


async def test_a_concurrency_limit_caps_requests_in_flight(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, store_url: str
) -> None:
    """Two slow requests in flight fill the route; a third is refused; done ones free slots."""
    body = f"""
store: {{url: "{store_url}"}}
routes:
  - name: slow
    match: {{path: /slow}}
    rate_limit:
      - {{name: in-flight, key: [route], limit: 2, algorithm: concurrency}}
"""
    gw = await make_gateway(body)

    async def get(seconds: float) -> tuple[int, dict[str, str]]:
        async with client.get(gw.proxy + f"/slow?seconds={seconds}") as response:
            await response.read()
            return response.status, dict(response.headers)

    slow = [asyncio.create_task(get(0.5)) for _ in range(2)]
    await asyncio.sleep(0.2)  # let both reach the upstream: real requests take real time
    status, headers = await get(0)
    assert status == 429 and headers["Retry-After"] == "1"
    assert "RateLimit-Policy" not in headers
    assert [s for s, _ in await asyncio.gather(*slow)] == [200, 200]
    assert [(await get(0))[0] for _ in range(3)] == [200, 200, 200]


async def test_a_queued_request_gets_a_freed_slot_within_max_wait(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, store_url: str
) -> None:
    """With max_wait, a request waits for a slot and passes; past max_wait it gets its 429."""
    body = f"""
store: {{url: "{store_url}"}}
routes:
  - name: slow
    match: {{path: /slow}}
    rate_limit:
      - {{name: one, key: [route], limit: 1, algorithm: concurrency, max_wait: 500ms}}
"""
    gw = await make_gateway(body)

    async def get(seconds: float) -> int:
        async with client.get(gw.proxy + f"/slow?seconds={seconds}") as response:
            await response.read()
            return response.status

    first = asyncio.create_task(get(0.2))
    await asyncio.sleep(0.05)
    assert await get(0) == 200  # queued behind the first, then admitted
    assert await first == 200
    long = asyncio.create_task(get(1.5))
    await asyncio.sleep(0.05)
    assert await get(0) == 429  # the slot stays taken past max_wait
    assert await long == 200

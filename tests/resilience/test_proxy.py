"""End to end: breaker, retries, timeouts and bulkhead in front of a real failing upstream."""

from __future__ import annotations

import asyncio
import time

import aiohttp
from aiohttp.test_utils import TestServer

from gateway.resilience.breaker import Breaker, State
from tests.conftest import GatewayFactory, RunningGateway, free_port
from tests.resilience.clock import FakeClock

BREAKER = """
routes:
  - name: flaky
    match: {path_prefix: /flaky}
    circuit_breaker:
      window: {type: count, size: 4}
      min_calls: 4
      failure_rate: 50%
      open_for: 30s
      half_open_calls: 2
"""


def breaker_of(gw: RunningGateway, route: str) -> Breaker:
    assert gw.gateway.state is not None
    for each in gw.gateway.state.current.routes:
        if each.name == route and each.resilience is not None:
            assert each.resilience.breaker is not None
            return each.resilience.breaker
    raise AssertionError(f"route {route!r} has no breaker")


def with_fake_clock(gw: RunningGateway, route: str) -> FakeClock:
    clock = FakeClock()
    breaker_of(gw, route).clock = clock
    return clock


async def upstream_hits(client: aiohttp.ClientSession, upstream: TestServer) -> int:
    async with client.get(upstream.make_url("/_hits")) as response:
        hits: dict[str, int] = await response.json(content_type=None)
        return hits.get("flaky", 0)


async def statuses(client: aiohttp.ClientSession, url: str, n: int) -> list[int]:
    found = []
    for _ in range(n):
        async with client.get(url) as response:
            await response.read()
            found.append(response.status)
    return found


async def test_open_breaker_answers_at_once_and_sends_nothing(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """After min_calls failures the breaker opens: 503 problem+json with Retry-After, no hits."""
    gw = await make_gateway(BREAKER)
    with_fake_clock(gw, "flaky")
    url = gw.proxy + "/flaky?fail=100"
    assert await statuses(client, url, 4) == [503] * 4
    assert await upstream_hits(client, upstream) == 4
    for _ in range(5):
        async with client.get(url) as response:
            assert response.status == 503
            assert response.content_type == "application/problem+json"
            assert response.headers["Retry-After"] == "30"
            body = await response.json(content_type=None)
            assert body["reason"] == "circuit_open"
    assert await upstream_hits(client, upstream) == 4


async def test_half_open_sends_exactly_half_open_calls_then_closes(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """Once open_for passed, of 6 concurrent requests exactly 2 reach the upstream."""
    gw = await make_gateway(BREAKER)
    clock = with_fake_clock(gw, "flaky")
    assert await statuses(client, gw.proxy + "/flaky?fail=4", 4) == [503] * 4
    clock.advance(30)

    async def one() -> int:
        # The probes are held 300 ms upstream, so all six arrive while they are in flight.
        async with client.get(gw.proxy + "/flaky?fail=4&delay=0.3") as response:
            await response.read()
            return response.status

    results = await asyncio.gather(*(one() for _ in range(6)))
    assert sorted(results) == [200, 200, 503, 503, 503, 503]
    assert await upstream_hits(client, upstream) == 6
    assert breaker_of(gw, "flaky").state is State.CLOSED
    assert await statuses(client, gw.proxy + "/flaky", 3) == [200] * 3


async def test_breaker_opens_on_connect_errors(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """A closed port gives 502 upstream_connect_error until the breaker opens, then 503."""
    gw = await make_gateway(
        f"""
        routes:
          - name: dead
            upstream: {{url: "http://127.0.0.1:{free_port()}", connect_timeout: 1s}}
            circuit_breaker: {{min_calls: 2, window: {{size: 2}}}}
        """
    )
    with_fake_clock(gw, "dead")
    assert await statuses(client, gw.proxy + "/x", 3) == [502, 502, 503]


async def test_admin_force_open_disable_and_reset(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """The admin port lists breakers and forces one open, disables it, and resets it."""
    gw = await make_gateway(BREAKER)
    async with client.get(gw.url("admin", "/admin/breakers")) as response:
        listed = await response.json()
    assert [(b["name"], b["state"]) for b in listed["breakers"]] == [("flaky", "closed")]

    async def act(action: str) -> str:
        async with client.post(gw.url("admin", f"/admin/breakers/flaky/{action}")) as response:
            assert response.status == 200
            state: str = (await response.json())["state"]
            return state

    assert await act("force_open") == "forced_open"
    assert await statuses(client, gw.proxy + "/flaky?fail=0", 2) == [503, 503]
    assert await upstream_hits(client, upstream) == 0
    assert await act("disable") == "disabled"
    assert await statuses(client, gw.proxy + "/flaky?fail=100", 6) == [503] * 6
    assert await upstream_hits(client, upstream) == 6  # disabled: every failure goes through
    assert await act("reset") == "closed"
    async with client.post(gw.url("admin", "/admin/breakers/nope/reset")) as response:
        assert response.status == 404


async def test_breaker_state_survives_an_unchanged_reload(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """A reload that leaves the breaker's definition alone keeps it open; a changed one resets."""
    gw = await make_gateway(BREAKER)
    with_fake_clock(gw, "flaky")
    await statuses(client, gw.proxy + "/flaky?fail=100", 4)
    assert breaker_of(gw, "flaky").state is State.OPEN
    text = gw.policy_path.read_text()
    state = gw.gateway.state
    assert state is not None
    gw.write_policy(text + "  - name: other\n    match: {path_prefix: /echo}\n")
    assert state.reload()
    assert breaker_of(gw, "flaky").state is State.OPEN
    gw.write_policy(text.replace("open_for: 30s", "open_for: 10s"))
    assert state.reload()
    assert breaker_of(gw, "flaky").state is State.CLOSED


async def test_metrics_show_state_transitions_and_outcomes(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """/metrics exports the breaker's state, its transitions and upstream calls by outcome."""
    gw = await make_gateway(BREAKER)
    with_fake_clock(gw, "flaky")
    await statuses(client, gw.proxy + "/flaky?fail=100", 5)
    async with client.get(gw.url("metrics", "/metrics")) as response:
        text = await response.text()
    assert 'gateway_circuit_breaker_state{breaker="flaky",state="open"} 1.0' in text
    assert (
        'gateway_circuit_breaker_transitions_total{breaker="flaky",from_state="closed",'
        'to_state="open"} 1.0'
    ) in text
    assert 'gateway_upstream_calls_total{outcome="failure_status",route="flaky"} 4.0' in text
    assert 'gateway_upstream_calls_total{outcome="circuit_open",route="flaky"} 1.0' in text


RETRY = """
routes:
  - name: flaky
    match: {path_prefix: /flaky}
    retry:
      attempts: 3
      backoff: {base: 1ms, max: 5ms}
      max_retry_after: 2s
      %s
"""


async def test_get_is_retried_until_it_succeeds(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """GET /flaky?fail=2 with 3 attempts answers 200; the upstream saw 3 tries."""
    gw = await make_gateway(RETRY % "")
    async with client.get(gw.proxy + "/flaky?fail=2") as response:
        assert response.status == 200
        assert await response.text() == "recovered"
    assert await upstream_hits(client, upstream) == 3


async def test_attempts_are_a_ceiling(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """When every try fails, the client gets the last upstream answer after `attempts` tries."""
    gw = await make_gateway(RETRY % "")
    assert await statuses(client, gw.proxy + "/flaky?fail=100", 1) == [503]
    assert await upstream_hits(client, upstream) == 3


async def test_post_is_not_retried_by_default(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """A failed POST is answered as is: it may have been applied, so it is not sent twice."""
    gw = await make_gateway(RETRY % "")
    async with client.post(gw.proxy + "/flaky?fail=2", data=b"order") as response:
        assert response.status == 503
    assert await upstream_hits(client, upstream) == 1


async def test_post_retried_when_route_lists_it_resends_the_body(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """A route that lists POST retries it, sending the same body again."""
    gw = await make_gateway(RETRY % "methods: [POST]")
    async with client.post(gw.proxy + "/flaky?fail=2", data=b"order-1") as response:
        assert response.status == 200
        assert await response.text() == "recovered:order-1"
    assert await upstream_hits(client, upstream) == 3


async def test_body_larger_than_buffer_is_not_retried(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """A body over retry.buffer_body streams through once and is never retried."""
    gw = await make_gateway(RETRY % "methods: [POST]\n      buffer_body: 16")
    async with client.post(gw.proxy + "/flaky?fail=2", data=b"x" * 17) as response:
        assert response.status == 503
    assert await upstream_hits(client, upstream) == 1


async def test_spent_budget_stops_retries(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """With the retry budget spent, the first failed answer goes back and nothing is retried."""
    gw = await make_gateway(RETRY % "budget: {ratio: 0%, min_per_second: 0}")
    assert await statuses(client, gw.proxy + "/flaky?fail=2", 1) == [503]
    assert await upstream_hits(client, upstream) == 1


async def test_spent_budget_after_connect_error_is_a_problem(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """A connect error that may not be retried for lack of budget says so in its problem."""
    gw = await make_gateway(
        f"""
        routes:
          - name: dead
            upstream: {{url: "http://127.0.0.1:{free_port()}"}}
            retry: {{budget: {{ratio: 0%, min_per_second: 0}}}}
        """
    )
    async with client.get(gw.proxy + "/x") as response:
        assert response.status == 503
        body = await response.json(content_type=None)
    assert body["reason"] == "retry_budget_exhausted"
    assert body["upstream_error"] == "upstream_connect_error"


async def test_retry_after_is_waited_for(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """A 503 with Retry-After: 1 is retried after one second, not after the 1 ms backoff."""
    gw = await make_gateway(RETRY % "")
    started = time.monotonic()
    assert await statuses(client, gw.proxy + "/flaky?fail=1&retry_after=1", 1) == [200]
    assert time.monotonic() - started >= 0.95
    assert await upstream_hits(client, upstream) == 2


async def test_retry_after_beyond_the_cap_is_answered_at_once(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """A Retry-After longer than max_retry_after is passed to the client instead of waited."""
    gw = await make_gateway(RETRY % "")
    async with client.get(gw.proxy + "/flaky?fail=1&retry_after=60") as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "60"
    assert await upstream_hits(client, upstream) == 1


async def test_per_try_timeout_is_a_504_problem(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """An upstream that hangs past timeout.per_try gets a 504 upstream_timeout problem."""
    gw = await make_gateway(
        """
        routes:
          - name: slow
            timeout: {per_try: 200ms}
        """
    )
    started = time.monotonic()
    async with client.get(gw.proxy + "/slow?seconds=5") as response:
        assert response.status == 504
        body = await response.json(content_type=None)
    assert body["reason"] == "upstream_timeout"
    assert time.monotonic() - started < 2


async def test_per_try_timeout_holds_on_a_connection_busy_before(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """A hang after a run of quick answers on the same upstream connection (whose timer the
    quick ones kept rather than remade) is cut at the per-try timeout all the same."""
    gw = await make_gateway(
        """
        routes:
          - name: slow
            timeout: {per_try: 300ms}
        """
    )
    quick_until = time.monotonic() + 0.7  # past two deadlines of the first quick request
    while time.monotonic() < quick_until:
        async with client.get(gw.proxy + "/slow?seconds=0.02") as response:
            assert response.status == 200
    started = time.monotonic()
    async with client.get(gw.proxy + "/slow?seconds=5") as response:
        assert response.status == 504
    assert 0.25 < time.monotonic() - started < 0.8


async def test_total_timeout_bounds_all_tries(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """Retried timeouts stop at timeout.total, however many attempts remain."""
    gw = await make_gateway(
        """
        routes:
          - name: slow
            timeout: {per_try: 200ms, total: 500ms}
            retry: {attempts: 10, on: [timeout], backoff: {base: 1ms, max: 1ms}}
        """
    )
    started = time.monotonic()
    assert await statuses(client, gw.proxy + "/slow?seconds=5", 1) == [504]
    assert 0.45 < time.monotonic() - started < 1.5


async def test_bulkhead_refuses_beyond_max_concurrent(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """With max_concurrent 1, a second request while one is in flight gets 503 bulkhead_full."""
    gw = await make_gateway(
        """
        routes:
          - name: slow
            max_concurrent: 1
        """
    )

    async def one(path: str) -> tuple[int, str]:
        async with client.get(gw.proxy + path) as response:
            body = await response.read()
            return response.status, body.decode()

    first = asyncio.create_task(one("/slow?seconds=0.3"))
    await asyncio.sleep(0.1)
    status, body = await one("/slow?seconds=0")
    assert status == 503 and '"reason":"bulkhead_full"' in body
    assert await first == (200, "slow")
    assert await one("/slow?seconds=0") == (200, "slow")  # the place was given back


async def test_shadow_breaker_opens_but_rejects_nothing(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """In shadow mode the breaker's state moves and is counted, yet every request goes through."""
    gw = await make_gateway(BREAKER.replace("window:", "mode: shadow\n      window:"))
    with_fake_clock(gw, "flaky")
    assert await statuses(client, gw.proxy + "/flaky?fail=100", 6) == [503] * 6
    assert await upstream_hits(client, upstream) == 6
    assert breaker_of(gw, "flaky").state is State.OPEN
    async with client.get(gw.url("metrics", "/metrics")) as response:
        text = await response.text()
    assert 'gateway_circuit_breaker_rejections_total{breaker="flaky",mode="shadow"} 2.0' in text


async def test_upstream_scope_shares_one_breaker_between_routes(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """With scope: upstream, failures on one route open the breaker for every route to it."""
    gw = await make_gateway(
        """
        routes:
          - name: flaky
            match: {path_prefix: /flaky}
            circuit_breaker: &cb {scope: upstream, min_calls: 2, window: {size: 2}}
          - name: echo
            match: {path_prefix: /echo}
            circuit_breaker: *cb
        """
    )
    assert breaker_of(gw, "flaky") is breaker_of(gw, "echo")
    with_fake_clock(gw, "flaky")
    assert await statuses(client, gw.proxy + "/flaky?fail=100", 2) == [503, 503]
    async with client.get(gw.proxy + "/echo") as response:
        body = await response.json(content_type=None)
    assert body["reason"] == "circuit_open"
    assert breaker_of(gw, "echo").name.startswith("upstream:127.0.0.1:")


async def test_slow_calls_open_the_breaker(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """Successful but slow answers open the breaker once the slow-call rate is reached."""
    gw = await make_gateway(
        """
        routes:
          - name: slow
            circuit_breaker:
              min_calls: 2
              window: {type: time, size: 60s}
              slow_call: {duration: 100ms, rate: 100%}
        """
    )
    assert await statuses(client, gw.proxy + "/slow?seconds=0.15", 3) == [200, 200, 503]
    assert breaker_of(gw, "slow").state is State.OPEN

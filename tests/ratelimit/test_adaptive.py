"""Adaptive throttling: limits shrink while CPU stays high and grow back as it falls."""

from __future__ import annotations

import aiohttp
import pytest

from gateway.ratelimit.adaptive import AdaptiveFactor
from gateway.ratelimit.lifecycle import CpuMeter, adapt
from gateway.ratelimit.strategies import Fixed, FixedWindow, TokenBucket
from gateway.stores.base import LimitStore
from tests.conftest import GatewayFactory
from tests.ratelimit.conftest import FakeClock


def test_the_factor_falls_fast_and_recovers_slowly() -> None:
    """Each hot sample takes 20% off (down to the floor); each cool one gives back 0.1."""
    factor = AdaptiveFactor(cpu_above=0.8, min_factor=0.5)
    assert [round(factor.update(0.95), 3) for _ in range(4)] == [0.8, 0.64, 0.512, 0.5]
    assert [round(factor.update(0.30), 3) for _ in range(6)] == [0.6, 0.7, 0.8, 0.9, 1.0, 1.0]


@pytest.mark.parametrize(
    ("strategy", "admitted"),
    [
        pytest.param(FixedWindow(10, Fixed(60)), 5, id="fixed_window"),
        pytest.param(TokenBucket(10, 60), 5, id="token_bucket"),
    ],
)
async def test_a_scaled_limit_admits_proportionally(
    strategy: FixedWindow | TokenBucket, admitted: int, store: LimitStore, clock: FakeClock
) -> None:
    """At factor 0.5 a limit of 10 admits 5."""
    results = [(await strategy.hit(store, "rl:{a|k}", 1, clock.now, 0.5)).allowed for _ in range(8)]
    assert results.count(True) == admitted


def test_the_cpu_meter_reports_fractions() -> None:
    """The meter's samples are fractions of the machine, between 0 and 1."""
    system, process = CpuMeter().sample(1.0)
    assert 0.0 <= system <= 1.0 and 0.0 <= process <= 1.0


async def test_a_hot_cpu_lowers_the_route_s_limit_and_the_gauge_shows_it(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """Under sustained CPU load the advertised and enforced limit shrink; the factor is a gauge."""
    gw = await make_gateway("""
routes:
  - name: api
    match: {path_prefix: /echo}
    rate_limit:
      - {name: per-ip, limit: 10, window: 1h, adaptive: {cpu_above: 80%, min_factor: 0.5}}
""")
    state = gw.gateway.state
    assert state is not None
    for _ in range(3):
        adapt(state, system_cpu=0.97, process_cpu=0.0)
    statuses = []
    for _ in range(7):
        async with client.get(gw.proxy + "/echo") as response:
            statuses.append(response.status)
            limit = response.headers["X-RateLimit-Limit"]
            policy = response.headers["RateLimit-Policy"]
    assert statuses == [200] * 5 + [429] * 2
    assert (limit, policy) == ("5", '"per-ip";q=5;w=3600')
    async with client.get(gw.url("metrics", "/metrics")) as response:
        text = await response.text()
    assert 'gateway_ratelimit_adaptive_factor{route="api",rule="per-ip"} 0.512' in text

"""Redis killed and restarted under load: the policy's on_error decides, nothing else fails."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.stores import FailoverStore
from tests.chaos.conftest import Load, poll_until
from tests.conftest import GatewayFactory, RedisServer


def policy(redis_url: str, on_error: str) -> str:
    # A fast retry_interval so that the primary is tried again well within a second.
    return f"""
store: {{url: "{redis_url}", on_error: {on_error}, retry_interval: 100ms, timeout: 250ms}}
logging: {{access: {{mode: errors}}}}
routes:
  - name: api
    match: {{path_prefix: /echo}}
    rate_limit:
      - {{name: per-ip, limit: 1000000, window: 1m}}
"""


@pytest.mark.parametrize("on_error", ["local", "open", "closed"])
async def test_redis_killed_and_restarted_under_load(
    make_gateway: GatewayFactory, redis: RedisServer, on_error: str
) -> None:
    """With Redis killed under load the fallback engages within 1 s, the primary comes back within
    1 s of Redis answering, and the only gateway-made 5xx are the 503s on_error: closed asks for."""
    gw = await make_gateway(policy(redis.url, on_error))
    assert gw.gateway.state is not None
    store = gw.gateway.state.limit_store
    assert isinstance(store, FailoverStore)
    load = Load(gw.proxy + "/echo", clients=4).start()
    try:
        await asyncio.sleep(0.5)
        killed = time.monotonic()
        redis.stop()
        fallback_s = await poll_until(lambda: store.mode == "fallback", within=3)
        await asyncio.sleep(0.8)
        await asyncio.to_thread(redis.start)  # returns once Redis answers PING
        answering = time.monotonic()
        resumed_s = await poll_until(lambda: store.mode == "primary", within=3)
        resumed = time.monotonic()
        await asyncio.sleep(0.5)
    finally:
        outcomes = await load.stop()

    served = [o for o in outcomes if o.status == 200]
    refused = [o for o in outcomes if o.status is not None and o.status >= 500]
    lost = [o for o in outcomes if o.status is None]
    print(
        f"on_error={on_error}: {len(outcomes)} requests, fallback engaged in {fallback_s:.3f} s, "
        f"primary resumed {resumed_s:.3f} s after Redis answered, "
        f"{len(refused)} 5xx, {len(lost)} transport errors"
    )
    assert fallback_s < 1.0
    assert resumed_s < 1.0
    assert not lost
    assert all(o.status in (200, 503) for o in outcomes)
    assert served
    if on_error == "closed":
        assert refused, "closed must refuse while Redis is down"
        assert {o.reason for o in refused} == {"store_unavailable"}
        # Only requests that overlapped the outage were refused.
        assert all(killed <= o.ended and o.started <= resumed for o in refused)
    else:
        assert not refused
    assert answering - killed < 5

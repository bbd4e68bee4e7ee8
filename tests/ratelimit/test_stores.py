"""What each store promises of its own: bounds, atomic scripts, namespaced expiring keys."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from gateway.errors import StoreUnavailable
from gateway.policy.model import Store
from gateway.ratelimit.strategies import Fixed, FixedWindow, SlidingWindow, TokenBucket
from gateway.stores import FailoverStore, MemoryStore, open_store
from gateway.stores.redis import RedisStore
from tests.conftest import RedisServer
from tests.ratelimit.conftest import FakeClock


async def test_the_memory_store_stays_within_its_cap(clock: FakeClock) -> None:
    """A flood of distinct clients never grows the memory store beyond max_keys."""
    store = MemoryStore(max_keys=100)
    strategy = SlidingWindow(5, 60)
    for client in range(5_000):
        await strategy.hit(store, f"rl:{{r|{client}}}", 1, clock.now)
    assert len(store) <= 100


async def test_the_memory_store_evicts_the_least_recently_used(clock: FakeClock) -> None:
    """An active client keeps its counter while idle ones are evicted."""
    store = MemoryStore(max_keys=10)
    strategy = TokenBucket(3, 60)
    await strategy.hit(store, "rl:{r|busy}", 3, clock.now)
    for client in range(50):
        await strategy.hit(store, f"rl:{{r|{client}}}", 1, clock.now)
        await strategy.hit(store, "rl:{r|busy}", 0, clock.now)  # touched: recently used
    assert not (await strategy.hit(store, "rl:{r|busy}", 1, clock.now)).allowed


async def test_expired_entries_are_forgotten(clock: FakeClock) -> None:
    """A counter past its expiry reads as empty and is dropped."""
    store = MemoryStore()
    strategy = FixedWindow(1, Fixed(10))
    await strategy.hit(store, "rl:{r|k}", 1, clock.now)
    clock.advance(3600)
    assert (await strategy.hit(store, "rl:{r|k}", 1, clock.now)).allowed
    assert len(store) == 1


async def test_redis_reloads_its_scripts_after_a_flush(redis: RedisServer) -> None:
    """After SCRIPT FLUSH (or a failover to a fresh replica) decisions go on, counts intact."""
    store = RedisStore(redis.url)
    admin = aioredis.Redis.from_url(redis.url)
    try:
        strategy = SlidingWindow(3, 60)
        assert (await strategy.hit(store, "rl:{r|k}", 2, 1_700_000_000.0)).allowed
        await admin.script_flush()
        decision = await strategy.hit(store, "rl:{r|k}", 1, 1_700_000_000.0)
        assert decision.allowed and decision.remaining == 0
        bucket = TokenBucket(2, 60)
        await admin.script_flush()
        assert (await bucket.hit(store, "rl:{r|t}", 1, 1_700_000_000.0)).remaining == 1
    finally:
        await store.close()
        await admin.aclose()


async def test_redis_keys_are_namespaced_and_expire(redis: RedisServer) -> None:
    """Every key the limiter writes lives under gw: and carries a TTL."""
    store = RedisStore(redis.url)
    admin = aioredis.Redis.from_url(redis.url, decode_responses=True)
    try:
        now = 1_700_000_000.0
        await FixedWindow(5, Fixed(60)).hit(store, "rl:{a|k}", 1, now)
        await SlidingWindow(5, 60).hit(store, "rl:{b|k}", 1, now)
        await TokenBucket(5, 60).hit(store, "rl:{c|k}", 1, now)
        keys = sorted(str(key) for key in await admin.keys("*"))
        assert len(keys) == 3 and all(k.startswith("gw:rl:{") for k in keys)
        for key in keys:
            assert 0 < await admin.pttl(key) <= 120_000
    finally:
        await store.close()
        await admin.aclose()


async def test_a_stopped_redis_raises_store_unavailable(redis: RedisServer) -> None:
    """Connection errors become our StoreUnavailable, with the redis error as its cause."""
    store = RedisStore(redis.url, timeout=0.5)
    try:
        redis.stop()
        with pytest.raises(StoreUnavailable) as caught:
            await SlidingWindow(3, 60).hit(store, "rl:{r|k}", 1, 1_700_000_000.0)
        assert caught.value.__cause__ is not None
    finally:
        redis.start()
        await store.close()


async def test_local_fallback_divides_the_limit_and_switches_back(redis: RedisServer) -> None:
    """With Redis down, each replica counts locally at limit/replicas, then Redis resumes."""
    switches: list[str] = []
    monotonic = FakeClock(0.0)
    store = open_store(
        Store(url=redis.url, on_error="local", replicas=2, retry_interval=5.0),
        on_switch=lambda mode, _error: switches.append(mode),
    )
    assert isinstance(store, FailoverStore)
    store._clock = monotonic  # the retry interval runs on a clock the test moves
    strategy = SlidingWindow(10, 3600)
    now = 1_700_000_000.0
    try:
        assert (await strategy.hit(store, "rl:{r|k}", 1, now)).allowed
        redis.stop()
        admitted = [(await strategy.hit(store, "rl:{r|k}", 1, now)).allowed for _ in range(8)]
        assert admitted == [True] * 5 + [False] * 3
        assert (store.mode, switches) == ("fallback", ["fallback"])
        redis.start()
        assert (await strategy.hit(store, "rl:{r|k}", 1, now)).allowed is False  # not yet retried
        monotonic.advance(5.0)
        decision = await strategy.hit(store, "rl:{r|k}", 1, now)
        assert decision.allowed  # Redis was restarted empty
        assert (store.mode, switches) == ("primary", ["fallback", "primary"])
    finally:
        await store.close()


@pytest.mark.parametrize("on_error", ["open", "closed"])
async def test_open_and_closed_raise_for_the_limiter_to_decide(
    redis: RedisServer, on_error: str
) -> None:
    """Without a local fallback a failed store raises at once, without retrying Redis each time."""
    store = open_store(Store(url=redis.url, on_error=on_error, retry_interval=60.0))
    try:
        redis.stop()
        loop = asyncio.get_running_loop()
        for _ in range(2):
            started = loop.time()
            with pytest.raises(StoreUnavailable):
                await SlidingWindow(3, 60).hit(store, "rl:{r|k}", 1, 1_700_000_000.0)
        assert loop.time() - started < 0.05  # the second failure did not touch the network
    finally:
        redis.start()
        await store.close()


async def test_concurrent_decisions_stay_exact_across_a_script_flush(redis: RedisServer) -> None:
    """Decisions sent together (one pipeline) after SCRIPT FLUSH still admit exactly the limit."""
    store = RedisStore(redis.url)
    admin = aioredis.Redis.from_url(redis.url)
    try:
        strategy = SlidingWindow(10, 60)
        await strategy.hit(store, "rl:{r|warm}", 1, 1_700_000_000.0)
        await admin.script_flush()
        decisions = await asyncio.gather(
            *(strategy.hit(store, "rl:{r|k}", 1, 1_700_000_000.0) for _ in range(25))
        )
        assert [d.allowed for d in decisions].count(True) == 10
    finally:
        await store.close()
        await admin.aclose()


async def test_namespaces_keep_deployments_apart(redis: RedisServer) -> None:
    """Two deployments sharing one Redis under different namespaces never share a counter."""
    team_a, team_b = RedisStore(redis.url, namespace="a"), RedisStore(redis.url, namespace="b")
    try:
        strategy = FixedWindow(1, Fixed(60))
        assert (await strategy.hit(team_a, "rl:{r|k}", 1, 1_700_000_000.0)).allowed
        assert (await strategy.hit(team_b, "rl:{r|k}", 1, 1_700_000_000.0)).allowed
        assert not (await strategy.hit(team_a, "rl:{r|k}", 1, 1_700_000_000.0)).allowed
    finally:
        await team_a.close()
        await team_b.close()


async def test_a_late_redis_reply_raises_and_the_next_decision_goes_through(
    redis: RedisServer,
) -> None:
    """A decision Redis holds past the timeout fails as StoreUnavailable; the next one passes."""
    store = RedisStore(redis.url, timeout=0.1)
    admin = aioredis.Redis.from_url(redis.url)
    strategy = SlidingWindow(5, 60)
    try:
        assert (await strategy.hit(store, "rl:{r|k}", 1, 1_700_000_000.0)).allowed
        await admin.execute_command("CLIENT", "PAUSE", 2000, "ALL")
        try:
            with pytest.raises(StoreUnavailable):
                await strategy.hit(store, "rl:{r|k}", 1, 1_700_000_000.0)
        finally:
            await admin.execute_command("CLIENT", "UNPAUSE")
        assert (await strategy.hit(store, "rl:{r|k}", 1, 1_700_000_000.0)).allowed
    finally:
        await store.close()
        await admin.aclose()


def test_script_errors_keep_their_kind() -> None:
    """NOSCRIPT (reloaded) and READONLY (reconnected) keep redis-py's classes; others are plain
    ResponseErrors."""
    from redis.exceptions import NoScriptError, ReadOnlyError, ResponseError

    from gateway.stores.redis import _error

    missing = _error("NOSCRIPT No matching script.")
    demoted = _error("READONLY You can't write against a read only replica.")
    broken = _error("ERR user_script:1: oops")
    assert isinstance(missing, NoScriptError)
    assert isinstance(demoted, ReadOnlyError)
    assert type(broken) is ResponseError


async def test_decisions_waiting_on_a_silent_redis_fail_together() -> None:
    """Twenty decisions against a Redis that accepts connections and never answers all fail
    as StoreUnavailable within about one timeout, not one timeout after another."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisStore(f"redis://127.0.0.1:{port}/0", timeout=0.25)
    strategy = SlidingWindow(5, 60)

    async def decide(n: int) -> float:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await strategy.hit(store, f"rl:{{r|k{n}}}", 1, 1_700_000_000.0)
        return time.monotonic() - started

    try:
        waited = await asyncio.gather(*(decide(n) for n in range(20)))
    finally:
        await store.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
    assert max(waited) < 1.0, sorted(waited)
    assert len(accepted) <= 2

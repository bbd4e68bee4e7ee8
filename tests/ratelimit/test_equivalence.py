"""The Lua scripts and the memory store decide alike: same requests, same answers, exactly."""

from __future__ import annotations

import random

import pytest

from gateway.ratelimit.strategies import (
    Calendar,
    Concurrency,
    Fixed,
    FixedWindow,
    SlidingWindow,
    Strategy,
    TokenBucket,
)
from gateway.stores.memory import MemoryStore
from gateway.stores.redis import RedisStore
from tests.conftest import RedisServer


def strategies() -> list[Strategy]:
    from zoneinfo import ZoneInfo

    return [
        FixedWindow(7, Fixed(10)),
        SlidingWindow(7, 10),
        TokenBucket(7, 10, burst=3),
        FixedWindow(20, Calendar("day", ZoneInfo("America/New_York"))),
        # A lease longer than the run: memory expires in the test's time, Redis in real time.
        Concurrency(4, 100_000),
    ]


@pytest.mark.parametrize("seed", [pytest.param(seed, id=f"seed-{seed}") for seed in range(4)])
async def test_memory_and_redis_give_identical_decisions(redis: RedisServer, seed: int) -> None:
    """A random run of requests (costs, time steps, scales) gets the same Decision from both."""
    rng = random.Random(seed)
    memory, shared = MemoryStore(), RedisStore(redis.url)
    try:
        now = 1_700_000_000.0 + rng.random() * 86_400
        for step in range(300):
            now += rng.choice([0.0, 0.0, 0.01, 0.3, 1.7, 4.0, 11.0])
            cost = rng.choice([1, 1, 1, 2, 5])
            scale = rng.choice([1.0, 1.0, 0.5])
            for index, strategy in enumerate(strategies()):
                key = f"rl:{{s{index}|k}}"
                expected = await strategy.hit(memory, key, cost, now, scale)
                actual = await strategy.hit(shared, key, cost, now, scale)
                assert actual == expected, (step, type(strategy).__name__)
                if isinstance(strategy, Concurrency) and rng.random() < 0.4:
                    await strategy.release(memory, key, 1)
                    await strategy.release(shared, key, 1)
    finally:
        await shared.close()


@pytest.mark.parametrize("seed", [pytest.param(seed, id=f"seed-{seed}") for seed in range(2)])
async def test_the_called_memory_path_decides_as_the_awaited_one(seed: int) -> None:
    """`decide` (the limiter's fast path) gives every Decision `hit` gives, step by step."""
    rng = random.Random(seed)
    called, awaited = MemoryStore(), MemoryStore()
    now = 1_700_000_000.0 + rng.random() * 86_400
    for step in range(300):
        now += rng.choice([0.0, 0.0, 0.01, 0.3, 1.7, 4.0, 11.0])
        cost = rng.choice([1, 1, 1, 2, 5])
        scale = rng.choice([1.0, 1.0, 0.5])
        for index, strategy in enumerate(strategies()):
            key = f"rl:{{s{index}|k}}"
            expected = await strategy.hit(awaited, key, cost, now, scale)
            assert strategy.decide(called, key, cost, now, scale) == expected, step
            if isinstance(strategy, Concurrency) and rng.random() < 0.4:
                await strategy.release(called, key, 1)
                await strategy.release(awaited, key, 1)


RULE_SETS = [
    pytest.param([{"name": "one", "limit": 3, "window": "10s"}], id="one-rule"),
    pytest.param(
        [{"name": "trial", "limit": 2, "window": "10s", "mode": "shadow"}], id="shadow-rule"
    ),
    pytest.param(
        [
            {"name": "hourly", "limit": 5, "window": "1h", "algorithm": "fixed_window"},
            {"name": "burst", "limit": 2, "window": "10s", "algorithm": "token_bucket"},
            {"name": "quiet", "limit": 1, "window": "10s", "headers": "none"},
            {"name": "watch", "limit": 1, "window": "10s", "mode": "shadow"},
        ],
        id="several-rules",
    ),
]


@pytest.mark.parametrize("rules", RULE_SETS)
async def test_the_limiter_s_called_path_gives_the_awaited_verdicts(
    rules: list[dict[str, object]],
) -> None:
    """`decide_now` on the memory store gives `check`'s verdicts, outcomes and headline alike."""
    from gateway.policy.ratelimit import RateLimitRule
    from gateway.ratelimit.identity import RequestFacts
    from gateway.ratelimit.limiter import RouteLimiter

    now = [1_700_000_000.0]
    limiter = RouteLimiter(
        [RateLimitRule.model_validate(rule) for rule in rules], clock=lambda: now[0]
    )
    called, awaited = MemoryStore(), MemoryStore()
    for step in range(12):
        now[0] += 0.7 * (step % 3)
        facts = RequestFacts("api", f"192.0.2.{step % 2}", "GET", "/x", {})
        expected = await limiter.check(awaited, facts)
        actual = limiter.decide_now(called, facts)
        assert actual == expected, step

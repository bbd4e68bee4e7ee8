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

"""Fixtures of the rate-limit tests: a clock the tests move, and every store kind."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.stores.base import LimitStore
from gateway.stores.memory import MemoryStore
from gateway.stores.redis import RedisStore


class FakeClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[LimitStore]:
    """Each store kind in turn: the same behaviour must hold on all of them."""
    if request.param == "memory":
        yield MemoryStore()
        return
    server = request.getfixturevalue("redis")
    redis_store = RedisStore(server.url)
    yield redis_store
    await redis_store.close()


@pytest.fixture(params=["memory", "redis"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The policy's store.url for each store kind."""
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("redis").url
    return url

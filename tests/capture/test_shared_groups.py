"""Groups shared by replicas through a real redis-server, and what happens when it is down."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.capture.service import CaptureService
from gateway.observability.metrics import GatewayMetrics
from gateway.policy.errors import ErrorsPolicy
from tests.capture.test_processors import _event
from tests.conftest import RedisServer


@pytest.fixture
async def replicas(redis: RedisServer) -> AsyncIterator[list[CaptureService]]:
    """Two capture services, as two gateway replicas would run, on one Redis."""
    services = [
        CaptureService(ErrorsPolicy(max_groups=2), GatewayMetrics(), store_url=redis.url)
        for _ in range(2)
    ]
    for service in services:
        await service.start()
    yield services
    for service in services:
        await service.stop()


async def test_replicas_count_into_the_same_groups(replicas: list[CaptureService]) -> None:
    """Three events on one replica and two on the other make one shared group of five."""
    first, second = replicas
    for service, count in ((first, 3), (second, 2)):
        for _ in range(count):
            service.submit(_event(route="orders"))
        await service.flush()
    groups, source = await second.group_snapshot()
    assert source == "redis"
    assert [(g["route"], g["reason"], g["count"]) for g in groups] == [
        ("orders", "upstream_5xx", 5)
    ]
    assert groups[0]["first_seen"] <= groups[0]["last_seen"]
    assert first.groups.snapshot()[0]["count"] == 3  # each replica still knows its own share


async def test_shared_groups_are_bounded(replicas: list[CaptureService]) -> None:
    """Past max_groups, the least recently seen shared group and its hash are removed."""
    service = replicas[0]
    for route in ("a", "b", "c"):
        service.submit(_event(route=route))
        await service.flush()
    groups, _ = await service.group_snapshot()
    assert sorted(g["route"] for g in groups) == ["b", "c"]


async def test_redis_down_falls_back_to_local_groups(
    replicas: list[CaptureService], redis: RedisServer
) -> None:
    """With Redis gone, events are still grouped locally and the admin view says so."""
    service = replicas[0]
    redis.stop()
    service.submit(_event(route="orders"))
    await service.flush()
    groups, source = await service.group_snapshot()
    assert source == "memory"
    assert groups[0]["count"] == 1

"""The health port: liveness, readiness gated by declared dependencies, and the detailed view."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import GatewayFactory, RunningGateway, free_port
from tests.ops.conftest import eventually, scrape, value


async def get_json(client: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with client.get(url) as response:
        return response.status, await response.json()


class TcpDependency:
    """A real listening socket that can be taken down and brought back on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server: asyncio.Server | None = None

    async def up(self) -> None:
        async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        self.server = await asyncio.start_server(accept, "127.0.0.1", self.port)

    async def down(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        self.server = None


@pytest.fixture
async def tcp_dependency() -> AsyncIterator[TcpDependency]:
    dependency = TcpDependency()
    await dependency.up()
    yield dependency
    if dependency.server is not None:
        await dependency.down()


HEALTHY = web.AppKey("healthy", list[bool])


@pytest.fixture
async def http_dependency() -> AsyncIterator[TestServer]:
    """A real aiohttp app whose /ping answers 200 or 503 as the test decides."""

    async def ping(request: web.Request) -> web.Response:
        return web.Response(status=200 if request.app[HEALTHY][0] else 503)

    app = web.Application()
    app[HEALTHY] = [True]
    app.router.add_get("/ping", ping)
    server = TestServer(app)
    await server.start_server()
    yield server
    await server.close()


def checks_policy(*checks: str) -> str:
    return "health:\n  checks:\n" + "".join(f"    - {c}\n" for c in checks) + ROUTES


ROUTES = """
routes:
  - name: default
    match: {path_prefix: /}
"""


async def test_livez_and_readyz_answer_ok_when_nothing_is_declared(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """With no dependency declared, a started gateway is alive and ready."""
    gw = await make_gateway(ROUTES)
    assert await get_json(client, gw.url("health", "/livez")) == (200, {"status": "ok"})
    assert await get_json(client, gw.url("health", "/readyz")) == (200, {"status": "ok"})


@pytest.mark.parametrize("up", [True, False], ids=["dependency-up", "dependency-down"])
async def test_readyz_is_right_as_soon_as_the_gateway_has_started(
    make_gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    tcp_dependency: TcpDependency,
    up: bool,
) -> None:
    """The first probe runs during start-up, so /readyz needs no probe interval to be right."""
    if not up:
        await tcp_dependency.down()
    gw = await make_gateway(
        checks_policy(
            f'{{name: db, type: tcp, target: "127.0.0.1:{tcp_dependency.port}", '
            "required: true, interval: 1h}"
        )
    )
    status, body = await get_json(client, gw.url("health", "/readyz"))
    if up:
        assert (status, body) == (200, {"status": "ok"})
    else:
        assert (status, body) == (503, {"status": "fail", "reasons": ["dependency db is down"]})


async def test_required_tcp_dependency_gates_readyz_as_it_goes_down_and_up(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, tcp_dependency: TcpDependency
) -> None:
    """A required dependency going away turns /readyz 503, and its return turns it 200 again."""
    gw = await make_gateway(
        checks_policy(
            f'{{name: db, type: tcp, target: "127.0.0.1:{tcp_dependency.port}", '
            "required: true, interval: 50ms, timeout: 500ms}"
        )
    )
    readyz = gw.url("health", "/readyz")

    async def ready_is(expected: int) -> bool:
        return (await get_json(client, readyz))[0] == expected

    assert await ready_is(200)
    await tcp_dependency.down()
    await eventually(lambda: ready_is(503))
    status, body = await get_json(client, gw.url("health", "/health"))
    assert status == 503
    db = body["components"]["db"]
    assert (db["status"], db["type"], db["required"]) == ("fail", "tcp", True)
    assert db["error"] == "Connection refused"
    samples = await scrape(client, gw.url("metrics", "/metrics"))
    assert value(samples, "gateway_dependency_up", dependency="db") == 0

    await tcp_dependency.up()
    await eventually(lambda: ready_is(200))
    _, body = await get_json(client, gw.url("health", "/health"))
    assert body["components"]["db"]["status"] == "ok"
    assert body["components"]["db"]["error"] is None
    samples = await scrape(client, gw.url("metrics", "/metrics"))
    assert value(samples, "gateway_dependency_up", dependency="db") == 1


async def test_optional_http_dependency_shows_in_health_but_never_gates_readyz(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, http_dependency: TestServer
) -> None:
    """A failing optional HTTP dependency is reported with its status, /readyz stays 200."""
    gw = await make_gateway(
        checks_policy(
            f'{{name: search, type: http, target: "{http_dependency.make_url("/ping")}", '
            "interval: 50ms}"
        )
    )
    health = gw.url("health", "/health")
    _, body = await get_json(client, health)
    search = body["components"]["search"]
    assert (search["status"], search["type"], search["required"]) == ("ok", "http", False)
    assert search["latency_ms"] > 0

    http_dependency.app[HEALTHY][0] = False

    async def reported_down() -> bool:
        return (await get_json(client, health))[1]["components"]["search"]["status"] == "fail"

    await eventually(reported_down)
    status, body = await get_json(client, health)
    assert status == 200
    assert body["components"]["search"]["error"] == "HTTP 503"
    assert (await get_json(client, gw.url("health", "/readyz")))[0] == 200


async def test_required_http_dependency_that_stops_listening_gates_readyz(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, http_dependency: TestServer
) -> None:
    """An HTTP dependency whose server is stopped is down; /readyz names it."""
    gw = await make_gateway(
        checks_policy(
            f'{{name: api, type: http, target: "{http_dependency.make_url("/ping")}", '
            "required: true, interval: 50ms}"
        )
    )
    readyz = gw.url("health", "/readyz")
    assert (await get_json(client, readyz))[0] == 200
    await http_dependency.close()

    async def unready() -> bool:
        return (await get_json(client, readyz)) == (
            503,
            {"status": "fail", "reasons": ["dependency api is down"]},
        )

    await eventually(unready)


async def test_health_shows_policy_process_and_system(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """/health carries the policy generation and hash, uptime, process and system figures."""
    gw: RunningGateway = await make_gateway(ROUTES)
    status, body = await get_json(client, gw.url("health", "/health"))
    assert status == 200
    assert body["status"] == "ok"
    assert body["draining"] is False
    policy = body["components"]["policy"]
    assert policy["generation"] == 1
    assert len(policy["sha256"]) == 64
    assert body["uptime_s"] >= 0
    assert body["process"]["rss_bytes"] > 0
    assert body["process"]["open_fds"] > 0
    assert set(body["system"]) == {
        "cpu_percent",
        "memory_percent",
        "memory_available_bytes",
        "disk_percent",
    }


async def test_a_blocked_event_loop_shows_as_lag_in_health_and_metrics(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """Blocking the loop for 0.35 s shows as event-loop lag in /health and in the gauge."""
    gw = await make_gateway(ROUTES)
    health = gw.url("health", "/health")
    _, body = await get_json(client, health)
    assert body["components"]["event_loop"]["max_lag_ms"] < 100

    # The gateway runs in this process: block its loop as a CPU-bound handler would.
    asyncio.get_running_loop().call_soon(time.sleep, 0.35)

    async def lag_seen() -> bool:
        return (await get_json(client, health))[1]["components"]["event_loop"]["max_lag_ms"] > 100

    await eventually(lag_seen, within=2.0)
    samples = await scrape(client, gw.url("metrics", "/metrics"))
    lag = value(samples, "gateway_event_loop_lag_seconds")
    assert lag is not None and lag > 0.1

"""Logs: one JSON access line per request as the policy says, every line with its request id."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from gateway.observability.request_log import access_wanted
from tests.conftest import GatewayFactory, free_port
from tests.ops.conftest import LogLines

ROUTES = """
routes:
  - name: echo
    match: {path_prefix: /echo}
  - name: upstream
    match: {path_prefix: /s}
"""


def access_policy(mode: str, sample_rate: float = 0.01) -> str:
    return f"logging: {{access: {{mode: {mode}, sample_rate: {sample_rate}}}}}\n" + ROUTES


async def test_access_line_carries_id_route_status_durations_and_bytes(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, log_lines: LogLines
) -> None:
    """One JSON access line per request: request id, route, status, durations and bytes."""
    gw = await make_gateway(access_policy("on"))
    log_lines.capture()
    headers = {"X-Request-ID": "log-1"}
    async with client.post(gw.proxy + "/echo/x", data=b"abc", headers=headers) as response:
        body = await response.read()
    [line] = log_lines.lines("access")
    assert line["request_id"] == "log-1"
    assert (line["method"], line["path"], line["route"], line["status"]) == (
        "POST",
        "/echo/x",
        "echo",
        200,
    )
    assert line["bytes_in"] == 3
    assert line["bytes_out"] == len(body)
    assert 0 < line["upstream_ms"] <= line["duration_ms"]
    assert line["level"] == "info"


@pytest.mark.parametrize(
    ("mode", "rate", "path", "lines"),
    [
        ("on", 0.01, "/echo/a", 1),
        ("off", 1.0, "/echo/a", 0),
        ("off", 1.0, "/nothing", 0),
        ("errors", 0.01, "/echo/a", 0),
        ("errors", 0.01, "/nothing", 1),
        ("errors", 0.01, "/status/500", 1),
        ("sampled", 0, "/echo/a", 0),
        ("sampled", 1, "/echo/a", 1),
        ("sampled", 1, "/nothing", 1),
    ],
    ids=[
        "on-200",
        "off-200",
        "off-404",
        "errors-200",
        "errors-404",
        "errors-upstream-500",
        "sampled-0",
        "sampled-1",
        "sampled-1-404",
    ],
)
async def test_access_log_mode_decides_which_requests_get_a_line(
    make_gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    log_lines: LogLines,
    mode: str,
    rate: float,
    path: str,
    lines: int,
) -> None:
    """on logs all, off none, errors only >= 400, sampled the given share of requests."""
    gw = await make_gateway(access_policy(mode, rate).replace("/s}", "/status}"))
    log_lines.capture()
    async with client.get(gw.proxy + path) as response:
        await response.read()
    assert len(log_lines.lines("access")) == lines


@pytest.mark.parametrize(
    ("draw", "expected"),
    [(0.0, True), (0.0999, True), (0.1, False), (0.99, False)],
    ids=["lowest", "just-under", "at-rate", "highest"],
)
def test_sampling_keeps_draws_under_the_rate(draw: float, expected: bool) -> None:
    """With sampled at 10%, a request is logged when its random draw falls under 0.1."""
    assert access_wanted("sampled", 0.1, 200, draw=lambda: draw) is expected


async def test_every_line_of_a_failed_request_carries_its_request_id(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, log_lines: LogLines
) -> None:
    """A request to an unreachable upstream logs its rejection and access lines under its id."""
    dead = f"http://127.0.0.1:{free_port()}"
    gw = await make_gateway(
        f"""
        routes:
          - name: dead
            match: {{path_prefix: /dead}}
            upstream: {{url: "{dead}"}}
        """
    )
    log_lines.capture()
    for rid, path in (("rid-dead", "/dead/x"), ("rid-none", "/nowhere")):
        async with client.get(gw.proxy + path, headers={"X-Request-ID": rid}) as response:
            assert response.status in (404, 502)
    lines = log_lines.lines()
    events = {(line["event"], line["request_id"]) for line in lines}
    assert {
        ("rejected", "rid-dead"),
        ("access", "rid-dead"),
        ("rejected", "rid-none"),
        ("access", "rid-none"),
    } <= events
    assert all("request_id" in line for line in lines)


async def test_request_ids_never_leak_between_requests(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, log_lines: LogLines
) -> None:
    """Concurrent requests and requests reusing a keep-alive connection each log their own id."""
    gw = await make_gateway(access_policy("on"))
    log_lines.capture()

    async def call(rid: str | None) -> str:
        headers = {"X-Request-ID": rid} if rid else {}
        async with client.get(gw.proxy + "/slow?seconds=0.05", headers=headers) as response:
            await response.read()
            return response.headers["X-Request-ID"]

    offered = [f"c-{i}" for i in range(10)]
    assert await asyncio.gather(*(call(rid) for rid in offered)) == offered
    # The same pooled connections again, this time offering no id: each gets a fresh one.
    minted = await asyncio.gather(*(call(None) for _ in range(10)))
    assert not set(minted) & set(offered)
    logged = sorted(line["request_id"] for line in log_lines.lines("access"))
    assert logged == sorted(offered + minted)

"""The metrics port: every response counted and timed, with bounded labels only."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.conftest import GatewayFactory
from tests.ops.conftest import eventually, scrape, value

ROUTES = """
routes:
  - name: echo
    match: {path_prefix: /echo}
  - name: upstream
    match: {path_prefix: /s}
"""


async def test_every_family_is_exposed_without_created_series(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """/metrics shows the request, upstream, byte, reload and process families, no *_created."""
    gw = await make_gateway(ROUTES)
    async with client.get(gw.proxy + "/echo/a") as response:
        assert response.status == 200
    async with client.get(gw.url("metrics", "/metrics")) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    assert {
        "gateway_requests_total",
        "gateway_request_duration_seconds_bucket",
        "gateway_upstream_duration_seconds_bucket",
        "gateway_requests_in_flight",
        "gateway_request_bytes_total",
        "gateway_response_bytes_total",
        "gateway_policy_reloads_total",
        "gateway_event_loop_lag_seconds",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "python_info",
    } <= names
    assert not [name for name in names if name.endswith("_created")]
    samples = await scrape(client, gw.url("metrics", "/metrics"))
    assert value(samples, "gateway_policy_reloads_total", result="success") == 0
    assert value(samples, "gateway_policy_reloads_total", result="failure") == 0
    assert value(samples, "gateway_upstream_duration_seconds_count", route="echo") == 1
    assert value(samples, "gateway_request_duration_seconds_count", route="echo") == 1


async def test_openmetrics_is_served_to_a_scraper_that_asks_for_it(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """A scraper sending Accept: application/openmetrics-text gets OpenMetrics, ending in # EOF."""
    gw = await make_gateway(ROUTES)
    headers = {"Accept": "application/openmetrics-text; version=1.0.0"}
    async with client.get(gw.url("metrics", "/metrics"), headers=headers) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await response.text()).endswith("# EOF\n")


async def test_a_rejection_is_counted_like_any_response(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """A 404 for a path no route takes is counted as route unmatched, 4xx, reason no_route."""
    gw = await make_gateway(ROUTES)
    async with client.get(gw.proxy + "/nothing") as response:
        assert response.status == 404
        problem = await response.read()
    samples = await scrape(client, gw.url("metrics", "/metrics"))
    assert (
        value(
            samples, "gateway_requests_total", route="unmatched", method="GET", status_class="4xx"
        )
        == 1
    )
    assert value(samples, "gateway_rejections_total", route="unmatched", reason="no_route") == 1
    assert value(samples, "gateway_request_duration_seconds_count", route="unmatched") == 1
    assert value(samples, "gateway_response_bytes_total", route="unmatched") == len(problem)


async def test_an_unknown_method_is_folded_to_other(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """A WebDAV method outside the known set is counted under method=OTHER, never its own name."""
    gw = await make_gateway(ROUTES)
    async with client.request("PROPFIND", gw.proxy + "/echo/pot") as response:
        assert response.status == 200
        assert (await response.json())["method"] == "PROPFIND"
    samples = await scrape(client, gw.url("metrics", "/metrics"))
    assert (
        value(samples, "gateway_requests_total", route="echo", method="OTHER", status_class="2xx")
        == 1
    )
    assert not [s for s in samples if s.labels.get("method") == "PROPFIND"]


async def test_fifty_distinct_paths_never_become_label_values(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """50 distinct paths, matched or not, add no series: labels are route names only."""
    gw = await make_gateway(ROUTES)

    async def series() -> set[tuple[str, tuple[tuple[str, str], ...]]]:
        samples = await scrape(client, gw.url("metrics", "/metrics"))
        return {
            (s.name, tuple(sorted(s.labels.items())))
            for s in samples
            if s.name.startswith("gateway_")
        }

    for prefix in ("/echo/first", "/first"):
        async with client.get(gw.proxy + prefix) as response:
            await response.read()
    before = await series()
    for i in range(25):
        for path in (f"/echo/user/{i}", f"/unknown/{i}"):
            async with client.get(gw.proxy + path) as response:
                await response.read()
    after = await series()
    assert after == before
    assert not [labels for _, labels in after for _, v in labels if v.startswith("/")]
    samples = await scrape(client, gw.url("metrics", "/metrics"))
    assert value(samples, "gateway_requests_total", route="echo", method="GET", status_class="2xx")
    assert value(samples, "gateway_rejections_total", route="unmatched", reason="no_route") == 26


async def test_bytes_in_and_out_are_counted_per_route(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """A 1000-byte upload and a 5000-byte download are counted as body bytes of their route."""
    gw = await make_gateway(ROUTES)
    async with client.post(gw.proxy + "/echo/up", data=b"x" * 1000) as response:
        assert (await response.json())["body_length"] == 1000
        echoed = len(await response.read())
    async with client.get(gw.proxy + "/sized?bytes=5000") as response:
        assert len(await response.read()) == 5000
    samples = await scrape(client, gw.url("metrics", "/metrics"))
    assert value(samples, "gateway_request_bytes_total", route="echo") == 1000
    assert value(samples, "gateway_response_bytes_total", route="echo") == echoed
    assert value(samples, "gateway_response_bytes_total", route="upstream") == 5000


async def test_in_flight_gauge_counts_requests_being_served(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """While a slow request is being served the in-flight gauge is 1, and 0 once it is done."""
    gw = await make_gateway(ROUTES)
    metrics = gw.url("metrics", "/metrics")

    async def slow() -> int:
        async with client.get(gw.proxy + "/slow?seconds=0.5") as response:
            await response.read()
            return response.status

    task = asyncio.create_task(slow())

    async def in_flight() -> bool:
        return value(await scrape(client, metrics), "gateway_requests_in_flight") == 1

    await eventually(in_flight)
    assert await task == 200
    assert value(await scrape(client, metrics), "gateway_requests_in_flight") == 0

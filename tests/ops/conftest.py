"""Helpers for the operations tests: scraping /metrics, capturing log lines, waiting on a port."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from gateway.observability.logs import configure_logging


async def scrape(client: aiohttp.ClientSession, url: str) -> list[Sample]:
    """Every sample /metrics exposes, parsed with prometheus_client's own parser."""
    async with client.get(url) as response:
        assert response.status == 200
        text = await response.text()
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The value of the one sample with this name and these labels, or None."""
    for sample in samples:
        if sample.name == name and sample.labels == labels:
            return sample.value
    return None


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 3.0, every: float = 0.05
) -> None:
    """Wait until a condition holds on a real server, failing after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"condition not met within {within}s")
        await asyncio.sleep(every)


class LogLines:
    """The JSON log lines written since `capture()` was called."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()

    def capture(self, level: str = "info") -> None:
        # Called after the gateway started: its start configures logging to stdout.
        configure_logging(level, stream=self.buffer)

    def lines(self, event: str | None = None) -> list[dict[str, Any]]:
        parsed = [json.loads(line) for line in self.buffer.getvalue().splitlines() if line]
        return [line for line in parsed if event is None or line.get("event") == event]


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    """Collects log lines in memory; logging goes back to stdout afterwards."""
    lines = LogLines()
    yield lines
    configure_logging()

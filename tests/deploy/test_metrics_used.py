"""Every metric the dashboard and the alert rules query is exported by a running gateway."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import GatewayFactory, RedisServer
from tests.deploy.manifests import ROOT, documents

DASHBOARD = ROOT / "deploy" / "grafana" / "gateway-dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "gateway-rules.yaml"
# Names of the gateway's own families and of prometheus_client's process collector.
METRIC_NAME = re.compile(r"\b(?:gateway|process|python)_[a-z0-9_]+\b")
# `name{label="value", ...}`: the label names a query filters a family on.
SELECTOR = re.compile(r"\b((?:gateway|process)_[a-z0-9_]+)\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
# Added by Prometheus at scrape time (target labels), not by the gateway.
TARGET_LABELS = {"namespace", "job", "pod", "instance", "service"}
Scrape = Callable[[], Awaitable[str]]

# One route per capability, so that a handful of requests gives every family a sample.
POLICY = """
store: {url: "REDIS_URL", on_error: local, timeout: 100ms, retry_interval: 1m}
health:
  checks:
    - {name: upstream, type: tcp, target: "UPSTREAM_HOST_PORT", interval: 100ms}
errors:
  delivery: {flush_interval: 50ms, alert_interval: 50ms}
  sinks:
    - {type: webhook, name: hook, url: "UPSTREAM_URL/echo", retries: 0}
  alerts:
    - {name: breaker-open, when: "rate(circuit_open) > 1/min", sinks: [hook]}
  drop:
    - {reason: bulkhead_full}
routes:
  - name: limited
    match: {path_prefix: /echo/limited}
    rate_limit:
      - {name: per-ip, key: [client_ip], limit: 1, window: 1m,
         adaptive: {cpu_above: 99%, source: process}}  # a factor every second
  - name: validated
    match: {path_prefix: /echo/validated}
    validation:
      max_body: 64
      json: {max_depth: 4}
      sanitize_html: {fields: ["$.comment"]}
  - name: attacked
    match: {path_prefix: /echo/attacked}
    validation:
      attacks: {mode: block, crs: {rules_dir: "CRS_RULES", time_budget: 30s}}  # a verdict
  - name: hurried
    match: {path_prefix: /echo/hurried}
    validation:
      attacks: {mode: block, crs: {rules_dir: "CRS_RULES", time_budget: 0s, on_timeout: pass}}
  - name: guarded
    match: {path_prefix: /status/}
    circuit_breaker: {min_calls: 2, failure_rate: 50%, open_for: 1m}
    retry: {attempts: 3, backoff: {base: 1ms, max: 1ms}}
  - name: bulkhead
    match: {path_prefix: /slow}
    max_concurrent: 1
  - name: default
    match: {path_prefix: /}
"""


def used_names(text: str) -> set[str]:
    return set(METRIC_NAME.findall(text))


def dashboard_expressions() -> Iterator[str]:
    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in {"expr", "query", "definition"} and isinstance(value, str):
                    yield value
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    yield from walk(json.loads(DASHBOARD.read_text()))


def rule_texts() -> Iterator[str]:
    for document in documents(RULES):
        for group in document["spec"]["groups"]:
            for rule in group["rules"]:
                yield rule["expr"]
                yield from rule.get("annotations", {}).values()


def exported(text: str) -> tuple[set[str], set[str]]:
    """(names a query may use for the declared families, names that have samples)."""
    declared: set[str] = set()
    sampled: set[str] = set()
    for family in text_string_to_metric_families(text):
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
            "summary": ("", "_sum", "_count"),
        }.get(family.type, ("",))
        declared.update(family.name + suffix for suffix in suffixes)
        sampled.update(sample.name for sample in family.samples)
    return declared, sampled


def sample_labels(text: str) -> dict[str, set[str]]:
    """Label names seen on each sample name."""
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    return labels


async def exercise(session: aiohttp.ClientSession, proxy: str) -> None:
    """Requests that make each capability count something."""
    for _ in range(2):  # the second is over the limit: 429
        async with session.get(f"{proxy}/echo/limited") as response:
            await response.read()
    sanitize = {"comment": "<script>alert(1)</script>hi"}
    async with session.post(f"{proxy}/echo/validated", json=sanitize) as response:
        assert response.status == 200
    async with session.post(f"{proxy}/echo/validated", data=b"x" * 100) as response:
        assert response.status == 413
    sqli = {"q": "1 UNION SELECT password FROM users--"}
    async with session.post(f"{proxy}/echo/attacked", json=sqli) as response:
        assert response.status == 403
    async with session.get(f"{proxy}/echo/hurried?q=1") as response:
        assert response.status == 200  # the scan ran out of time and on_timeout passed it
    for _ in range(4):  # 503s retried, then the breaker opens and refuses
        async with session.get(f"{proxy}/status/503") as response:
            await response.read()

    async def slow() -> int:
        async with session.get(f"{proxy}/slow?seconds=0.3") as response:
            await response.read()
            return response.status

    assert 503 in await asyncio.gather(slow(), slow())  # the bulkhead holds one
    async with session.get(f"{proxy}/nothing-here") as response:
        await response.read()


@pytest.fixture
async def scrape(
    make_gateway: GatewayFactory,
    upstream: TestServer,
    redis: RedisServer,
    crs_rules: Path,
    client: aiohttp.ClientSession,
) -> Scrape:
    """Scrapes a gateway that has served every kind of request and lost its Redis."""
    url = str(upstream.make_url("")).rstrip("/")
    body = POLICY.replace("UPSTREAM_HOST_PORT", f"{upstream.host}:{upstream.port}")
    body = body.replace("UPSTREAM_URL", url).replace("REDIS_URL", redis.url)
    body = body.replace("CRS_RULES", str(crs_rules))
    running = await make_gateway(body)
    await exercise(client, running.proxy)
    redis.stop()  # the next limited request fails over to the local store
    async with client.get(f"{running.proxy}/echo/limited") as response:
        await response.read()

    async def metrics() -> str:
        async with client.get(running.url("metrics", "/metrics")) as response:
            assert response.status == 200
            return await response.text()

    return metrics


def test_every_dashboard_and_rule_query_names_a_metric() -> None:
    """The files do query gateway metrics (the extraction below is not vacuous)."""
    assert len(used_names("\n".join(dashboard_expressions()))) >= 25
    assert len(used_names("\n".join(rule_texts()))) >= 8


async def test_dashboard_and_rules_use_only_exported_metrics(scrape: Scrape) -> None:
    """Each metric name in the dashboard and the alert rules is exported, with samples."""
    used = used_names("\n".join([*dashboard_expressions(), *rule_texts()]))
    # Capture delivery, health checks and the adaptive sampler (each second) run in the
    # background: scrape until every family has a sample, or give up after a few seconds.
    deadline = time.monotonic() + 5
    while True:
        declared, sampled = exported(await scrape())
        if not used - sampled or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert used - declared == set(), "queried but not exported by the gateway"
    assert used - sampled == set(), "exported, but no sample after exercising every capability"


async def test_dashboard_and_rules_filter_on_labels_the_metrics_have(scrape: Scrape) -> None:
    """A label a query filters on (status_class, reason, state, mode...) exists on the metric."""
    labels = sample_labels(await scrape())
    wrong = {
        (name, label)
        for text in [*dashboard_expressions(), *rule_texts()]
        for name, matchers in SELECTOR.findall(text)
        for label in MATCHER.findall(matchers)
        if label not in TARGET_LABELS and label not in labels.get(name, set())
    }
    assert wrong == set()

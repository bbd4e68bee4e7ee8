"""Our lock-free metric families expose exactly what prometheus_client's would."""

from __future__ import annotations

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from gateway.observability import families

BUCKETS = (0.0005, 0.001, 0.01, 0.1, 1, 10)


def _both() -> tuple[CollectorRegistry, CollectorRegistry]:
    return CollectorRegistry(auto_describe=True), CollectorRegistry(auto_describe=True)


def _exposition(registry: CollectorRegistry) -> list[str]:
    """The text format without `_created` series, which the gateway never exports."""
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]


def test_counters_with_and_without_labels_read_the_same() -> None:
    """Labelled and plain counters give prometheus_client's exposition, `_total` included."""
    theirs, ours = _both()
    for module, registry in ((prometheus_client, theirs), (families, ours)):
        plain = module.Counter("demo_events_total", "Events.", registry=registry)
        labelled = module.Counter(
            "demo_calls_total", "Calls.", ["route", "outcome"], registry=registry
        )
        plain.inc()
        plain.inc(2.5)
        labelled.labels("api", "success").inc(3)
        labelled.labels("api", "timeout").inc()
        labelled.labels("api", "success").inc()
    assert _exposition(ours) == _exposition(theirs)


def test_gauges_read_the_same() -> None:
    """inc, dec and set on plain and labelled gauges give prometheus_client's exposition."""
    theirs, ours = _both()
    for module, registry in ((prometheus_client, theirs), (families, ours)):
        plain = module.Gauge("demo_in_flight", "In flight.", registry=registry)
        labelled = module.Gauge("demo_mode", "Mode.", ["store"], registry=registry)
        plain.inc()
        plain.inc()
        plain.dec()
        labelled.labels("primary").set(1)
        labelled.labels("fallback").set(0)
    assert _exposition(ours) == _exposition(theirs)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([0.0001, 0.0005, 0.002, 0.5, 3, 42], id="each-bucket-and-beyond"),
        pytest.param([0.001, 0.001, 1], id="exactly-on-bounds"),
        pytest.param([], id="nothing-observed"),
    ],
)
def test_histograms_read_the_same(values: list[float]) -> None:
    """Buckets (cumulative, a value on a bound counted in it), count and sum match."""
    theirs, ours = _both()
    for module, registry in ((prometheus_client, theirs), (families, ours)):
        histogram = module.Histogram(
            "demo_seconds", "Latency.", ["route"], buckets=BUCKETS, registry=registry
        )
        child = histogram.labels("api")
        for value in values:
            child.observe(value)
    assert _exposition(ours) == _exposition(theirs)


def test_wrong_label_count_and_negative_counts_are_refused() -> None:
    """A labelling bug fails loudly, as with prometheus_client."""
    counter = families.Counter("demo_total", "Demo.", ["route"])
    with pytest.raises(ValueError, match="takes labels"):
        counter.labels("a", "b")
    with pytest.raises(ValueError, match="non-negative"):
        counter.labels("a").inc(-1)
    with pytest.raises(ValueError, match=r"use \.labels"):
        counter.inc()

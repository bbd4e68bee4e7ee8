"""Counter, gauge and histogram families updated without a lock, for the event loop's own use.

prometheus_client guards every update with a threading.Lock behind three Python calls (~1.3 µs
for a Counter.inc here), and the proxy updates a dozen children per request. Every update and
every scrape of the gateway happens on its one event-loop thread, so the lock buys nothing:
these families keep prometheus_client's shape (`labels(...)` then `inc`, `dec`, `set`,
`observe`) and its exposition, and the registry reads them through `collect()`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

_MAX_CHILDREN = 100_000
"""Label values are bounded; the cap guards against a labelling bug all the same."""


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.value += amount


class GaugeChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = float(value)


class HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        # The first bucket whose bound is at or above the value (le means <=). Durations sit
        # in the first few buckets, where this loop is done before a call to bisect would be.
        index = 0
        for bound in self.bounds:
            if amount <= bound:
                break
            index += 1
        self.counts[index] += 1
        self.sum += amount


Child = TypeVar("Child", CounterChild, GaugeChild, HistogramChild)


class Family(Collector, Generic[Child]):
    """Children by label values; the family without labels is its own one child."""

    kind = ""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], Child] = {}
        self._solo: Child | None = None if self.labelnames else self._new()
        if registry is not None:
            registry.register(self)

    def _new(self) -> Child:
        raise NotImplementedError

    def labels(self, *values: str) -> Child:
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
            child = self._new()
            if len(self._children) < _MAX_CHILDREN:
                self._children[values] = child
        return child

    def only(self) -> Child:
        """The one child of a family without labels (bound once where it is updated often)."""
        if self._solo is None:
            raise ValueError(f"{self.name} has labels {self.labelnames}: use .labels()")
        return self._solo

    def _series(self) -> Iterable[tuple[dict[str, str], Child]]:
        if self._solo is not None:
            yield {}, self._solo
        for values, child in self._children.items():
            yield (
                {name: str(value) for name, value in zip(self.labelnames, values, strict=True)},
                child,
            )

    def describe(self) -> Iterable[Metric]:
        return [Metric(self._metric_name(), self.documentation, self.kind)]

    def _metric_name(self) -> str:
        return self.name


class Counter(Family[CounterChild]):
    kind = "counter"

    def _new(self) -> CounterChild:
        return CounterChild()

    def inc(self, amount: float = 1.0) -> None:
        self.only().inc(amount)

    def _metric_name(self) -> str:
        return self.name.removesuffix("_total")  # the exposition adds it back to each sample

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self._metric_name(), self.documentation, self.kind)
        for labels, child in self._series():
            metric.add_sample(self._metric_name() + "_total", labels, child.value)
        return [metric]


class Gauge(Family[GaugeChild]):
    kind = "gauge"

    def _new(self) -> GaugeChild:
        return GaugeChild()

    def inc(self, amount: float = 1.0) -> None:
        self.only().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self.only().dec(amount)

    def set(self, value: float) -> None:
        self.only().set(value)

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self.name, self.documentation, self.kind)
        for labels, child in self._series():
            metric.add_sample(self.name, labels, child.value)
        return [metric]


class Histogram(Family[HistogramChild]):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.bounds = tuple(sorted(float(b) for b in buckets if b != float("inf")))
        # Bounds spelled as prometheus_client spells them (0.0005, 1.0, +Inf); it is untyped.
        spell = floatToGoString
        self._le = [spell(b) for b in self.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        super().__init__(name, documentation, labelnames, registry=registry)

    def _new(self) -> HistogramChild:
        return HistogramChild(self.bounds)

    def observe(self, amount: float) -> None:
        self.only().observe(amount)

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self.name, self.documentation, self.kind)
        for labels, child in self._series():
            total = 0
            for le, count in zip(self._le, child.counts, strict=True):
                total += count
                metric.add_sample(self.name + "_bucket", {**labels, "le": le}, total)
            metric.add_sample(self.name + "_count", labels, total)
            metric.add_sample(self.name + "_sum", labels, child.sum)
        return [metric]

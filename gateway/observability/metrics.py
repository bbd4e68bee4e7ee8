"""Every Prometheus metric family the gateway exports, declared once, on its own registry.

Label values are bounded: route names come from the policy, methods are folded to a known set,
statuses to their class, and reasons to the vocabulary of gateway.errors. No raw path or client
ever becomes a label.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from gateway.policy.model import HTTP_METHODS

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def method_label(method: str) -> str:
    """Fold arbitrary client methods onto a bounded label set."""
    return method if method in HTTP_METHODS else "OTHER"


def status_class(status: int) -> str:
    return f"{status // 100}xx"


class GatewayMetrics:
    """The gateway's metric families; one instance per process, passed where it is needed."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        r = self.registry

        # --- the proxy -------------------------------------------------------------------
        self.requests = Counter(
            "gateway_requests_total",
            "Requests answered, by route, method and status class.",
            ["route", "method", "status_class"],
            registry=r,
        )
        self.request_duration = Histogram(
            "gateway_request_duration_seconds",
            "Time from request to the end of the response.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_duration = Histogram(
            "gateway_upstream_duration_seconds",
            "Time until the upstream's response headers.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "gateway_requests_in_flight", "Requests being served now.", registry=r
        )
        self.bytes_in = Counter(
            "gateway_request_bytes_total",
            "Request body bytes received from clients.",
            ["route"],
            registry=r,
        )
        self.bytes_out = Counter(
            "gateway_response_bytes_total",
            "Response body bytes sent to clients.",
            ["route"],
            registry=r,
        )
        self.rejections = Counter(
            "gateway_rejections_total",
            "Requests answered by the gateway itself (problem+json), by route and reason.",
            ["route", "reason"],
            registry=r,
        )

        # --- the policy ------------------------------------------------------------------
        self.policy_reloads = Counter(
            "gateway_policy_reloads_total",
            "Policy reloads, by result (success, failure).",
            ["result"],
            registry=r,
        )
        self.policy_generation = Gauge(
            "gateway_policy_generation", "Generation of the policy now serving.", registry=r
        )

        # --- health ----------------------------------------------------------------------
        self.dependency_up = Gauge(
            "gateway_dependency_up",
            "1 while a health dependency check passes.",
            ["dependency"],
            registry=r,
        )
        self.event_loop_lag = Gauge(
            "gateway_event_loop_lag_seconds", "Last measured event-loop scheduling lag.", registry=r
        )

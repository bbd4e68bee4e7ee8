"""Every Prometheus metric family the gateway exports, declared once, on its own registry.

Label values are bounded: route names come from the policy, methods are folded to a known set,
statuses to their class, and reasons to the vocabulary of gateway.errors. No raw path or client
ever becomes a label.
"""

from __future__ import annotations

import time
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
)

from gateway.observability.families import Counter, CounterChild, Gauge, Histogram
from gateway.policy.model import HTTP_METHODS

perf_counter: Final = time.perf_counter
"""The request path's timer. A Final: compiled code, here and in the modules that import it,
reads it as a C static, where `from time import perf_counter` would be a lookup in the
importing module's dict on each use."""

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def method_label(method: str) -> str:
    """Fold arbitrary client methods onto a bounded label set."""
    return method if method in HTTP_METHODS else "OTHER"


def status_class(status: int) -> str:
    return f"{status // 100}xx"


class RouteMetrics:
    """One route's children of the per-request families, bound once and reused.

    `.labels()` builds a tuple and looks up a dict on every call; the proxy resolves a route's
    children once and keeps them here.
    """

    __slots__ = (
        "_by_method_status",
        "_families",
        "bytes_in",
        "bytes_out",
        "duration",
        "name",
        "upstream_duration",
    )

    def __init__(self, families: GatewayMetrics, name: str) -> None:
        self.name = name
        self._families = families
        self.duration = families.request_duration.labels(name)
        self.upstream_duration = families.upstream_duration.labels(name)
        self.bytes_in = families.bytes_in.labels(name)
        self.bytes_out = families.bytes_out.labels(name)
        self._by_method_status: dict[tuple[str, int], CounterChild] = {}

    def requests(self, method: str, status: int) -> CounterChild:
        """The `gateway_requests_total` child for this method and status class."""
        key = (method, status // 100)
        child = self._by_method_status.get(key)
        if child is None:
            child = self._families.requests.labels(
                self.name, method_label(method), status_class(status)
            )
            # Unknown methods all fold onto OTHER, but each spelling would be a key: cap them.
            if len(self._by_method_status) < 256:
                self._by_method_status[key] = child
        return child


class GatewayMetrics:
    """The gateway's metric families; one instance per process, passed where it is needed."""

    def route(self, name: str) -> RouteMetrics:
        """The route's bound children; route names come from the policy, so they are few."""
        bound = self._routes.get(name)
        if bound is None:
            bound = self._routes[name] = RouteMetrics(self, name)
        return bound

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        r = self.registry
        self._routes: dict[str, RouteMetrics] = {}

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
        self.requests_in_flight = self.in_flight.only()
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

        # --- circuit breaking --------------------------------------------------------------
        self.upstream_calls = Counter(
            "gateway_upstream_calls_total",
            "Tries sent (or refused) to the upstream, by route and outcome: success, "
            "failure_status (5xx or listed in failure_on), upstream_connect_error, "
            "upstream_timeout, circuit_open, bulkhead_full.",
            ["route", "outcome"],
            registry=r,
        )
        self.upstream_retries = Counter(
            "gateway_upstream_retries_total",
            "Retries sent, by route and what triggered them (a status or an error kind).",
            ["route", "reason"],
            registry=r,
        )
        self.upstream_retries_denied = Counter(
            "gateway_upstream_retries_denied_total",
            "Retries wanted but not sent, by route and why: retry_budget_exhausted, "
            "retry_after_too_long, deadline, circuit_open.",
            ["route", "reason"],
            registry=r,
        )
        self.breaker_transitions = Counter(
            "gateway_circuit_breaker_transitions_total",
            "Circuit breaker state changes.",
            ["breaker", "from_state", "to_state"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "gateway_circuit_breaker_state",
            "1 for the state each breaker is in, 0 for the others.",
            ["breaker", "state"],
            registry=r,
        )
        self.breaker_rejections = Counter(
            "gateway_circuit_breaker_rejections_total",
            "Calls the breaker refused, by mode (shadow: counted but let through).",
            ["breaker", "mode"],
            registry=r,
        )
        self.bulkhead_in_flight = Gauge(
            "gateway_bulkhead_in_flight",
            "Requests holding a bulkhead place, by route.",
            ["route"],
            registry=r,
        )
        self.bulkhead_rejections = Counter(
            "gateway_bulkhead_rejections_total",
            "Requests refused because the route's bulkhead was full.",
            ["route"],
            registry=r,
        )

        # --- rate limiting -----------------------------------------------------------------
        self.ratelimit_decisions = Counter(
            "gateway_ratelimit_decisions_total",
            "Rate-limit rule decisions, by route, rule and outcome: allowed, limited, "
            "shadow_limited, store_error.",
            ["route", "rule", "outcome"],
            registry=r,
        )
        self.ratelimit_store_duration = Histogram(
            "gateway_ratelimit_store_duration_seconds",
            "Time to decide one request's rate limits in the store (all its rules).",
            ["store"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ratelimit_store_mode = Gauge(
            "gateway_ratelimit_store_mode",
            "1 for the mode the rate-limit store is in (primary, fallback), 0 for the other.",
            ["mode"],
            registry=r,
        )
        self.ratelimit_adaptive_factor = Gauge(
            "gateway_ratelimit_adaptive_factor",
            "The factor adaptive throttling applies to a rule's limit (1 = unthrottled).",
            ["route", "rule"],
            registry=r,
        )
        self.ratelimit_store_switches = Counter(
            "gateway_ratelimit_store_switches_total",
            "Rate-limit store switches, by the mode switched to.",
            ["to"],
            registry=r,
        )

        # --- validation --------------------------------------------------------------------
        self.validation_rejections = Counter(
            "gateway_validation_rejections_total",
            "Requests failing a validation check, by route, check and mode (enforce: refused; "
            "shadow: forwarded anyway).",
            ["route", "check", "mode"],
            registry=r,
        )
        self.validation_sanitized_fields = Counter(
            "gateway_validation_sanitized_fields_total",
            "Fields whose HTML the sanitizer changed (shadow mode counts, but forwards as sent).",
            ["route"],
            registry=r,
        )
        self.validation_body_bytes = Counter(
            "gateway_validation_body_bytes_read_total",
            "Request body bytes read into memory for validation.",
            ["route"],
            registry=r,
        )

        # --- attack detection ------------------------------------------------------------
        self.attack_matches = Counter(
            "gateway_attack_matches_total",
            "Requests the CRS flagged, by route, rule family (sqli, xss, lfi, rce, php, java, "
            "protocol, ...) and outcome (blocked, detected: forwarded in detect mode).",
            ["route", "family", "outcome"],
            registry=r,
        )
        self.attack_evaluation = Histogram(
            "gateway_attack_evaluation_seconds",
            "Time the CRS evaluation of one request took.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.attack_failures = Counter(
            "gateway_attack_evaluation_failures_total",
            "CRS evaluations that did not finish (timeout: over the time budget; error), "
            "decided by crs.on_timeout.",
            ["route", "failure"],
            registry=r,
        )

        # --- the policy ------------------------------------------------------------------
        self.policy_reloads = Counter(
            "gateway_policy_reloads_total",
            "Policy reloads, by result (success, failure, unchanged).",
            ["result"],
            registry=r,
        )
        for result in ("success", "failure"):
            self.policy_reloads.labels(result)  # a series at 0 from the start, for rate()
        self.policy_generation = Gauge(
            "gateway_policy_generation", "Generation of the policy now serving.", registry=r
        )

        # --- error capture ---------------------------------------------------------------
        self.error_events = Counter(
            "gateway_error_events_total",
            "Error events captured, by reason (before sampling).",
            ["reason"],
            registry=r,
        )
        self.error_events_discarded = Counter(
            "gateway_error_events_discarded_total",
            "Error events not delivered, by cause (queue_full, drop, sample).",
            ["cause"],
            registry=r,
        )
        self.error_sink_deliveries = Counter(
            "gateway_error_sink_deliveries_total",
            "Batches sent to error sinks, by sink and result (ok, retry, failed, queue_full; "
            "lost: dropped later by the Sentry SDK).",
            ["sink", "result"],
            registry=r,
        )
        self.error_groups = Gauge(
            "gateway_error_groups", "Distinct error groups (fingerprints) held.", registry=r
        )
        self.alerts = Counter(
            "gateway_alerts_total",
            "Alert rule transitions, by rule and state (fired, resolved, suppressed).",
            ["alert", "state"],
            registry=r,
        )

        # --- health ----------------------------------------------------------------------
        self.dependency_up = Gauge(
            "gateway_dependency_up",
            "1 while a health dependency check passes.",
            ["dependency"],
            registry=r,
        )
        self.event_loop_lag = Gauge(
            "gateway_event_loop_lag_seconds",
            "Worst event-loop scheduling lag of the last 10 s.",
            registry=r,
        )

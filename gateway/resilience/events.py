"""Listeners for breaker transitions: one log line each, and the metrics."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.observability.logs import get_logger
from gateway.observability.metrics import GatewayMetrics
from gateway.resilience.breaker import Breaker, State, Transition

log = get_logger("gateway.resilience")


def log_transition(event: Transition) -> None:
    log.warning(
        "circuit_breaker_transition",
        breaker=event.breaker,
        from_state=event.from_state.value,
        to_state=event.to_state.value,
        reason=event.reason,
    )


def set_state_gauge(metrics: GatewayMetrics, breaker: str, state: State) -> None:
    for each in State:
        metrics.breaker_state.labels(breaker, each.value).set(1 if each is state else 0)


@dataclass(frozen=True, slots=True)
class MetricsListener:
    """Counts transitions and moves the state gauge; equal for the same metrics object."""

    metrics: GatewayMetrics

    def __call__(self, event: Transition) -> None:
        self.metrics.breaker_transitions.labels(
            event.breaker, event.from_state.value, event.to_state.value
        ).inc()
        set_state_gauge(self.metrics, event.breaker, event.to_state)


def observe_breaker(breaker: Breaker, metrics: GatewayMetrics) -> None:
    """Attach the metrics listener unless it is there already (a breaker kept on reload)."""
    listener = MetricsListener(metrics)
    if listener not in breaker.listeners:
        breaker.listeners.append(listener)
    set_state_gauge(metrics, breaker.name, breaker.state)

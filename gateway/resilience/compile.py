"""Compiles a route's resilience policy into runtime objects, keeping live state across reloads."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Literal
from urllib.parse import urlsplit

from gateway.errors import CircuitOpen
from gateway.observability.metrics import GatewayMetrics
from gateway.policy.model import Route
from gateway.policy.resilience import CircuitBreaker, Retry
from gateway.resilience.breaker import Breaker, BreakerConfig
from gateway.resilience.bulkhead import Bulkhead
from gateway.resilience.events import log_transition, observe_breaker
from gateway.resilience.retry import Outcome, RetryBudget, RetryPolicy


@dataclass(eq=False, slots=True)
class RouteResilience:
    """What the upstream call of one route goes through: bulkhead, breaker, retries, timeouts."""

    route: str
    breaker: Breaker | None = None
    breaker_def: CircuitBreaker | None = None
    breaker_mode: Literal["enforce", "shadow"] = "enforce"
    failure_on: frozenset[Outcome] = frozenset()
    fallback: type[CircuitOpen] = CircuitOpen
    fallback_retry_after: bool = True
    retry: RetryPolicy | None = None
    retry_def: Retry | None = None
    budget: RetryBudget | None = None
    per_try: float | None = None
    total: float | None = None
    bulkhead: Bulkhead | None = None
    _observed: GatewayMetrics | None = field(default=None, repr=False)

    def observe(self, metrics: GatewayMetrics) -> None:
        """Attach the metrics listener once (GatewayState does, for each policy it serves):
        the compiler runs before metrics are at hand."""
        if self._observed is metrics:
            return
        self._observed = metrics
        if self.breaker is not None:
            observe_breaker(self.breaker, metrics)


@cache
def _fallback_class(status: int) -> type[CircuitOpen]:
    if status == CircuitOpen.status:
        return CircuitOpen
    return type(f"CircuitOpen{status}", (CircuitOpen,), {"status": status})


def _breaker_config(definition: CircuitBreaker) -> BreakerConfig:
    slow = definition.slow_call
    return BreakerConfig(
        window=definition.window.type,
        window_size=definition.window.size,
        min_calls=definition.min_calls,
        failure_rate=definition.failure_rate,
        slow_call_duration=slow.duration if slow else None,
        slow_call_rate=slow.rate if slow else 1.0,
        open_for=definition.open_for,
        half_open_calls=definition.half_open_calls,
    )


def _retry_policy(definition: Retry) -> RetryPolicy:
    return RetryPolicy(
        attempts=definition.attempts,
        on=frozenset(definition.on),
        methods=frozenset(definition.methods),
        base=definition.backoff.base,
        max_backoff=definition.backoff.max,
        jitter=definition.backoff.jitter == "full",
        respect_retry_after=definition.respect_retry_after,
        max_retry_after=definition.max_retry_after,
        buffer_body=definition.buffer_body,
    )


class ResilienceCompiler:
    """One per policy compile: it hands out breakers, new or kept from the previous policy."""

    def __init__(self, previous: Iterable[RouteResilience | None], default_upstream_url: str):
        self._default_url = default_upstream_url
        self._previous = {p.route: p for p in previous if p is not None}
        self._old_breakers: dict[str, tuple[CircuitBreaker, Breaker]] = {
            p.breaker.name: (p.breaker_def, p.breaker)
            for p in self._previous.values()
            if p.breaker is not None and p.breaker_def is not None
        }
        self._new_breakers: dict[str, Breaker] = {}

    def compile(self, route: Route) -> RouteResilience | None:
        breaker_def = route.circuit_breaker
        if breaker_def is not None and breaker_def.mode == "off":
            breaker_def = None
        timeout = route.timeout
        if (breaker_def, route.retry, route.max_concurrent, timeout.per_try, timeout.total) == (
            (None,) * 5
        ):
            return None  # nothing to add: the proxy calls the upstream client directly
        old = self._previous.get(route.name)
        result = RouteResilience(route.name, per_try=timeout.per_try, total=timeout.total)
        if breaker_def is not None:
            result.breaker = self._breaker(route, breaker_def)
            result.breaker_def = breaker_def
            result.breaker_mode = "shadow" if breaker_def.mode == "shadow" else "enforce"
            result.failure_on = frozenset(breaker_def.failure_on)
            result.fallback = _fallback_class(breaker_def.fallback.status)
            result.fallback_retry_after = breaker_def.fallback.retry_after
        if route.retry is not None:
            result.retry = _retry_policy(route.retry)
            result.retry_def = route.retry
            if old is not None and old.retry_def is not None and old.retry_def == route.retry:
                result.budget = old.budget
            else:
                budget = route.retry.budget
                result.budget = RetryBudget(budget.ratio, budget.min_per_second, budget.window)
        if route.max_concurrent is not None:
            spec = route.max_concurrent
            kept = old.bulkhead if old is not None else None
            # Requests in flight release the object they took a place in: keeping it when the
            # definition is unchanged keeps the limit exact across a reload.
            if kept is not None and (kept.limit, kept.queue, kept.max_wait) == (
                spec.limit,
                spec.queue,
                spec.max_wait,
            ):
                result.bulkhead = kept
            else:
                result.bulkhead = Bulkhead(spec.limit, spec.queue, spec.max_wait)
        return result

    def _breaker(self, route: Route, definition: CircuitBreaker) -> Breaker:
        if definition.scope == "upstream":
            url = (route.upstream.url if route.upstream else None) or self._default_url
            name = "upstream:" + urlsplit(url).netloc
        else:
            name = route.name
        if name in self._new_breakers:
            return self._new_breakers[name]
        kept = self._old_breakers.get(name)
        if kept is not None and kept[0] == definition:
            breaker = kept[1]
        else:
            breaker = Breaker(name, _breaker_config(definition), listeners=(log_transition,))
        self._new_breakers[name] = breaker
        return breaker

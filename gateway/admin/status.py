"""What the status page shows: one JSON document, and the history it needs kept server-side.

A sampler reads the gateway's own counters once a second into a ring buffer (five minutes), so
the page can chart request and rejection rates and show each rate-limit rule's decision rate
without a Prometheus server. It also records every breaker transition with its wall time.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from gateway.observability.families import Counter
from gateway.resilience.breaker import Breaker, Transition
from gateway.runtime import RouteRuntime
from gateway.state import STATE, GatewayState

SAMPLE_INTERVAL = 1.0
HISTORY = 300
"""One-second samples kept: five minutes of chart."""
RATE_WINDOW = 10
"""Seconds over which the page's live decision rates are averaged."""
TOP_GROUPS = 10
TRANSITIONS = 50

Json = dict[str, Any]


def counter_values(counter: Counter, label: str | None = None) -> dict[tuple[str, ...], float]:
    """A counter's current children by label values (the `_total` samples only)."""
    values: dict[tuple[str, ...], float] = {}
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                values[tuple(sample.labels.values())] = sample.value
    return values


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    requests: float
    rejections: float
    decisions: dict[tuple[str, ...], float]
    """Cumulative rate-limit decisions by (route, rule, outcome)."""


@dataclass(eq=False)
class TransitionLog:
    """A breaker listener that keeps the last transitions with the wall time they happened."""

    clock: Callable[[], float] = time.time
    events: deque[Json] = field(default_factory=lambda: deque(maxlen=TRANSITIONS))

    def __call__(self, event: Transition) -> None:
        self.events.append(
            {
                "breaker": event.breaker,
                "from": event.from_state.value,
                "to": event.to_state.value,
                "reason": event.reason,
                "at": self.clock(),
            }
        )

    def attach(self, breakers: list[Breaker]) -> None:
        for breaker in breakers:
            if self not in breaker.listeners:
                breaker.listeners.append(self)

    def of(self, name: str) -> list[Json]:
        return [event for event in self.events if event["breaker"] == name]


@dataclass(eq=False)
class StatusRecorder:
    """The ring buffer of samples and the transition log of one gateway process."""

    state: GatewayState
    clock: Callable[[], float] = time.time
    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=HISTORY + 1))
    transitions: TransitionLog = field(default_factory=TransitionLog)

    def breakers(self) -> list[Breaker]:
        found: dict[str, Breaker] = {}
        for route in self.state.current.routes:
            if route.resilience is not None and route.resilience.breaker is not None:
                found.setdefault(route.resilience.breaker.name, route.resilience.breaker)
        return list(found.values())

    def sample(self) -> None:
        """Take one sample; also listen to breakers a reload brought in."""
        metrics = self.state.metrics
        self.samples.append(
            Sample(
                self.clock(),
                sum(counter_values(metrics.requests).values()),
                sum(counter_values(metrics.rejections).values()),
                counter_values(metrics.ratelimit_decisions),
            )
        )
        self.transitions.attach(self.breakers())

    def series(self) -> Json:
        """Per-second request and rejection counts, oldest first."""
        points = list(self.samples)
        pairs = list(itertools.pairwise(points))
        return {
            "interval_s": SAMPLE_INTERVAL,
            "end": points[-1].at if points else self.clock(),
            "requests": [round(b.requests - a.requests, 3) for a, b in pairs],
            "rejections": [round(b.rejections - a.rejections, 3) for a, b in pairs],
        }

    def decision_rates(self) -> dict[tuple[str, ...], float]:
        """Decisions per second over the last RATE_WINDOW seconds, by (route, rule, outcome)."""
        if len(self.samples) < 2:
            return {}
        last = self.samples[-1]
        first = self.samples[max(0, len(self.samples) - 1 - RATE_WINDOW)]
        span = max(last.at - first.at, 1e-9)
        return {
            key: round((value - first.decisions.get(key, 0.0)) / span, 3)
            for key, value in last.decisions.items()
        }


async def status_document(recorder: StatusRecorder) -> Json:
    """The whole page's data: GET /admin/status."""
    state = recorder.state
    current = state.current
    rates = recorder.decision_rates()
    return {
        "now": recorder.clock(),
        "uptime_s": round(time.time() - state.started_at, 1),
        "draining": state.draining,
        "policy": {
            "generation": current.generation,
            "sha256": current.loaded.sha256,
            "source": current.loaded.source,
            "loaded_at": current.loaded_at,
            "reloads": [asdict(record) for record in reversed(state.reloads)],
        },
        "routes": [_route(route) for route in current.routes],
        "ratelimit": {
            "store": _store(state),
            "rules": [
                {
                    "route": route.name,
                    "rule": rule.name,
                    "mode": rule.policy.mode,
                    "algorithm": rule.policy.algorithm,
                    "limit": rule.policy.limit,
                    "window_s": rule.policy.window,
                    "rates": {
                        outcome: rates.get((route.name, rule.name, outcome), 0.0)
                        for outcome in ("allowed", "limited", "shadow_limited", "store_error")
                    },
                }
                for route in current.routes
                if route.limiter is not None
                for rule in route.limiter.all_rules
            ],
        },
        "breakers": [
            {**breaker.snapshot(), "transitions": recorder.transitions.of(breaker.name)[::-1]}
            for breaker in recorder.breakers()
        ],
        "errors": await _errors(state),
        "health": _health(state),
        "series": recorder.series(),
    }


def _route(route: RouteRuntime) -> Json:
    match = route.policy.match.model_dump(exclude_none=True)
    resilience = route.resilience
    return {
        "name": route.name,
        "match": match,
        "upstream": route.upstream.base_url,
        "rate_limit": [rule.name for rule in route.limiter.all_rules] if route.limiter else [],
        "validation": route.validator.mode if route.validator is not None else None,
        "breaker": resilience.breaker.name if resilience and resilience.breaker else None,
    }


def _store(state: GatewayState) -> Json:
    component = state.health_components.get("ratelimit_store")
    if component is not None:
        return component()
    return {"status": "ok", "kind": state.limit_store.kind, "mode": "primary"}


async def _errors(state: GatewayState) -> Json:
    service = state.capture
    if service is None:
        return {"running": False, "groups": []}
    groups, source = await service.group_snapshot()
    top = sorted(groups, key=lambda g: -int(g.get("count", 0)))[:TOP_GROUPS]
    return {"running": True, "source": source, "total_groups": len(groups), "groups": top}


def _health(state: GatewayState) -> Json:
    components: Json = {
        "policy": {"status": "ok", "generation": state.current.generation},
        "draining": {"status": "fail" if state.draining else "ok"},
    }
    for name, component in state.health_components.items():
        components[name] = component()
    ready = all(
        c.get("status") == "ok" or not c.get("required", name == "draining")
        for name, c in components.items()
    )
    return {"ready": ready, "components": components}


RECORDER = web.AppKey("status_recorder", StatusRecorder)


async def sampler(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the once-a-second sampler, running while the admin port is open."""
    recorder = StatusRecorder(app[STATE])
    app[RECORDER] = recorder
    recorder.sample()

    async def loop() -> None:
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL)
            recorder.sample()

    task = asyncio.create_task(loop())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

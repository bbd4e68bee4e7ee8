"""The limiter's process-wide side: the store opened at start with its logging, metrics and
/health component, and closed at stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psutil
from aiohttp import web

from gateway.observability.logs import get_logger
from gateway.state import STATE, GatewayState
from gateway.stores import FailoverStore, open_store
from gateway.stores.failover import Mode

log = get_logger("gateway.ratelimit")


def open_limit_store(state: GatewayState) -> None:
    """Open the policy's store; a store block changed by a reload applies at the next start."""
    config = state.current.policy.store
    metrics = state.metrics

    def on_switch(mode: Mode, error: str | None) -> None:
        metrics.ratelimit_store_switches.labels(mode).inc()
        metrics.ratelimit_store_mode.labels(mode).set(1)
        metrics.ratelimit_store_mode.labels("fallback" if mode == "primary" else "primary").set(0)
        if mode == "fallback":
            log.warning("ratelimit_store_failed_over", on_error=config.on_error, error=error)
        else:
            log.info("ratelimit_store_recovered")

    store = open_store(config, on_switch=on_switch, workers=state.current.policy.workers)
    state.limit_store = store
    metrics.ratelimit_store_mode.labels("primary").set(1)
    metrics.ratelimit_store_mode.labels("fallback").set(0)

    def component() -> dict[str, Any]:
        if not isinstance(store, FailoverStore):
            return {"status": "ok", "kind": store.kind, "mode": "primary"}
        return {
            "status": "ok" if store.mode == "primary" else "fail",
            "kind": store.kind,
            "mode": store.mode,
            "on_error": store.on_error,
            "switches": store.switches,
            "error": store.last_error,
            "required": config.required_for_readiness,
        }

    state.health_components["ratelimit_store"] = component


async def close_limit_store(state: GatewayState) -> None:
    state.health_components.pop("ratelimit_store", None)
    await state.limit_store.close()


SAMPLE_INTERVAL = 1.0


def adapt(state: GatewayState, system_cpu: float, process_cpu: float) -> None:
    """Feed one CPU sample (fractions of 1) to every adaptive rule; publish the factors."""
    for route in state.current.routes:
        if route.limiter is None:
            continue
        for rule in route.limiter.rules:
            if rule.adaptive is not None:
                cpu = system_cpu if rule.adaptive.source == "system" else process_cpu
                before = rule.adaptive.factor
                factor = rule.adaptive.update(cpu)
                state.metrics.ratelimit_adaptive_factor.labels(route.name, rule.name).set(factor)
                if (factor < 1.0) != (before < 1.0):
                    log.info("ratelimit_adaptive", route=route.name, rule=rule.name, factor=factor)


class CpuMeter:
    """CPU use between two calls, from cumulative times: independent of other psutil callers."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._cpus = psutil.cpu_count() or 1
        self._last = self._read()

    def _read(self) -> tuple[float, float, float]:
        times = psutil.cpu_times()
        idle = times.idle + getattr(times, "iowait", 0.0)
        own = self._process.cpu_times()
        return sum(times), idle, own.user + own.system

    def sample(self, elapsed: float) -> tuple[float, float]:
        total, idle, own = self._read()
        last_total, last_idle, last_own = self._last
        self._last = (total, idle, own)
        spent = total - last_total
        system = 1.0 - (idle - last_idle) / spent if spent > 0 else 0.0
        return system, (own - last_own) / (elapsed * self._cpus)


async def adaptive_sampler(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx of the proxy app: sample CPU each second for adaptive rules."""
    state = app[STATE]

    async def run() -> None:
        meter = CpuMeter()
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL)
            adapt(state, *meter.sample(SAMPLE_INTERVAL))

    task = asyncio.create_task(run())
    yield
    task.cancel()

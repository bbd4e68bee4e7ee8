"""The health port: /livez, /readyz and the detailed /health."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psutil
from aiohttp import web

from gateway.health.checks import CheckResult, Prober
from gateway.observability.logs import get_logger
from gateway.policy.model import DependencyCheck
from gateway.state import STATE, GatewayState

log = get_logger("gateway.health")

LAG_INTERVAL = 0.25
"""How often the event loop's scheduling lag is sampled (one timer: cheap)."""

LAG_WINDOW = 10.0
"""The lag reported is the worst of this window: a scrape every 15 s must not miss a stall."""


@dataclass(eq=False)
class LoopLag:
    """Samples of how late a timer fires: the time the loop spent on something else."""

    samples: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=64))

    @property
    def last(self) -> float:
        return self.samples[-1][1] if self.samples else 0.0

    def worst(self, now: float) -> float:
        return max((lag for at, lag in self.samples if now - at <= LAG_WINDOW), default=0.0)


PROBER = web.AppKey("prober", Prober)
LOOP_LAG = web.AppKey("loop_lag", LoopLag)


async def livez(request: web.Request) -> web.Response:
    lag = request.app[LOOP_LAG].last
    limit = request.app[STATE].current.policy.health.max_event_loop_lag
    if lag > limit:
        return web.json_response({"status": "fail", "event_loop_lag_s": lag}, status=503)
    return web.json_response({"status": "ok"})


def _readiness(app: web.Application) -> tuple[bool, list[str]]:
    state = app[STATE]
    reasons = []
    if state.draining:
        reasons.append("draining")
    results = app[PROBER].results
    for check in state.current.policy.health.checks:
        result = results.get(check.name)
        if check.required and (result is None or not result.ok):
            reasons.append(f"dependency {check.name} is down")
    for name, component in state.health_components.items():
        status = component()
        if status.get("required") and status.get("status") != "ok":
            reasons.append(f"{name} is {status.get('mode') or status.get('status')}")
    return not reasons, reasons


async def readyz(request: web.Request) -> web.Response:
    ready, reasons = _readiness(request.app)
    body: dict[str, Any] = {"status": "ok" if ready else "fail"}
    if reasons:
        body["reasons"] = reasons
    return web.json_response(body, status=200 if ready else 503)


async def health(request: web.Request) -> web.Response:
    app = request.app
    state = app[STATE]
    ready, reasons = _readiness(app)
    lag = app[LOOP_LAG]
    lag_ok = lag.last <= state.current.policy.health.max_event_loop_lag
    components: dict[str, Any] = {
        "policy": {
            "status": "ok",
            "generation": state.current.generation,
            "sha256": state.current.loaded.sha256,
            "source": state.current.loaded.source,
            "loaded_at": state.current.loaded_at,
            "last_reload": _last_reload(state),
        },
        "event_loop": {
            "status": "ok" if lag_ok else "fail",
            "lag_ms": round(lag.last * 1000, 3),
            "max_lag_ms": round(lag.worst(time.monotonic()) * 1000, 3),
            "window_s": LAG_WINDOW,
        },
    }
    results = app[PROBER].results
    for check in state.current.policy.health.checks:
        result = results.get(check.name)
        components[check.name] = {
            "status": "unknown" if result is None else ("ok" if result.ok else "fail"),
            "type": check.type,
            "target": check.target,
            "required": check.required,
            "latency_ms": result.latency_ms if result else None,
            "error": result.error if result else None,
            "checked_at": result.checked_at if result else None,
        }
    for name, component in state.health_components.items():
        components[name] = component()
    return web.json_response(
        {
            "status": "ok" if ready else "fail",
            "reasons": reasons,
            "draining": state.draining,
            "uptime_s": round(time.time() - state.started_at, 3),
            "components": components,
            "process": _process_stats(),
            "system": _system_stats(),
        },
        status=200 if ready else 503,
    )


def _last_reload(state: GatewayState) -> dict[str, Any] | None:
    if not state.reloads:
        return None
    last = state.reloads[-1]
    return {"at": last.at, "result": last.result, "errors": list(last.errors)}


def _process_stats() -> dict[str, Any]:
    process = psutil.Process()
    with process.oneshot():
        cpu = process.cpu_times()
        return {
            "pid": process.pid,
            "rss_bytes": process.memory_info().rss,
            "cpu_seconds": round(cpu.user + cpu.system, 3),
            "open_fds": process.num_fds() if hasattr(process, "num_fds") else None,
            "threads": process.num_threads(),
        }


def _system_stats() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(os.getcwd())
    return {
        # interval=None compares with the previous call: it never sleeps on the event loop.
        "cpu_percent": psutil.cpu_percent(interval=None),
        "memory_percent": memory.percent,
        "memory_available_bytes": memory.available,
        "disk_percent": disk.percent,
    }


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _measure_loop_lag(app: web.Application) -> AsyncIterator[None]:
    lag, gauge = app[LOOP_LAG], app[STATE].metrics.event_loop_lag

    async def measure() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LAG_INTERVAL)
            now = loop.time()
            lag.samples.append((time.monotonic(), max(0.0, now - before - LAG_INTERVAL)))
            gauge.set(lag.worst(time.monotonic()))

    task = asyncio.create_task(measure())
    yield
    await _stop(task)


async def _run_checks(app: web.Application) -> AsyncIterator[None]:
    state, prober = app[STATE], app[PROBER]

    async def run(session: aiohttp.ClientSession) -> None:
        while True:
            checks = state.current.policy.health.checks
            wait = await prober.run_due(session, checks, time.monotonic())
            # Capped so that checks added by a reload are probed soon.
            await asyncio.sleep(min(wait, 0.25))

    # A fresh connection per probe: a pooled one would hide that the dependency went away.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        # The first round is awaited, so /readyz is right as soon as the port opens; it takes
        # at most the longest check timeout.
        await prober.run_due(session, state.current.policy.health.checks, time.monotonic())
        task = asyncio.create_task(run(session))
        yield
        await _stop(task)


def build_health_app(state: GatewayState) -> web.Application:
    def report(check: DependencyCheck, result: CheckResult, previous: CheckResult | None) -> None:
        state.metrics.dependency_up.labels(check.name).set(1 if result.ok else 0)
        if previous is None or previous.ok != result.ok:
            emit = log.info if result.ok else log.warning
            emit("dependency_status", dependency=check.name, ok=result.ok, error=result.error)

    app = web.Application()
    app[STATE] = state
    app[PROBER] = Prober(report)
    app[LOOP_LAG] = LoopLag()
    app.cleanup_ctx.extend([_measure_loop_lag, _run_checks])
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/health", health)
    return app

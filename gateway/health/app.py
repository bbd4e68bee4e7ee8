"""The health port: /livez, /readyz and the detailed /health."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import psutil
from aiohttp import web

from gateway.health.checks import CheckResult, probe
from gateway.observability.logs import get_logger
from gateway.state import STATE, GatewayState

log = get_logger("gateway.health")

CHECK_RESULTS = web.AppKey("check_results", dict[str, CheckResult])
LOOP_LAG = web.AppKey("loop_lag", list[float])

_LAG_INTERVAL = 0.5


async def livez(request: web.Request) -> web.Response:
    lag = request.app[LOOP_LAG][0]
    limit = request.app[STATE].current.policy.health.max_event_loop_lag
    if lag > limit:
        return web.json_response({"status": "fail", "event_loop_lag_s": lag}, status=503)
    return web.json_response({"status": "ok"})


def _readiness(app: web.Application) -> tuple[bool, list[str]]:
    state = app[STATE]
    reasons = []
    if state.draining:
        reasons.append("draining")
    results = app[CHECK_RESULTS]
    for check in state.current.policy.health.checks:
        result = results.get(check.name)
        if check.required and (result is None or not result.ok):
            reasons.append(f"dependency {check.name} is down")
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
    components: dict[str, Any] = {
        "policy": {
            "status": "ok",
            "generation": state.current.generation,
            "sha256": state.current.loaded.sha256,
            "source": state.current.loaded.source,
            "loaded_at": state.current.loaded_at,
            "last_reload": _last_reload(state),
        },
        "event_loop": {"status": "ok", "lag_ms": round(app[LOOP_LAG][0] * 1000, 3)},
    }
    results = app[CHECK_RESULTS]
    for check in state.current.policy.health.checks:
        result = results.get(check.name)
        components[check.name] = {
            "status": "unknown" if result is None else ("ok" if result.ok else "fail"),
            "type": check.type,
            "required": check.required,
            "latency_ms": result.latency_ms if result else None,
            "error": result.error if result else None,
            "checked_at": result.checked_at if result else None,
        }
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


async def _measure_loop_lag(app: web.Application) -> AsyncIterator[None]:
    async def measure() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(_LAG_INTERVAL)
            lag = max(0.0, loop.time() - before - _LAG_INTERVAL)
            app[LOOP_LAG][0] = lag
            app[STATE].metrics.event_loop_lag.set(lag)

    task = asyncio.create_task(measure())
    yield
    task.cancel()


async def _run_checks(app: web.Application) -> AsyncIterator[None]:
    async def run(session: aiohttp.ClientSession) -> None:
        next_due: dict[str, float] = {}
        while True:
            state = app[STATE]
            now = time.monotonic()
            for check in state.current.policy.health.checks:
                if next_due.get(check.name, 0.0) <= now:
                    next_due[check.name] = now + check.interval
                    result = await probe(check, session)
                    previous = app[CHECK_RESULTS].get(check.name)
                    if previous is None or previous.ok != result.ok:
                        log.info(
                            "dependency_status",
                            dependency=check.name,
                            ok=result.ok,
                            error=result.error,
                        )
                    app[CHECK_RESULTS][check.name] = result
                    state.metrics.dependency_up.labels(check.name).set(1 if result.ok else 0)
            await asyncio.sleep(0.25)

    async with aiohttp.ClientSession(trust_env=False) as session:
        task = asyncio.create_task(run(session))
        yield
        task.cancel()


def build_health_app(state: GatewayState) -> web.Application:
    app = web.Application()
    app[STATE] = state
    app[CHECK_RESULTS] = {}
    app[LOOP_LAG] = [0.0]
    app.cleanup_ctx.extend([_measure_loop_lag, _run_checks])
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/health", health)
    return app

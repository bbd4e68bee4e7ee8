"""The admin port (loopback by default): the status page, explain, the policy and its reloads.

Every endpoint is listed in README.md ("The admin port").
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from aiohttp import web

from gateway.admin.auth import admin_guard
from gateway.admin.explain import ExplainInputError, explain
from gateway.admin.ratelimit import add_ratelimit_routes
from gateway.admin.status import RECORDER, sampler, status_document
from gateway.capture.admin import add_error_routes
from gateway.resilience.admin import add_breaker_routes
from gateway.state import STATE, GatewayState


async def _policy(request: web.Request) -> web.Response:
    state = request.app[STATE]
    current = state.current
    return web.json_response(
        {
            "generation": current.generation,
            "sha256": current.loaded.sha256,
            "source": current.loaded.source,
            "routes": [route.name for route in current.routes],
            "reloads": [asdict(record) for record in state.reloads],
        }
    )


async def _reload(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.policy_path is None:
        return web.json_response({"reloaded": False, "errors": ["no policy file"]}, status=409)
    ok = state.reload(trigger="admin")
    last = state.reloads[-1]
    return web.json_response(
        {"reloaded": ok, "generation": state.current.generation, "errors": list(last.errors)},
        status=200 if ok else 422,
    )


async def _explain(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        data = await request.json()
        answer = await explain(state.current, state.limit_store, data, request.remote)
    except (ExplainInputError, json.JSONDecodeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(answer)


async def _status(request: web.Request) -> web.Response:
    return web.json_response(await status_document(request.app[RECORDER]))


STATIC = Path(__file__).parent / "static"


async def _page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def build_admin_app(state: GatewayState) -> web.Application:
    app = web.Application(middlewares=[admin_guard])
    app[STATE] = state
    app.cleanup_ctx.append(sampler)  # per-second samples for the page's charts and rates
    app.router.add_get("/", _page)
    app.router.add_static("/static/", STATIC)
    app.router.add_get("/admin/status", _status)
    app.router.add_post("/admin/explain", _explain)
    app.router.add_get("/admin/policy", _policy)
    app.router.add_post("/admin/reload", _reload)
    add_breaker_routes(app)
    add_error_routes(app)
    add_ratelimit_routes(app)
    return app

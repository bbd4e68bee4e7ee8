"""The admin port (loopback by default): the policy now serving, its reload history, a reload."""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from gateway.admin.ratelimit import add_ratelimit_routes
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


def build_admin_app(state: GatewayState) -> web.Application:
    app = web.Application()
    app[STATE] = state
    app.router.add_get("/admin/policy", _policy)
    app.router.add_post("/admin/reload", _reload)
    add_breaker_routes(app)
    add_error_routes(app)
    add_ratelimit_routes(app)
    return app

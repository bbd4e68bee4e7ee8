"""Admin routes for circuit breakers: list them; force one open, disable it, or reset it."""

from __future__ import annotations

from aiohttp import web

from gateway.resilience.breaker import Breaker
from gateway.state import STATE

_ACTIONS = ("force_open", "disable", "reset")


def _breakers(request: web.Request) -> dict[str, Breaker]:
    """Every breaker of the policy now serving, by name (a shared one appears once)."""
    state = request.app[STATE]
    found: dict[str, Breaker] = {}
    for route in state.current.routes:
        if route.resilience is not None and route.resilience.breaker is not None:
            found.setdefault(route.resilience.breaker.name, route.resilience.breaker)
    return found


async def _list(request: web.Request) -> web.Response:
    return web.json_response({"breakers": [b.snapshot() for b in _breakers(request).values()]})


async def _act(request: web.Request) -> web.Response:
    name, action = request.match_info["name"], request.match_info["action"]
    if action not in _ACTIONS:
        return web.json_response(
            {"error": f"unknown action {action!r}", "actions": list(_ACTIONS)}, status=404
        )
    breaker = _breakers(request).get(name)
    if breaker is None:
        return web.json_response({"error": f"no breaker named {name!r}"}, status=404)
    getattr(breaker, action)()
    return web.json_response(breaker.snapshot())


def add_breaker_routes(app: web.Application) -> None:
    app.router.add_get("/admin/breakers", _list)
    app.router.add_post("/admin/breakers/{name}/{action}", _act)

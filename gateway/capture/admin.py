"""Admin endpoints of error capture: the groups, the recent events and notices, alert states."""

from __future__ import annotations

import functools
import json

from aiohttp import web

from gateway.state import STATE

MAX_RECENT = 1000
_dumps = functools.partial(json.dumps, default=str)


async def _groups(request: web.Request) -> web.Response:
    service = request.app[STATE].capture
    if service is None:
        return web.json_response({"groups": [], "running": False})
    groups, source = await service.group_snapshot()
    return web.json_response(
        {
            "running": True,
            "source": source,
            "groups": groups,
            "evicted": service.groups.evicted,
            "alerts": service.alerts.status(),
        }
    )


async def _recent(request: web.Request) -> web.Response:
    service = request.app[STATE].capture
    try:
        limit = min(int(request.query.get("limit", "50")), MAX_RECENT)
    except ValueError:
        raise web.HTTPBadRequest(text="limit must be a number") from None
    items = list(service.recent)[-limit:] if service is not None and limit > 0 else []
    return web.json_response({"recent": items[::-1]}, dumps=_dumps)


def add_error_routes(app: web.Application) -> None:
    app.router.add_get("/admin/errors/groups", _groups)
    app.router.add_get("/admin/errors/recent", _recent)

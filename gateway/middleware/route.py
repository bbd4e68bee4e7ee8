"""Pick the request's route once; a request that matches none is rejected with 404."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.errors import NoRouteMatched
from gateway.state import CLIENT_IP, ROUTE, STATE
from gateway.upstream.headers import client_address


@web.middleware
async def route(request: web.Request, handler: Handler) -> web.StreamResponse:
    compiled = request.app[STATE].current
    matched = compiled.route_for(request.method, request.host, request.path)
    if matched is None:
        raise NoRouteMatched(f"No route of the policy matches {request.method} {request.path}")
    request[ROUTE] = matched
    request[CLIENT_IP] = client_address(
        request.remote, request.headers.get("X-Forwarded-For"), compiled.trusted_proxies
    )
    return await handler(request)

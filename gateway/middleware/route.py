"""Pick the request's route once; a request that matches none is rejected with 404 (and one
that is not HTTP/1.0 or 1.1 with 400, before any route sees it)."""

from __future__ import annotations

from aiohttp import HttpVersion10, HttpVersion11, web
from aiohttp.typedefs import Handler

from gateway.errors import BadRequest, NoRouteMatched
from gateway.state import CLIENT_IP, ROUTE, STATE
from gateway.upstream.headers import client_address

_HTTP_1 = (HttpVersion10, HttpVersion11)


@web.middleware
async def route(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.version not in _HTTP_1:
        # llhttp takes HTTP/0.9 lines (no version: "GET /x\r\nX: y HTTP/1.1" then reads as
        # headers) and a textual HTTP/2.0; neither is a request we forward as HTTP/1.1.
        raise BadRequest(f"HTTP/{request.version.major}.{request.version.minor} is not served")
    compiled = request.app[STATE].current
    matched = compiled.route_for(request.method, request.host, request.path)
    if matched is None:
        raise NoRouteMatched(f"No route of the policy matches {request.method} {request.path}")
    request[ROUTE] = matched
    request[CLIENT_IP] = client_address(
        request.remote, request.headers.get("X-Forwarded-For"), compiled.trusted_proxies
    )
    return await handler(request)

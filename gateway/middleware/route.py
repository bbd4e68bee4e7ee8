"""Pick the request's route once; a request that matches none is rejected with 404 (and one
that is not HTTP/1.0 or 1.1 with 400, before any route sees it)."""

from __future__ import annotations

from typing import Final

from aiohttp import HttpVersion10, HttpVersion11

from gateway.errors import BadRequest, NoRouteMatched
from gateway.server.connection import Answer, Handler
from gateway.server.request import ProxyRequest
from gateway.state import CLIENT_IP, ROUTE
from gateway.upstream.headers import client_address

_HTTP_1: Final = (HttpVersion10, HttpVersion11)


async def route(request: ProxyRequest, handler: Handler) -> Answer:
    if request.version not in _HTTP_1:
        # llhttp takes HTTP/0.9 lines (no version: "GET /x\r\nX: y HTTP/1.1" then reads as
        # headers) and a textual HTTP/2.0; neither is a request we forward as HTTP/1.1.
        raise BadRequest(f"HTTP/{request.version.major}.{request.version.minor} is not served")
    compiled = request.state.current
    matched = compiled.route_for(request.method, request.host, request.path)
    if matched is None:
        raise NoRouteMatched(f"No route of the policy matches {request.method} {request.path}")
    request[ROUTE] = matched
    trusted = compiled.trusted_proxies
    address, peer_trusted = request.connection.peer_facts(trusted)
    forwarded_for = request.header("x-forwarded-for")
    if forwarded_for and peer_trusted:  # only a trusted proxy's X-Forwarded-For is believed
        address = client_address(request.remote, forwarded_for, trusted)
    request[CLIENT_IP] = address
    return await handler(request)

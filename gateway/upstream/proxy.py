"""The last step: forward the request to the upstream and stream its response back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from gateway.errors import UpstreamConnectError, UpstreamTimeout
from gateway.observability.logs import get_logger
from gateway.runtime import RouteRuntime
from gateway.state import BODY, BYTES_IN, BYTES_OUT, REQUEST_ID, ROUTE, STATE
from gateway.upstream.client import CHUNK_SIZE, UpstreamResponse
from gateway.upstream.headers import add_forwarded, end_to_end, is_trusted_peer
from gateway.upstream.websocket import is_websocket_upgrade, proxy_websocket

log = get_logger("gateway.upstream")

# Statuses whose responses never carry a body (RFC 9110 §6.4.1).
_NO_BODY = frozenset({204, 304})


async def proxy(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    route = request[ROUTE]
    headers = upstream_headers(request, route)
    url = URL(route.upstream.base_url + request.raw_path, encoded=True)
    if is_websocket_upgrade(request):
        return await proxy_websocket(request, url, headers, route.upstream.timeouts)

    body: bytes | AsyncIterator[bytes] | None
    buffered = request.get(BODY)
    if buffered is not None:
        body = buffered
        request[BYTES_IN] = len(buffered)
        headers["Content-Length"] = str(len(buffered))
    elif request.body_exists:
        body = _counted_body(request)
        if "Content-Length" in request.headers and "Transfer-Encoding" not in request.headers:
            headers["Content-Length"] = request.headers["Content-Length"]
    else:
        body = None
    loop = asyncio.get_running_loop()
    sent_at = loop.time()
    upstream = await state.upstream.send(
        request.method, str(url), headers, body, route.upstream.timeouts
    )
    state.metrics.upstream_duration.labels(route.name).observe(loop.time() - sent_at)
    try:
        return await _stream_back(request, upstream)
    finally:
        upstream.release()


def upstream_headers(request: web.Request, route: RouteRuntime) -> CIMultiDict[str]:
    compiled = request.app[STATE].current
    headers = end_to_end(request.headers, downstream=False)
    add_forwarded(
        headers,
        peer=request.remote,
        scheme=request.scheme,
        host=request.headers.get("Host"),
        peer_trusted=is_trusted_peer(request.remote, compiled.trusted_proxies),
    )
    headers["X-Request-ID"] = request[REQUEST_ID]
    headers["Host"] = request.host if route.upstream.preserve_host else route.upstream.host
    return headers


async def _counted_body(request: web.Request) -> AsyncIterator[bytes]:
    request[BYTES_IN] = 0
    async for chunk in request.content.iter_chunked(CHUNK_SIZE):
        request[BYTES_IN] += len(chunk)
        yield chunk


async def _stream_back(request: web.Request, up: UpstreamResponse) -> web.StreamResponse:
    response = web.StreamResponse(status=up.status, reason=up.reason)
    for name, value in end_to_end(up.headers, downstream=True).items():
        response.headers.add(name, value)
    length = up.headers.get("Content-Length")
    has_body = request.method != "HEAD" and up.status not in _NO_BODY
    if length is not None and length.isdigit():
        if has_body:
            response.content_length = int(length)
        else:
            # A HEAD answer announces the length of the body it does not carry.
            response.headers["Content-Length"] = length
    await response.prepare(request)
    request[BYTES_OUT] = 0
    if has_body:
        try:
            async for chunk in up.body():
                request[BYTES_OUT] += len(chunk)
                await response.write(chunk)
        except (UpstreamConnectError, UpstreamTimeout) as exc:
            # Headers are gone already: the only honest answer left is a broken connection,
            # which tells the client the body is incomplete.
            log.warning(
                "upstream_broke_mid_response", reason=exc.reason, bytes_sent=request[BYTES_OUT]
            )
            if request.transport is not None:
                request.transport.abort()
            return response
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            log.info("client_went_away", bytes_sent=request[BYTES_OUT])
            return response
    await response.write_eof()
    return response

"""The last step: forward the request to the upstream and stream its response back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

from aiohttp.http_exceptions import HttpProcessingError

from gateway.errors import BadRequest, UpstreamConnectError, UpstreamTimeout, caused_by
from gateway.observability.logs import get_logger
from gateway.resilience.call import send_upstream
from gateway.runtime import RouteRuntime
from gateway.server.connection import NO_BODY, Answer, StreamedAnswer
from gateway.server.request import ProxyRequest
from gateway.state import BODY, BYTES_IN, BYTES_OUT, REQUEST_ID, ROUTE, UPSTREAM_SECONDS
from gateway.upstream.client import CHUNK_SIZE, UpstreamResponse
from gateway.upstream.headers import Fields, downstream_fields, upstream_fields
from gateway.upstream.websocket import proxy_websocket

log: Final = get_logger("gateway.upstream")


async def proxy(request: ProxyRequest) -> Answer:
    state = request.state
    route = request[ROUTE]
    fields = _upstream_fields(request, route)
    target = request.raw_path
    if not target.startswith("/"):
        # Absolute-form (GET http://host/path): only its path and query go to our upstream.
        target = request.rel_url.raw_path_qs
    url = route.upstream.base_url + target
    if _is_websocket_upgrade(request):
        return await proxy_websocket(request, url, fields, route.upstream.timeouts)

    body: bytes | AsyncIterator[bytes] | None
    buffered = request.get(BODY)
    if buffered is not None:
        body = buffered
        request[BYTES_IN] = len(buffered)
        fields.append(("Content-Length", str(len(buffered))))
    elif request.body_exists:
        body = _CountedBody(request)
        if request.content_length is not None and not request.chunked:
            fields.append(("Content-Length", str(request.content_length)))
    else:
        body = None
    loop = request.connection.loop  # asyncio.get_running_loop() is a getpid() syscall
    sent_at = loop.time()
    upstream = await send_upstream(request, route, url, fields, body)
    request[UPSTREAM_SECONDS] = loop.time() - sent_at
    state.metrics.route(route.name).upstream_duration.observe(request[UPSTREAM_SECONDS])
    try:
        return await _stream_back(request, upstream)
    finally:
        upstream.release()


def _is_websocket_upgrade(request: ProxyRequest) -> bool:
    # Here rather than beside proxy_websocket: this module is compiled, that one is not.
    return (
        request.method == "GET"
        and (request.header("upgrade") or "").lower() == "websocket"
        and "upgrade" in (request.header("connection") or "").lower()
    )


def _upstream_fields(request: ProxyRequest, route: RouteRuntime) -> Fields:
    compiled = request.state.current
    return upstream_fields(
        request.fields,
        peer=request.remote,
        scheme=request.scheme,
        peer_trusted=request.connection.peer_facts(compiled.trusted_proxies)[1],
        request_id=request[REQUEST_ID],
        host=request.host if route.upstream.preserve_host else route.upstream.host,
    )


class _CountedBody:
    """The client's body on its way upstream, its bytes counted in `request[BYTES_IN]`.

    A class rather than an async generator: mypyc does not compile those."""

    __slots__ = ("_request",)

    def __init__(self, request: ProxyRequest) -> None:
        self._request = request
        request[BYTES_IN] = 0

    def __aiter__(self) -> _CountedBody:
        return self

    async def __anext__(self) -> bytes:
        request = self._request
        try:
            chunk = await request.content.read(CHUNK_SIZE)
        except HttpProcessingError as exc:
            raise caused_by(BadRequest("The request body's framing is not valid HTTP/1.1"), exc)
        if not chunk:
            raise StopAsyncIteration
        request[BYTES_IN] += len(chunk)
        return chunk


async def _stream_back(request: ProxyRequest, up: UpstreamResponse) -> StreamedAnswer:
    fields, names, length = downstream_fields(up.fields)
    answer = StreamedAnswer(up.status, up.reason, fields, names)
    has_body = request.method != "HEAD" and up.status not in NO_BODY
    size = None
    if length is not None and length.isdigit():
        if has_body:
            size = int(length)
        elif up.status != 204:  # a 204 never carries Content-Length (RFC 9110 §8.6)
            # HEAD and 304 answers announce the length of the body they do not carry.
            fields.append(("Content-Length", length))
            names.add("content-length")
    connection = request.connection
    connection.start_answer(request, answer, size)
    sent = 0
    if has_body:
        whole = up.arrived_body()
        if whole is not None:  # the common small answer: head and body leave in one write
            request[BYTES_OUT] = len(whole)
            connection.end_body(whole)
            return answer
        try:
            async for chunk in up.body():
                sent += len(chunk)
                await connection.write(chunk)
        except (UpstreamConnectError, UpstreamTimeout) as exc:
            # The head may be gone already: the only honest answer left is a broken
            # connection, which tells the client the body is incomplete.
            log.warning("upstream_broke_mid_response", reason=exc.reason, bytes_sent=sent)
            request[BYTES_OUT] = sent
            connection.abort()
            return answer
        except ConnectionResetError:
            log.info("client_went_away", bytes_sent=sent)
            request[BYTES_OUT] = sent
            return answer
    request[BYTES_OUT] = sent
    connection.end_body()
    return answer

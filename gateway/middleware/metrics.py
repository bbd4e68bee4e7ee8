"""Time and count every response, rejections included, and write the access log line."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from gateway.observability.logs import get_logger
from gateway.observability.metrics import perf_counter
from gateway.observability.request_log import access_wanted
from gateway.server.connection import Answer, Handler, StreamedAnswer
from gateway.server.request import ProxyRequest
from gateway.state import BYTES_IN, BYTES_OUT, ROUTE, UPSTREAM_SECONDS

access_log: Final = get_logger("gateway.access")

CLIENT_CLOSED: Final = 499
"""Status recorded when the client went away before the answer (nginx's convention)."""


async def metrics(request: ProxyRequest, handler: Handler) -> Answer:
    state = request.state
    families = state.metrics
    in_flight = families.requests_in_flight
    in_flight.value += 1
    started = perf_counter()
    status = CLIENT_CLOSED
    answered = 0  # body bytes of an answer the gateway wrote itself (a problem, a 429...)
    try:
        response = await handler(request)
        status = response.status
        # The class first: a Response is a MutableMapping, so isinstance() alone would go
        # through ABCMeta's machinery for every streamed answer.
        if (
            type(response) is not StreamedAnswer
            and isinstance(response, web.Response)
            and isinstance(response.body, bytes)
        ):
            answered = len(response.body)
        return response
    finally:
        in_flight.value -= 1
        elapsed = perf_counter() - started
        matched = request.get(ROUTE)
        route_name = matched.name if matched is not None else "unmatched"
        bound = families.route(route_name)
        bound.requests(request.method, status).inc()
        bound.duration.observe(elapsed)
        bytes_in, bytes_out = request.get(BYTES_IN, 0), request.get(BYTES_OUT, answered)
        if bytes_in:
            bound.bytes_in.inc(bytes_in)
        if bytes_out:
            bound.bytes_out.inc(bytes_out)
        compiled = state.current
        if access_wanted(compiled.access_mode, compiled.access_sample_rate, status):
            upstream = request.get(UPSTREAM_SECONDS)
            # request_id comes from the log context bound by the request_id step.
            access_log.info(
                "access",
                method=request.method,
                path=request.path,
                route=route_name,
                status=status,
                duration_ms=round(elapsed * 1000, 3),
                upstream_ms=None if upstream is None else round(upstream * 1000, 3),
                bytes_in=bytes_in,
                bytes_out=bytes_out,
                client=request.remote,
            )

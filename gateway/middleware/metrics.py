"""Time and count every response, rejections included, and write the access log line."""

from __future__ import annotations

import random
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.observability.logs import get_logger
from gateway.observability.metrics import method_label, status_class
from gateway.state import BYTES_IN, BYTES_OUT, ROUTE, STATE

access_log = get_logger("gateway.access")


@web.middleware
async def metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    families = state.metrics
    families.in_flight.inc()
    started = time.perf_counter()
    status = 499  # the client went away before we answered (nginx's convention)
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        families.in_flight.dec()
        elapsed = time.perf_counter() - started
        matched = request.get(ROUTE)
        route_name = matched.name if matched is not None else "unmatched"
        families.requests.labels(
            route_name, method_label(request.method), status_class(status)
        ).inc()
        families.request_duration.labels(route_name).observe(elapsed)
        bytes_in, bytes_out = request.get(BYTES_IN, 0), request.get(BYTES_OUT, 0)
        families.bytes_in.labels(route_name).inc(bytes_in)
        families.bytes_out.labels(route_name).inc(bytes_out)
        access = state.current.policy.logging.access
        if access.mode == "on" or (
            (access.mode == "errors" and status >= 400)
            or (access.mode == "sampled" and random.random() < access.sample_rate)
        ):
            access_log.info(
                "access",
                method=request.method,
                path=request.path,
                route=route_name,
                status=status,
                duration_ms=round(elapsed * 1000, 3),
                bytes_in=bytes_in,
                bytes_out=bytes_out,
                client=request.remote,
            )

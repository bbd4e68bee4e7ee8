"""The one place where an exception becomes a response (problem+json) and an error event."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.errors import InternalError, Rejection
from gateway.observability.logs import get_logger
from gateway.problem import problem_response
from gateway.state import REQUEST_ID, ROUTE, STATE

log = get_logger("gateway.capture")


@web.middleware
async def capture(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Rejection as exc:
        error = exc
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("gateway_exception", error_type=type(exc).__name__)
        error = InternalError()
    matched = request.get(ROUTE)
    route_name = matched.name if matched is not None else "unmatched"
    request.app[STATE].metrics.rejections.labels(route_name, error.reason).inc()
    log.info(
        "rejected", reason=error.reason, status=error.status, route=route_name, detail=error.detail
    )
    return problem_response(error, request_id=request.get(REQUEST_ID), instance=request.path)

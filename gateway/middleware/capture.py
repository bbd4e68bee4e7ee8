"""The one place where an exception becomes a response (problem+json) and an error event.

Upstream 5xx answers that pass through are captured here too: this step sees every response's
status. Building and queueing an event is all the request pays; scrubbing, grouping and
delivery happen in the capture service's background tasks.
"""

from __future__ import annotations

import asyncio
from typing import Final

from gateway.capture.events import ErrorEvent, build_event, exception_info
from gateway.capture.reasons import UPSTREAM_5XX
from gateway.capture.service import CaptureService
from gateway.errors import InternalError, Rejection
from gateway.observability.logs import get_logger
from gateway.observability.metrics import perf_counter
from gateway.problem import problem_response
from gateway.runtime import RouteRuntime
from gateway.server.connection import Answer, Handler
from gateway.server.request import ProxyRequest
from gateway.state import (
    BODY,
    BREAKER_STATE,
    CLIENT_IP,
    REQUEST_ID,
    RETRIES,
    ROUTE,
    UNENFORCED,
    UPSTREAM_SECONDS,
)

log: Final = get_logger("gateway.capture")


async def capture(request: ProxyRequest, handler: Handler) -> Answer:
    started = perf_counter()
    state = request.state
    service = state.capture
    unexpected: Exception | None = None
    try:
        response = await handler(request)
    except Rejection as rejection:  # one name per exception type: mypyc types each name once
        error = rejection
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        unexpected, error = exc, InternalError()
    else:
        if service is not None:
            failed = response.status >= 500
            service.observe(
                state.current.policy.errors, response.status, UPSTREAM_5XX if failed else None
            )
            if failed and service.wants(UPSTREAM_5XX):
                _submit(request, service, UPSTREAM_5XX, response.status, started)
            unenforced = request.get(UNENFORCED)
            if unenforced is not None and service.wants(unenforced.reason):
                _submit(request, service, unenforced.reason, response.status, started, unenforced)
        return response

    matched = request.get(ROUTE)
    route_name = matched.name if matched is not None else "unmatched"
    metrics = state.metrics
    metrics.rejections.labels(route_name, error.reason).inc()
    event_id = None
    if service is not None:
        service.observe(state.current.policy.errors, error.status, error.reason)
        if service.wants(error.reason):
            event_id = _submit(
                request, service, error.reason, error.status, started, error, unexpected
            )
    # Details and exception text may quote what the client sent: scrubbed before logging.
    scrub = service.compiled.scrubber.text if service is not None else _withheld
    if unexpected is not None:
        log.error(
            "gateway_exception",
            error_type=type(unexpected).__name__,
            message=scrub(str(unexpected)),
            stack=scrub(exception_info(unexpected).stack),
            event_id=event_id,
            route=route_name,
        )
    log.info(
        "rejected",
        reason=error.reason,
        status=error.status,
        route=route_name,
        detail=scrub(error.detail),
        event_id=event_id,
    )
    return problem_response(error, request_id=request.get(REQUEST_ID), instance=request.path)


def _submit(
    request: ProxyRequest,
    service: CaptureService,
    reason: str,
    status: int,
    started: float,
    error: Rejection | None = None,
    unexpected: Exception | None = None,
) -> str | None:
    """Build and queue the event; the event id, or None if capture itself failed."""
    try:
        event = _event(request, service, reason, status, started, error, unexpected)
        service.submit(event)
    except Exception as exc:  # capture must never turn into the request's own failure
        log.error("capture_failed", error_type=type(exc).__name__, reason=reason)
        return None
    return event.id


def _event(
    request: ProxyRequest,
    service: CaptureService,
    reason: str,
    status: int,
    started: float,
    error: Rejection | None,
    unexpected: Exception | None,
) -> ErrorEvent:
    config = service.compiled.config
    matched = request.get(ROUTE)
    return build_event(
        reason=reason,
        status=status,
        route=matched.name if matched is not None else "unmatched",
        method=request.method,
        path=request.path,
        query=request.query_string,
        headers=request.headers.items(),
        # Only a body some step already read: reading one here would make the client wait.
        body=request.get(BODY),
        body_limit=config.body_excerpt,
        client_ip=request.get(CLIENT_IP) or request.remote,
        client_mode=config.client,
        client_salt=service.salt,
        duration=perf_counter() - started,
        request_id=request.get(REQUEST_ID),
        upstream=matched.upstream.host if matched is not None else None,
        upstream_seconds=request.get(UPSTREAM_SECONDS),
        retry_count=request.get(RETRIES),
        breaker_state=request.get(BREAKER_STATE) or _breaker_state(matched),
        detail=error.detail if error is not None and error.detail != error.title else None,
        exc=unexpected,
    )


def _breaker_state(route: RouteRuntime | None) -> str | None:
    # The state now, read after the call: for the request that opened it, that is "open".
    resilience = route.resilience if route is not None else None
    if resilience is None or resilience.breaker is None:
        return None
    return str(resilience.breaker.state)


def _withheld(_: str) -> str:
    return "[withheld: capture not running]"

"""Builds the proxy's request pipeline, written once, in order, and its lifecycle app."""

from __future__ import annotations

from aiohttp import web

from gateway.capture.lifecycle import capture_context
from gateway.middleware.capture import capture
from gateway.middleware.metrics import metrics
from gateway.middleware.ratelimit import add_rate_limit_headers, ratelimit
from gateway.middleware.request_id import add_request_id_header, request_id
from gateway.middleware.route import route
from gateway.middleware.validation import validation
from gateway.ratelimit.lifecycle import adaptive_sampler
from gateway.server.connection import Bound, Handler, PrepareHook
from gateway.state import STATE, GatewayState
from gateway.upstream.proxy import proxy

PIPELINE = [
    request_id,  # accept or mint X-Request-ID; bind it to the log context
    metrics,  # time and count EVERY response, rejections included (reads the route afterwards)
    capture,  # the one place where an exception becomes problem+json and an error event
    route,  # pick the route once; inside capture so that "no route" is a 404 problem
    ratelimit,  # identity -> limiter -> pass or 429, before the body is read
    validation,  # limits -> bounded body read -> schema -> sanitize; 405/413/414/415/431/400
]
"""The steps, each `step(request, handler)`; the handler behind the last is the upstream step."""

PREPARE_HOOKS: tuple[PrepareHook, ...] = (
    add_request_id_header,  # every answer, streamed or not, carries the request id
    add_rate_limit_headers,  # the limiter's verdict, on allowed and refused answers alike
)
"""Run on each answer's headers just before its head is written."""


def build_handler() -> Handler:
    """The pipeline as one callable: PIPELINE[0](request, handler=PIPELINE[1](...)...proxy)."""
    handler: Handler = proxy
    for step in reversed(PIPELINE):
        handler = Bound(step, handler)
    return handler


def build_proxy_app(state: GatewayState) -> web.Application:
    """The proxy port's lifecycle: what its requests share opens and closes with it."""
    app = web.Application()
    app[STATE] = state
    app.cleanup_ctx.append(adaptive_sampler)  # CPU samples for adaptive rate limits
    app.cleanup_ctx.append(capture_context)  # error capture: queue, sinks, alert ticker
    return app

"""Builds the proxy app: the request pipeline, written once, in order."""

from __future__ import annotations

from aiohttp import web

from gateway.middleware.capture import capture, capture_context
from gateway.middleware.metrics import metrics
from gateway.middleware.ratelimit import add_rate_limit_headers, ratelimit
from gateway.middleware.request_id import add_request_id_header, request_id
from gateway.middleware.route import route
from gateway.middleware.validation import validation
from gateway.ratelimit.lifecycle import adaptive_sampler
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
"""The middleware chain; the handler behind it is the upstream step."""


def build_proxy_app(state: GatewayState) -> web.Application:
    limits = state.current.policy.limits
    app = web.Application(
        middlewares=PIPELINE,
        handler_args={
            # Bodies travel as they came: a gzip upload reaches the upstream still gzipped.
            "auto_decompress": False,
            "max_line_size": limits.max_header_line,
            "max_field_size": limits.max_header_size,
            # aiohttp's keep-alive timer also runs from a connection's opening until its first
            # request head is whole: the one bound on a client that drips its headers.
            "keepalive_timeout": limits.header_timeout,
        },
    )
    app[STATE] = state
    app.on_response_prepare.append(add_request_id_header)
    app.on_response_prepare.append(add_rate_limit_headers)
    app.cleanup_ctx.append(adaptive_sampler)  # CPU samples for adaptive rate limits
    app.router.add_route("*", "/{tail:.*}", proxy)
    app.cleanup_ctx.append(capture_context)  # error capture: queue, sinks, alert ticker
    return app

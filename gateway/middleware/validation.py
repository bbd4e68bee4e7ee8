"""The validation step: head limits, then (only when a check needs it) the bounded body read,
the body checks and the sanitizer; the rewritten body goes to the proxy through BODY."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from gateway.errors import ContentLengthMismatch, Rejection
from gateway.middleware.attacks import scan_for_attacks
from gateway.observability.logs import get_logger
from gateway.observability.metrics import GatewayMetrics
from gateway.server.connection import Answer, Handler
from gateway.server.request import ProxyRequest
from gateway.state import BODY, ROUTE
from gateway.validation.body import read_bounded, too_large
from gateway.validation.limits import MediaType, RequestHead
from gateway.validation.validator import BodyOutcome, Validator

log: Final = get_logger("gateway.validation")
_new: Final = tuple.__new__

VALIDATED: Final = web.RequestKey("validated_body", BodyOutcome)
"""The decoded body (JSON document or form fields) for the steps after this one."""


async def validation(request: ProxyRequest, handler: Handler) -> Answer:
    route = request[ROUTE]
    validator = route.validator
    if validator is None:
        if route.attacks is not None:
            await scan_for_attacks(request, route, route.attacks)
        return await handler(request)
    metrics = request.state.metrics
    try:
        await _validate(request, validator, metrics)
    except Rejection as exc:
        check = str(exc.extensions.get("check", exc.reason))
        # A body cut short cannot be forwarded whatever the mode: there is nothing whole to send.
        shadow = validator.shadow and not isinstance(exc, ContentLengthMismatch)
        metrics.validation_rejections.labels(
            route.name, check, "shadow" if shadow else "enforce"
        ).inc()
        if not shadow:
            raise
        log.warning(
            "validation_shadow",
            route=route.name,
            reason=exc.reason,
            check=check,
            pointer=exc.extensions.get("pointer"),
            detail=exc.detail,
        )
    if route.attacks is not None:
        # After the checks and the sanitizer: the scan sees the body the upstream would get.
        await scan_for_attacks(request, route, route.attacks)
    return await handler(request)


def request_head(request: ProxyRequest) -> RequestHead:
    raw_target = request.raw_path
    # tuple.__new__: the NamedTuple's own constructor is a Python-level call.
    return _new(
        RequestHead,
        (
            request.method,
            raw_target,
            raw_target.partition("?")[2],
            len(request.fields),
            request.header_bytes,
            MediaType.parse(request.header("content-type")),
            request.content_length,
            request.body_exists,
            request.header("content-encoding"),
        ),
    )


async def _validate(request: ProxyRequest, validator: Validator, metrics: GatewayMetrics) -> None:
    head = request_head(request)
    validator.check_head(head)
    if "query" in validator.schemas:
        validator.check_query(request.rel_url.query.items())
    if "headers" in validator.schemas:
        validator.check_headers(request.headers.items())
    if not head.has_body or not validator.needs_body(head.media_type, head.content_length):
        return
    validator.head.check_decodable(head)
    # Shadow mode must forward the body whole, so it reads past the limit and reports after.
    limit = None if validator.shadow else validator.max_body
    idle = request.state.current.policy.limits.body_timeout
    body = await read_bounded(request.content, limit, head.content_length, idle)
    metrics.validation_body_bytes.labels(validator.route).inc(len(body))
    request[BODY] = body
    if len(body) > validator.max_body:
        raise too_large(validator.max_body)
    outcome = validator.check_body(body, head.media_type)
    request[VALIDATED] = outcome
    if outcome.sanitized:
        metrics.validation_sanitized_fields.labels(validator.route).inc(outcome.sanitized)
        log.info(
            "validation_sanitized",
            route=validator.route,
            fields=outcome.sanitized,
            forwarded="as sent" if validator.shadow else "cleaned",
        )
    request[BODY] = outcome.body

"""The gateway's exception tree; each rejection knows its status, reason code and problem type.

    GatewayError                      reason                  status
     ├── PolicyError                  (not a response: a policy file that cannot be loaded)
     └── Rejection                    every error that becomes an HTTP answer
          ├── NoRouteMatched          no_route                404
          ├── BadRequest              bad_request             400
          │    ├── ContentLengthMismatch content_length_mismatch 400
          │    ├── InvalidUtf8         invalid_utf8            400
          │    ├── InvalidJson         invalid_json            400
          │    ├── DuplicateJsonKey    duplicate_json_key      400
          │    ├── JsonTooComplex      json_too_complex        400
          │    ├── SchemaViolation     schema_violation        400
          │    ├── TooManyQueryParams  too_many_query_params   400
          │    ├── FormRejected        form_rejected           400
          │    └── UnsafeUrl           unsafe_url              400
          ├── MethodNotAllowed        method_not_allowed      405  (Allow)
          ├── RequestTimeout          request_timeout         408  (the body stalled; closes)
          ├── PayloadTooLarge         payload_too_large       413
          ├── UriTooLong              uri_too_long            414
          ├── UnsupportedMediaType    unsupported_media_type  415
          ├── HeaderFieldsTooLarge    header_fields_too_large 431
          ├── AdminUnauthorized       unauthorized            401  (admin port: no valid token)
          ├── AdminForbidden          admin_forbidden         403  (admin port: a remote peer)
          ├── AttackDetected          attack_detected         403  (CRS anomaly score reached)
          ├── RateLimited             rate_limited            429
          ├── StoreUnavailable        store_unavailable       503
          ├── UpstreamConnectError    upstream_connect_error  502
          ├── UpstreamTimeout         upstream_timeout        504
          ├── CircuitOpen             circuit_open            503  (Retry-After: time left open)
          ├── BulkheadFull            bulkhead_full           503
          ├── RetryBudgetExhausted    retry_budget_exhausted  503
          └── InternalError           gateway_exception       500

Foreign errors (aiohttp.ClientError, asyncio.TimeoutError, redis.RedisError) are mapped to these,
once, where they enter, with `raise ... from exc`. The reason code is one vocabulary shared by
problem+json bodies, metrics labels and error events.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

PROBLEM_TYPE_BASE = "urn:gateway:problem:"


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class PolicyError(GatewayError):
    """A policy file that cannot be loaded; carries every mistake found, one per line."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


class Rejection(GatewayError):
    """An error that is answered to the client as application/problem+json."""

    status: ClassVar[int] = 500
    reason: ClassVar[str] = "gateway_exception"
    title: ClassVar[str] = "Internal gateway error"
    closes_connection: ClassVar[bool] = False
    """The connection cannot carry another request after this answer (its body never ended)."""

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers: Mapping[str, str] = headers or {}
        self.extensions: Mapping[str, Any] = extensions or {}

    @property
    def problem_type(self) -> str:
        return PROBLEM_TYPE_BASE + self.reason.replace("_", "-")


class NoRouteMatched(Rejection):
    status = 404
    reason = "no_route"
    title = "No route matches this request"


class BadRequest(Rejection):
    status = 400
    reason = "bad_request"
    title = "Bad request"


# Validation rejections carry the extensions `check` (which check failed), and where it applies
# `pointer` (RFC 6901, into the body, query or headers) and `expected`.


class ContentLengthMismatch(BadRequest):
    reason = "content_length_mismatch"
    title = "The body does not match its Content-Length"


class InvalidUtf8(BadRequest):
    reason = "invalid_utf8"
    title = "The body is not valid UTF-8"


class InvalidJson(BadRequest):
    reason = "invalid_json"
    title = "The body is not valid JSON"


class DuplicateJsonKey(BadRequest):
    reason = "duplicate_json_key"
    title = "A JSON object repeats a key"


class JsonTooComplex(BadRequest):
    reason = "json_too_complex"
    title = "The JSON body exceeds a structural limit"


class SchemaViolation(BadRequest):
    reason = "schema_violation"
    title = "The request does not match its schema"


class TooManyQueryParams(BadRequest):
    reason = "too_many_query_params"
    title = "Too many query parameters"


class FormRejected(BadRequest):
    reason = "form_rejected"
    title = "The form body is refused"


class UnsafeUrl(BadRequest):
    reason = "unsafe_url"
    title = "A URL field points at an internal address"


class MethodNotAllowed(Rejection):
    status = 405
    reason = "method_not_allowed"
    title = "Method not allowed"


class UriTooLong(Rejection):
    status = 414
    reason = "uri_too_long"
    title = "URI too long"


class HeaderFieldsTooLarge(Rejection):
    status = 431
    reason = "header_fields_too_large"
    title = "Request header fields too large"


class RequestTimeout(Rejection):
    status = 408
    reason = "request_timeout"
    title = "Request body timed out"
    closes_connection = True


class PayloadTooLarge(Rejection):
    status = 413
    reason = "payload_too_large"
    title = "Payload too large"


class AttackDetected(Rejection):
    status = 403
    reason = "attack_detected"
    title = "Request blocked by attack detection"


class UnsupportedMediaType(Rejection):
    status = 415
    reason = "unsupported_media_type"
    title = "Unsupported media type"


class AdminUnauthorized(Rejection):
    status = 401
    reason = "unauthorized"
    title = "Admin token required"


class AdminForbidden(Rejection):
    status = 403
    reason = "admin_forbidden"
    title = "The admin port answers loopback clients only"


class RateLimited(Rejection):
    status = 429
    reason = "rate_limited"
    title = "Too many requests"


class StoreUnavailable(Rejection):
    status = 503
    reason = "store_unavailable"
    title = "Rate-limit store unavailable"


class UpstreamConnectError(Rejection):
    status = 502
    reason = "upstream_connect_error"
    title = "Upstream unreachable"


class UpstreamTimeout(Rejection):
    status = 504
    reason = "upstream_timeout"
    title = "Upstream timed out"


class CircuitOpen(Rejection):
    status = 503
    reason = "circuit_open"
    title = "Upstream circuit open"


class BulkheadFull(Rejection):
    status = 503
    reason = "bulkhead_full"
    title = "Too many requests in flight to the upstream"


class RetryBudgetExhausted(Rejection):
    """A try failed without a response, and the route's retry budget allows no more retries."""

    status = 503
    reason = "retry_budget_exhausted"
    title = "Upstream failed and the retry budget is spent"


class InternalError(Rejection):
    status = 500
    reason = "gateway_exception"
    title = "Internal gateway error"


E = TypeVar("E", bound=BaseException)


def caused_by(error: E, cause: BaseException | None) -> E:
    """`raise caused_by(X(...), exc)` means `raise X(...) from exc` (and `None` means `from
    None`). The modules mypyc compiles (gateway/native.py) say it this way because mypyc 2.4
    compiles `raise ... from ...` without its `from`: the cause would be lost, and with it what
    logs and error events show as the reason behind an upstream or store failure."""
    error.__cause__ = cause
    error.__suppress_context__ = True
    return error

"""The gateway's exception tree; each rejection knows its status, reason code and problem type.

    GatewayError                      reason                  status
     ├── PolicyError                  (not a response: a policy file that cannot be loaded)
     └── Rejection                    every error that becomes an HTTP answer
          ├── NoRouteMatched          no_route                404
          ├── BadRequest              bad_request             400
          ├── PayloadTooLarge         payload_too_large       413
          ├── UnsupportedMediaType    unsupported_media_type  415
          ├── RateLimited             rate_limited            429
          ├── StoreUnavailable        store_unavailable       503
          ├── UpstreamConnectError    upstream_connect_error  502
          ├── UpstreamTimeout         upstream_timeout        504
          └── InternalError           gateway_exception       500

Foreign errors (aiohttp.ClientError, asyncio.TimeoutError, redis.RedisError) are mapped to these,
once, where they enter, with `raise ... from exc`. The reason code is one vocabulary shared by
problem+json bodies, metrics labels and error events.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

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


class PayloadTooLarge(Rejection):
    status = 413
    reason = "payload_too_large"
    title = "Payload too large"


class UnsupportedMediaType(Rejection):
    status = 415
    reason = "unsupported_media_type"
    title = "Unsupported media type"


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


class InternalError(Rejection):
    status = 500
    reason = "gateway_exception"
    title = "Internal gateway error"

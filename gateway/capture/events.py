"""The error event: what one failed request looked like, built from plain facts (no aiohttp)."""

from __future__ import annotations

import hashlib
import ipaddress
import time
import traceback
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Literal

from gateway.capture.reasons import category_of

ClientMode = Literal["hash", "truncate", "full", "omit"]
Severity = Literal["error", "warning"]

MAX_STACK = 8192
"""Characters of a stack trace kept; the innermost frames (the end) are the ones kept."""


@dataclass(frozen=True, slots=True)
class ExceptionInfo:
    type: str
    message: str
    stack: str


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """One failed request. Built raw on the request path; scrubbed by the processors after."""

    reason: str
    category: str
    severity: Severity
    status: int
    route: str
    method: str
    path: str
    query: str
    request_id: str | None
    traceparent: str | None
    client: str | None
    duration_ms: float
    upstream: str | None
    upstream_ms: float | None
    retry_count: int | None
    breaker_state: str | None
    detail: str | None
    exception: ExceptionInfo | None
    headers: tuple[tuple[str, str], ...]
    body_excerpt: str | None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: float = field(default_factory=time.time)
    fingerprint: str = ""
    group_count: int = 0

    @property
    def title(self) -> str:
        kind = self.exception.type if self.exception else self.reason
        return f"{kind}: {self.method} {self.route} -> {self.status}"

    def to_dict(self) -> dict[str, object]:
        # Shallow, by hand: dataclasses.asdict deep-copies every field, and this runs per event.
        data: dict[str, object] = {f.name: getattr(self, f.name) for f in _FIELDS}
        data["kind"] = "error"
        data["headers"] = dict(self.headers)
        data["exception"] = asdict(self.exception) if self.exception else None
        data["title"] = self.title
        return data


_FIELDS = fields(ErrorEvent)


def build_event(
    *,
    reason: str,
    status: int,
    route: str,
    method: str,
    path: str,
    query: str,
    headers: Iterable[tuple[str, str]],
    body: bytes | None,
    body_limit: int,
    client_ip: str | None,
    client_mode: ClientMode,
    client_salt: bytes,
    duration: float,
    request_id: str | None = None,
    upstream: str | None = None,
    upstream_seconds: float | None = None,
    retry_count: int | None = None,
    breaker_state: str | None = None,
    detail: str | None = None,
    exc: BaseException | None = None,
) -> ErrorEvent:
    """An unscrubbed event; cheap enough for the request path (the scrubbing runs later)."""
    header_pairs = tuple((name.lower(), value) for name, value in headers)
    return ErrorEvent(
        reason=reason,
        category=category_of(reason),
        severity="error" if status >= 500 else "warning",
        status=status,
        route=route,
        method=method,
        path=path,
        query=query,
        request_id=request_id,
        traceparent=next((v for n, v in header_pairs if n == "traceparent"), None),
        client=client_label(client_ip, client_mode, client_salt),
        duration_ms=round(duration * 1000, 3),
        upstream=upstream,
        upstream_ms=None if upstream_seconds is None else round(upstream_seconds * 1000, 3),
        retry_count=retry_count,
        breaker_state=breaker_state,
        detail=detail,
        exception=exception_info(exc) if exc is not None else None,
        headers=header_pairs,
        # Twice the excerpt is kept so that a secret cut by the limit is still recognised
        # by the scrubber, which trims to the limit afterwards.
        body_excerpt=(
            body[: body_limit * 2].decode("utf-8", "replace") if body and body_limit else None
        ),
    )


def exception_info(exc: BaseException) -> ExceptionInfo:
    stack = "".join(traceback.format_exception(exc))
    return ExceptionInfo(type(exc).__qualname__, str(exc), stack[-MAX_STACK:])


def client_label(ip: str | None, mode: ClientMode, salt: bytes) -> str | None:
    """The client as events show it: a salted hash, a /24 (/48) network, the address, or None."""
    if ip is None or mode == "omit":
        return None
    if mode == "full":
        return ip
    if mode == "hash":
        return hashlib.sha256(salt + ip.encode()).hexdigest()[:16]
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))

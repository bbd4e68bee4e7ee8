"""Sends events to Sentry through the real sentry-sdk, with a client of this sink's own.

No `sentry_sdk.init`: the global hub stays untouched (the application behind the gateway, or a
second sink, may have its own), and no integration patches anything. The SDK's transport sends
from its own worker thread, so a capture here only hands the event over; what the SDK loses
later (network error, 429, full queue) is reported through `on_lost`, from that thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import sentry_sdk
from sentry_sdk.transport import HttpTransport

from gateway.capture.alerts import AlertNotice
from gateway.capture.events import ErrorEvent
from gateway.capture.sinks import Item
from gateway.observability.logs import get_logger
from gateway.policy.errors import SentrySink as SentryConfig

if TYPE_CHECKING:
    from sentry_sdk._types import Event

log = get_logger("gateway.capture")

CLOSE_TIMEOUT = 2.0
LostHook = Callable[[str, str], None]
"""Called with (sink name, "lost") when the SDK drops an envelope it was handed."""


def sentry_event(event: ErrorEvent) -> dict[str, Any]:
    """Our scrubbed event in Sentry's event schema: tags, request and contexts."""
    tags = {
        "reason": event.reason,
        "category": event.category,
        "route": event.route,
        "status": str(event.status),
        "method": event.method,
    }
    if event.upstream:
        tags["upstream"] = event.upstream
    if event.breaker_state:
        tags["breaker_state"] = event.breaker_state
    payload: dict[str, Any] = {
        "event_id": event.id,
        "timestamp": event.timestamp,
        "level": event.severity,
        "logger": "gateway.capture",
        "message": {"formatted": event.detail or event.title},
        "fingerprint": [event.fingerprint],
        "tags": tags,
        "request": {
            "method": event.method,
            "url": event.path,
            "query_string": event.query,
            "headers": dict(event.headers),
            "data": event.body_excerpt,
        },
        "contexts": {
            "gateway": {
                "request_id": event.request_id,
                "client": event.client,
                "duration_ms": event.duration_ms,
                "upstream_ms": event.upstream_ms,
                "retry_count": event.retry_count,
            }
        },
    }
    trace = _trace_context(event.traceparent)
    if trace:
        payload["contexts"]["trace"] = trace
    if event.exception is not None:
        payload["exception"] = {
            "values": [{"type": event.exception.type, "value": event.exception.message}]
        }
        payload["extra"] = {"stack": event.exception.stack}
    return payload


def alert_event(notice: AlertNotice) -> dict[str, Any]:
    return {
        "event_id": notice.id,
        "timestamp": notice.at,
        "level": "warning" if notice.state == "fired" else "info",
        "logger": "gateway.alerts",
        "message": {"formatted": notice.summary},
        "fingerprint": ["gateway-alert", notice.rule],
        "tags": {"alert": notice.rule, "alert_state": notice.state},
    }


def _trace_context(traceparent: str | None) -> dict[str, str] | None:
    # W3C traceparent: version-traceid-parentid-flags
    parts = (traceparent or "").split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    return {"trace_id": parts[1], "span_id": parts[2]}


def _transport(sink: str, on_lost: LostHook | None) -> type[HttpTransport]:
    class ReportingTransport(HttpTransport):
        def on_dropped_event(self, reason: str) -> None:
            super().on_dropped_event(reason)
            log.warning("sink_delivery_failed", sink=sink, why=reason, by="sentry-sdk")
            if on_lost is not None:
                on_lost(sink, "lost")

    return ReportingTransport


class SentrySink:
    def __init__(self, config: SentryConfig, on_lost: LostHook | None = None) -> None:
        self.name = config.name
        self._client = sentry_sdk.Client(
            transport=_transport(config.name, on_lost),
            dsn=config.dsn,
            environment=config.environment,
            release=config.release,
            default_integrations=False,
            auto_enabling_integrations=False,
            integrations=[],
            max_breadcrumbs=0,
            send_client_reports=False,  # the SDK's own telemetry would count as our losses
            shutdown_timeout=CLOSE_TIMEOUT,
        )

    async def send(self, batch: Sequence[Item]) -> None:
        for item in batch:
            payload = alert_event(item) if isinstance(item, AlertNotice) else sentry_event(item)
            self._client.capture_event(cast("Event", payload))

    async def close(self) -> None:
        # close() flushes the SDK's queue and joins its thread: keep it off the event loop.
        await asyncio.to_thread(self._client.close, CLOSE_TIMEOUT)

"""Policy models for a route's upstream resilience: circuit breaker, retries, timeouts, bulkhead."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from gateway.policy.types import Bytes, Fraction, Model, Seconds
from gateway.units import parse_duration

ERROR_KINDS = ("connect_error", "timeout")
"""Failures that carry no status: the connection failed, or no answer came in time."""

IDEMPOTENT = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")


def _parse_trigger(value: object) -> int | str:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value
    if value in ERROR_KINDS:
        return str(value)
    raise ValueError(
        f"invalid outcome {value!r} (use a status such as 503, connect_error or timeout)"
    )


Trigger = Annotated[int | str, BeforeValidator(_parse_trigger)]
"""An upstream status (502) or an error kind (connect_error, timeout)."""

_DURATION_SCHEMA = {"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h|d)$"}
_PERCENT_SCHEMA = {"type": "string", "pattern": r"^\d+(\.\d+)?%$"}


def _or_shorthand(*shorthands: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """A JSON Schema hook: the model's object form, or the scalar shorthand it also accepts."""

    def extra(schema: dict[str, Any]) -> None:
        body = dict(schema)
        schema.clear()
        schema["anyOf"] = [*shorthands, body]

    return extra


class Window(Model):
    """The sliding window the failure and slow-call rates are computed over."""

    type: Literal["count", "time"] = "count"
    size: Annotated[
        float,
        WithJsonSchema(
            {
                "anyOf": [{"type": "integer", "minimum": 1}, _DURATION_SCHEMA],
                "description": "count: the last N calls; time: the last 60s (whole seconds).",
            }
        ),
    ] = 100

    @field_validator("size", mode="before")
    @classmethod
    def _size(cls, value: object, info: ValidationInfo) -> object:
        if info.data.get("type") == "time":
            seconds = parse_duration(value)
            if seconds < 1:
                raise ValueError(f"invalid time window {value!r} (at least 1s)")
            return seconds
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"invalid count window {value!r} (a number of calls, at least 1)")
        return value


class SlowCall(Model):
    """Calls slower than `duration` count as slow; at `rate` slow calls the breaker opens."""

    duration: Seconds
    rate: Fraction = 1.0


class Fallback(Model):
    """What a request gets while the breaker is open."""

    status: int = Field(default=503, ge=400, le=599)
    retry_after: bool = Field(default=True, description="Send Retry-After: the time left open.")


class CircuitBreaker(Model):
    """Resilience4j's breaker: closed -> open -> half_open -> closed, over a sliding window."""

    mode: Literal["enforce", "shadow", "off"] = Field(
        default="enforce", description="shadow: compute the state, export it, reject nothing."
    )
    scope: Literal["route", "upstream"] = Field(
        default="route",
        description="route: one breaker per route; upstream: one per upstream URL, shared "
        "by the routes that use it (the first route's definition wins).",
    )
    window: Window = Window()
    min_calls: int = Field(default=20, ge=1)
    failure_rate: Fraction = 0.5
    slow_call: SlowCall | None = None
    failure_on: tuple[Trigger, ...] = (502, 503, 504, "connect_error", "timeout")
    open_for: Seconds = 30.0
    half_open_calls: int = Field(default=5, ge=1)
    fallback: Fallback = Fallback()


class Backoff(Model):
    """Exponential backoff between tries: base * 2^n, capped at max, with full jitter."""

    base: Seconds = 0.025
    max: Seconds = 1.0
    jitter: Literal["full", "none"] = "full"


class RetryBudget(Model):
    """Retries allowed over the last `window`: ratio * requests + min_per_second * window."""

    model_config = ConfigDict(
        json_schema_extra=_or_shorthand(
            _PERCENT_SCHEMA, {"type": "number", "minimum": 0, "maximum": 1}
        )
    )
    ratio: Fraction = 0.2
    min_per_second: float = Field(default=1.0, ge=0)
    window: Seconds = 10.0


class Retry(Model):
    """Retry failed tries, idempotent methods only unless the route lists others."""

    attempts: int = Field(default=3, ge=1, le=10, description="Total tries, the first included.")
    on: tuple[Trigger, ...] = ("connect_error", 502, 503, 504)
    backoff: Backoff = Backoff()
    methods: tuple[str, ...] = IDEMPOTENT
    budget: RetryBudget = RetryBudget()
    respect_retry_after: bool = True
    max_retry_after: Seconds = Field(
        default=5.0,
        description="An upstream Retry-After (429/503) longer than this is not waited for: "
        "its response goes back to the client.",
    )
    buffer_body: Bytes = Field(
        default=64 * 1024,
        le=1024 * 1024,
        description="Request bodies up to this size are buffered so they can be sent again; "
        "larger or unsized ones are never retried.",
    )

    @field_validator("budget", mode="before")
    @classmethod
    def _ratio_shorthand(cls, value: object) -> object:
        # `budget: 20%` is the common case; the mapping form sets the floor and window too.
        return {"ratio": value} if isinstance(value, str | int | float) else value

    @field_validator("methods")
    @classmethod
    def _upper(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from gateway.policy.model import HTTP_METHODS

        upper = tuple(m.upper() for m in value)
        unknown = [m for m in upper if m not in HTTP_METHODS]
        if unknown:
            raise ValueError(f"unknown HTTP method {unknown[0]!r}")
        return upper


class Timeout(Model):
    """per_try bounds each try until response headers; total bounds all tries and backoffs."""

    per_try: Seconds | None = None
    total: Seconds | None = None


class Bulkhead(Model):
    """At most `limit` requests in flight to the upstream; `queue` more may wait `max_wait`."""

    model_config = ConfigDict(json_schema_extra=_or_shorthand({"type": "integer", "minimum": 1}))
    limit: int = Field(ge=1)
    queue: int = Field(default=0, ge=0)
    max_wait: Seconds = 0.0

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        # `max_concurrent: 100` means a limit with no queue.
        return {"limit": value} if isinstance(value, int) else value

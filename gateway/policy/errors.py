"""The `errors:` block: what is captured, how it is scrubbed and grouped, sinks and alert rules."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from gateway.capture.alerts import Condition, parse_condition
from gateway.capture.reasons import CATEGORIES, EXTRA_DEFAULTS, known_names
from gateway.policy.types import Bytes, Fraction, Model, Seconds

PatternName = Literal["credit_card", "bearer_token", "jwt", "api_key", "email"]
DEFAULT_PATTERNS: tuple[PatternName, ...] = ("credit_card", "bearer_token", "jwt", "api_key")

_NAME = r"^[A-Za-z0-9_.-]+$"


def _known(value: str) -> str:
    if value not in known_names():
        raise ValueError(
            f"unknown reason {value!r} (use one of: {', '.join(sorted(known_names()))})"
        )
    return value


def _email(value: str) -> str:
    if not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", value):
        raise ValueError(f"invalid email address {value!r} (use name@example.com)")
    return value


Reason = Annotated[str, AfterValidator(_known)]
"""A capture category or a rejection reason of gateway.errors."""

Email = Annotated[str, AfterValidator(_email)]


def _condition(value: object) -> Condition:
    return parse_condition(value, known_names())


AlertWhen = Annotated[
    Condition,
    PlainValidator(_condition),
    PlainSerializer(lambda condition: condition.text, return_type=str),
    WithJsonSchema({"type": "string", "description": 'e.g. "rate(upstream_5xx) > 5/min"'}),
]
"""An alert condition, parsed when the policy loads."""


class Scrub(Model):
    """Extra names and patterns to scrub; the built-in lists always apply as well."""

    headers: tuple[str, ...] = Field(
        default=(),
        description="Header names whose values are replaced, besides authorization, cookie, "
        "set-cookie, x-api-key, proxy-authorization and Sentry's denylist.",
    )
    fields: tuple[str, ...] = Field(
        default=(), description="Field names (body, query) besides Sentry's denylist."
    )
    patterns: tuple[PatternName, ...] = DEFAULT_PATTERNS
    custom_patterns: tuple[str, ...] = Field(default=(), description="Extra regexes to scrub.")

    @field_validator("custom_patterns")
    @classmethod
    def _compiles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
        return value


class DropRule(Model):
    """Events matching every given condition are dropped before grouping."""

    reason: Reason | None = None
    route: str | None = None
    status: int | None = None


class Delivery(Model):
    """The intake queue and the batching of deliveries."""

    queue_size: int = Field(default=1000, ge=1)
    batch_size: int = Field(default=50, ge=1)
    flush_interval: Seconds = 1.0
    alert_interval: Seconds = Field(default=1.0, description="How often alert rules are checked.")


class _SinkBase(Model):
    name: str = Field(pattern=_NAME, max_length=64)
    events: bool = Field(default=True, description="Receive error events (not only alerts).")
    retries: int = Field(default=3, ge=0, le=10)
    backoff: Seconds = Field(default=0.5, description="First retry delay; doubles each time.")
    timeout: Seconds = 5.0
    queue_size: int = Field(default=1000, ge=1)


class WebhookSink(_SinkBase):
    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://\S+$")
    format: Literal["json", "slack"] = "json"
    headers: dict[str, str] = Field(default_factory=dict)


class SentrySink(_SinkBase):
    type: Literal["sentry"]
    dsn: str = Field(description="Empty (an unset ${SENTRY_DSN}) disables the sink.")
    environment: str | None = None
    release: str | None = None

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^@/\s]+@[^/\s]+/\S+$", value):
            raise ValueError(f"invalid Sentry DSN {value!r} (use https://KEY@HOST/PROJECT)")
        return value


class EmailSink(_SinkBase):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    type: Literal["email"]
    events: bool = Field(default=False, description="Mail every event batch, not only alerts.")
    smtp: str = Field(pattern=r"^smtps?://[^/:\s]+(:\d+)?/?$")
    sender: Email = Field(alias="from")
    to: tuple[Email, ...] = Field(min_length=1)
    starttls: bool = True
    username: str | None = None
    password: str | None = None
    ca_file: str | None = Field(default=None, description="CA bundle to verify the server.")
    subject_prefix: str = "[gateway]"


Sink = Annotated[WebhookSink | SentrySink | EmailSink, Field(discriminator="type")]


class AlertRule(Model):
    name: str = Field(pattern=_NAME, max_length=64)
    when: AlertWhen
    sinks: tuple[str, ...] = Field(min_length=1)
    min_requests: int = Field(default=0, ge=0)
    cooldown: Seconds = 300.0


class ErrorsPolicy(Model):
    """Error capture: every failure becomes a scrubbed, grouped event delivered to sinks."""

    capture: tuple[Reason, ...] = CATEGORIES + EXTRA_DEFAULTS
    body_excerpt: Bytes = 2048
    client: Literal["hash", "truncate", "full", "omit"] = Field(
        default="hash", description="How the client address appears in events."
    )
    fingerprint: tuple[
        Literal["reason", "category", "route", "status", "exception_type", "method"], ...
    ] = (
        "reason",
        "route",
        "status",
        "exception_type",
    )
    sample: dict[str, Fraction] = Field(
        default={}, description="Share of events kept per reason or category ('*': the rest)."
    )
    drop: tuple[DropRule, ...] = ()
    scrub: Scrub = Scrub()
    max_groups: int = Field(default=1000, ge=1)
    recent: int = Field(default=100, ge=0, description="Recent events kept for the admin port.")
    delivery: Delivery = Delivery()
    sinks: tuple[Sink, ...] = ()
    alerts: tuple[AlertRule, ...] = ()

    @field_validator("sample")
    @classmethod
    def _sample_known(cls, value: dict[str, float]) -> dict[str, float]:
        for name in value:
            if name != "*":
                _known(name)
        return value

    @model_validator(mode="after")
    def _sinks_exist(self) -> ErrorsPolicy:
        names = [sink.name for sink in self.sinks]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"sink name {name!r} is used twice")
        for rule in self.alerts:
            for sink in rule.sinks:
                if sink not in names:
                    raise ValueError(
                        f"alert {rule.name!r} names unknown sink {sink!r} "
                        f"(known: {', '.join(names) or 'none'})"
                    )
        return self

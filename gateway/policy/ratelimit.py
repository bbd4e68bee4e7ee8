"""The rate-limit blocks of the policy: the per-route `rate_limit:` rules and the store options."""

from __future__ import annotations

import re
import zoneinfo
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, field_validator, model_validator

from gateway.policy.types import Fraction, Model, Seconds

KEY_PARTS = ("client_ip", "route", "method", "path")
_PREFIXED = re.compile(r"^(header|jwt):[A-Za-z0-9_.-]+$")
_CLIENT_IP_PREFIX = re.compile(r"^client_ip/(\d{1,3})$")


def _check_key_part(part: str) -> str:
    if part in KEY_PARTS or _PREFIXED.match(part):
        return part
    match = _CLIENT_IP_PREFIX.match(part)
    if match and 1 <= int(match.group(1)) <= 128:
        return part
    raise ValueError(
        f"unknown key part {part!r} (use client_ip, client_ip/48, header:NAME, jwt:CLAIM, "
        "route, method, path)"
    )


class Adaptive(Model):
    """Scale a rule's limit down while CPU stays high, and back up as it falls."""

    cpu_above: Fraction = Field(default=0.8, description="The CPU use that starts throttling.")
    source: Literal["system", "process"] = Field(
        default="system", description="system: the whole machine; process: this gateway."
    )
    min_factor: Fraction = Field(default=0.25, description="The limit is never scaled below.")


class RateLimitRule(Model):
    """One counter: who is counted together (key), how many (limit) and over what time."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)
    key: tuple[str, ...] = Field(
        default=("client_ip",),
        min_length=1,
        description="Parts of the counter key; a request missing a part is counted under an "
        "explicit anonymous bucket. Without `route`, routes sharing an identical rule share "
        "its counters.",
    )
    limit: int = Field(ge=1, description="Requests (or cost units) admitted per window.")
    window: Seconds | None = Field(
        default=None,
        description="Rolling or fixed window length; or use `calendar`. For concurrency: the "
        "longest a slot is held (default 5m), so a crashed replica's slots come back.",
    )
    calendar: Literal["day", "month"] | None = Field(
        default=None, description="A quota that resets at midnight or on the 1st in `timezone`."
    )
    timezone: str = "UTC"
    algorithm: Literal["fixed_window", "sliding_window", "token_bucket", "concurrency"] = Field(
        default="sliding_window",
        description="concurrency: `limit` requests in flight at once per key (429 beyond).",
    )
    burst: int | None = Field(
        default=None, ge=1, description="token_bucket only: bucket size (default: limit)."
    )
    max_wait: Seconds = Field(
        default=0.0,
        description="concurrency only: how long a request may queue for a free slot before "
        "its 429.",
    )
    mode: Literal["enforce", "shadow", "off"] = "enforce"
    cost: int = Field(default=1, ge=1, description="Units each request takes from the limit.")
    adaptive: Adaptive | None = Field(
        default=None, description="Scale the limit down under CPU pressure (sampled each second)."
    )
    jwt_hs256_secret: str | None = Field(
        default=None,
        description="For jwt:CLAIM key parts: verify HS256 signatures with this secret (write "
        "${ENV_VAR}); without it claims are read unverified.",
        repr=False,
    )
    headers: Literal["both", "draft", "legacy", "none"] = Field(
        default="both",
        description="draft: RateLimit-Policy/RateLimit (IETF draft-11); legacy: X-RateLimit-*.",
    )

    @field_validator("key")
    @classmethod
    def _known_parts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_key_part(part) for part in value)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use e.g. UTC, Europe/Paris)") from None
        return value

    @model_validator(mode="after")
    def _one_period(self) -> Self:
        if self.algorithm == "concurrency":
            if self.calendar is not None:
                raise ValueError("algorithm: concurrency takes no calendar")
        elif (self.window is None) == (self.calendar is None):
            raise ValueError("give exactly one of window (e.g. 1m) or calendar (day, month)")
        if self.window is not None and self.window <= 0:
            raise ValueError("window must be longer than 0s")
        if self.calendar is not None and self.algorithm != "fixed_window":
            raise ValueError("calendar quotas use algorithm: fixed_window")
        if self.max_wait > 0 and self.algorithm != "concurrency":
            raise ValueError("max_wait applies to algorithm: concurrency only")
        if self.burst is not None and self.algorithm != "token_bucket":
            raise ValueError("burst applies to algorithm: token_bucket only")
        return self


def _unique_names(rules: tuple[RateLimitRule, ...]) -> tuple[RateLimitRule, ...]:
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise ValueError(f"rate-limit rule name {rule.name!r} is used twice in this route")
        seen.add(rule.name)
    return rules


RateLimitRules = Annotated[tuple[RateLimitRule, ...], AfterValidator(_unique_names)]
"""A route's rules; names are unique within the route (they label metrics and headers)."""


class StoreOptions(Model):
    """The rate-limit store's options beyond its URL, and what happens while it fails."""

    namespace: str = Field(
        default="gw",
        pattern=r"^[A-Za-z0-9_.-]{1,32}$",
        description="Prefix of every Redis key (gw:rl:...): deployments sharing one Redis "
        "with different namespaces never share counters.",
    )

    on_error: Literal["open", "closed", "local"] = Field(
        default="local",
        description="open: admit and count; closed: 503; local: count in memory with the "
        "limit divided by `replicas`, back to the store when it answers again.",
    )
    replicas: int = Field(default=1, ge=1, description="Gateway replicas sharing the store.")
    timeout: Seconds = Field(default=0.25, description="Per-command store timeout.")
    retry_interval: Seconds = Field(
        default=1.0, description="While failed over, how often the store is tried again."
    )
    max_keys: int = Field(
        default=100_000, ge=1, description="Memory store cap; least recently used keys go first."
    )
    required_for_readiness: bool = Field(
        default=False, description="When true, /readyz fails while the store is failed over."
    )

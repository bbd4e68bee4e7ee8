"""The policy file as typed, frozen objects; every default lives here.

Each capability (rate limiting, validation, circuit breaking, error capture) adds its block to
`Route` or `Policy` from a module of its own in this package.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from gateway.policy.admin import Admin
from gateway.policy.errors import ErrorsPolicy
from gateway.policy.ratelimit import RateLimitRules, StoreOptions
from gateway.policy.resilience import Bulkhead, CircuitBreaker, Retry, Timeout
from gateway.policy.types import HTTP_METHODS as HTTP_METHODS  # re-exported for old importers
from gateway.policy.types import Bytes, Fraction, HttpMethod, Model, Network, Seconds
from gateway.policy.validation import Validation


def _parse_host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise ValueError(f"invalid listen address {value!r} (use HOST:PORT, e.g. 0.0.0.0:8080)")
    return value


class Listen(Model):
    """Where the gateway's four listeners bind."""

    proxy: str = "0.0.0.0:8080"
    health: str = "0.0.0.0:8081"
    metrics: str = "0.0.0.0:9090"
    admin: str = "127.0.0.1:8082"

    @field_validator("proxy", "health", "metrics", "admin")
    @classmethod
    def _host_port(cls, value: str) -> str:
        return _parse_host_port(value)


class Upstream(Model):
    """The application the gateway protects."""

    url: str | None = Field(
        default=None,
        description="The upstream's base URL; when absent the gateway serves a built-in demo app.",
    )
    connect_timeout: Seconds = 1.0
    timeout: Seconds = 30.0
    max_connections: int = Field(default=256, ge=1)
    client: Literal["lean", "aiohttp"] = Field(
        default="lean",
        description="lean: pooled connections on llhttp (fast); aiohttp: aiohttp's ClientSession.",
    )
    host_header: Literal["preserve", "upstream"] = Field(
        default="preserve",
        description="preserve: send the client's Host; upstream: send the upstream URL's host.",
    )

    @field_validator("url", mode="before")
    @classmethod
    def _http_url(cls, value: object) -> object:
        if value == "":
            return None  # `url: "${UPSTREAM_URL:-}"` with the variable unset
        if isinstance(value, str) and not re.match(r"^https?://[^/\s]+(/.*)?$", value):
            raise ValueError(f"invalid upstream url {value!r} (use http://host:port)")
        return value.rstrip("/") if isinstance(value, str) else value


class Store(StoreOptions):
    """Where shared state (rate-limit counters) lives, and what happens when it fails."""

    url: str = "memory://"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = value.partition("://")[0]
        if scheme not in {"memory", "redis", "rediss", "redis+sentinel", "redis+cluster"}:
            raise ValueError(
                f"unknown store {value!r} (use memory://, redis://host:6379/0 or rediss://...)"
            )
        return value


class Match(Model):
    """Which requests a route takes; every given condition must hold."""

    path: str | None = None
    path_prefix: str | None = None
    path_regex: str | None = None
    host: str | None = None
    methods: tuple[HttpMethod, ...] | None = None

    @field_validator("path_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value

    @field_validator("path", "path_prefix")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"path {value!r} must start with '/'")
        return value


class Route(Model):
    """One route: which requests it takes and the policies applied to them."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)
    match: Match = Match()
    upstream: Upstream | None = Field(
        default=None, description="Overrides the top-level upstream for this route."
    )
    validation: Validation | None = None
    rate_limit: RateLimitRules = Field(
        default=(), description="Every rule must admit the request; the tightest one answers."
    )
    circuit_breaker: CircuitBreaker | None = None
    retry: Retry | None = None
    timeout: Timeout = Timeout()
    max_concurrent: Bulkhead | None = Field(
        default=None,
        description="Bulkhead: requests in flight to the upstream (100, or "
        "{limit: 100, queue: 10, max_wait: 100ms}).",
    )


class Forwarding(Model):
    """How the gateway learns the client's address and what it tells the upstream."""

    trusted_proxies: tuple[Network, ...] = Field(
        default=(),
        description="Peers whose X-Forwarded-For is believed; the client is the right-most "
        "address not in this list.",
    )


class AccessLog(Model):
    """The per-request access log line."""

    mode: Literal["on", "off", "errors", "sampled"] = "on"
    sample_rate: Fraction = 0.01

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: object) -> object:
        # YAML 1.1 reads a bare `on`/`off` as a boolean; that is what the author meant.
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


class Logging(Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    access: AccessLog = AccessLog()


class DependencyCheck(Model):
    """An extra dependency probed by the health port (e.g. the app's database)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    type: Literal["tcp", "http"]
    target: str = Field(description="HOST:PORT for tcp, a URL for http.")
    timeout: Seconds = 1.0
    interval: Seconds = 10.0
    required: bool = Field(default=False, description="When true, /readyz fails while it fails.")


class Health(Model):
    checks: tuple[DependencyCheck, ...] = ()
    max_event_loop_lag: Seconds = Field(
        default=1.0, description="Beyond this lag /livez reports the event loop as stuck."
    )


class Shutdown(Model):
    drain: Seconds = Field(
        default=5.0, description="How long connections are still served after SIGTERM."
    )
    grace: Seconds = Field(
        default=10.0, description="How long in-flight requests may take to finish after drain."
    )


class Limits(Model):
    """Protocol limits enforced by the HTTP parser itself."""

    max_header_line: Bytes = 8190
    max_header_size: Bytes = 8190
    header_timeout: Seconds = Field(
        default=75.0,
        description="How long a connection may take to send a whole request head, counted from "
        "its opening or its previous response, before it is closed: bounds slow-header "
        "(slowloris) clients and idle keep-alive connections.",
    )
    body_timeout: Seconds = Field(
        default=60.0,
        description="The longest pause between two pieces of a request body the gateway reads "
        "itself (validation, attack scan) before answering 408; a streamed body is bounded by "
        "the upstream's timeout instead.",
    )


class Policy(Model):
    """The whole policy file."""

    version: Literal[1] = 1
    listen: Listen = Listen()
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Processes serving the proxy port together (SO_REUSEPORT), one per core; "
        "only the first serves the health, metrics and admin ports. Read at start only.",
    )
    upstream: Upstream = Upstream()
    store: Store = Store()
    forwarding: Forwarding = Forwarding()
    logging: Logging = Logging()
    health: Health = Health()
    shutdown: Shutdown = Shutdown()
    limits: Limits = Limits()
    errors: ErrorsPolicy = ErrorsPolicy()
    admin: Admin = Admin()
    routes: tuple[Route, ...] = Field(min_length=1)

"""The compiled policy: the route table and per-route runtime objects, built once per load.

A reload compiles a new `CompiledPolicy` off to the side and swaps it in with one assignment;
requests already in flight keep the one they started with.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from gateway.observability.request_log import AccessMode
from gateway.policy.loader import LoadedPolicy, load_policy
from gateway.policy.model import Match, Policy, Route, Upstream
from gateway.ratelimit.limiter import RouteLimiter
from gateway.resilience.compile import ResilienceCompiler, RouteResilience
from gateway.upstream.client import Timeouts
from gateway.upstream.headers import IPNetwork, parse_networks
from gateway.validation.attacks import AttackDetector, EngineCache, compile_attacks
from gateway.validation.validator import Validator, compile_validator


@dataclass(frozen=True, slots=True)
class UpstreamTarget:
    """Where a route's requests go and how long they may take."""

    base_url: str
    host: str
    preserve_host: bool
    timeouts: Timeouts

    @classmethod
    def from_policy(cls, upstream: Upstream, default_url: str) -> UpstreamTarget:
        base_url = upstream.url or default_url
        return cls(
            base_url=base_url,
            host=urlsplit(base_url).netloc,
            preserve_host=upstream.host_header == "preserve",
            timeouts=Timeouts(connect=upstream.connect_timeout, read=upstream.timeout),
        )


@dataclass(frozen=True, slots=True)
class RouteMatcher:
    """One route's match conditions, compiled."""

    path: str | None
    path_prefix: str | None
    path_regex: re.Pattern[str] | None
    host: str | None
    host_suffix: str | None
    methods: frozenset[str] | None

    @classmethod
    def compile(cls, match: Match) -> RouteMatcher:
        host = match.host.lower() if match.host else None
        suffix = host[1:] if host and host.startswith("*.") else None
        return cls(
            path=match.path,
            path_prefix=match.path_prefix,
            path_regex=re.compile(match.path_regex) if match.path_regex else None,
            host=None if suffix else host,
            host_suffix=suffix,
            methods=frozenset(match.methods) if match.methods else None,
        )

    def matches(self, method: str, host: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if self.path is not None and path != self.path:
            return False
        if self.path_prefix is not None and not path.startswith(self.path_prefix):
            return False
        if self.path_regex is not None and self.path_regex.match(path) is None:
            return False
        if self.host is not None or self.host_suffix is not None:
            bare = host.rpartition(":")[0] if host.count(":") == 1 else host
            bare = bare.lower()
            if self.host is not None and bare != self.host:
                return False
            if self.host_suffix is not None and not bare.endswith(self.host_suffix):
                return False
        return True


@dataclass(frozen=True, slots=True)
class RouteRuntime:
    """Everything a request on this route needs, derived once from the policy.

    Each capability adds its compiled object here (limiter, validator, breaker, ...).
    """

    name: str
    policy: Route
    matcher: RouteMatcher
    upstream: UpstreamTarget
    limiter: RouteLimiter | None = None
    resilience: RouteResilience | None = None
    validator: Validator | None = None
    attacks: AttackDetector | None = None


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    loaded: LoadedPolicy
    generation: int
    routes: tuple[RouteRuntime, ...]
    trusted_proxies: tuple[IPNetwork, ...]
    access_mode: AccessMode = "on"
    """The access log's mode and sample rate, read per response: copied out of the policy's
    model, whose attributes cost a lookup by name each."""
    access_sample_rate: float = 1.0
    loaded_at: float = field(default_factory=time.time)

    @property
    def policy(self) -> Policy:
        return self.loaded.policy

    def route_for(self, method: str, host: str, path: str) -> RouteRuntime | None:
        """The first route whose conditions all hold, or None."""
        for route in self.routes:
            if route.matcher.matches(method, host, path):
                return route
        return None


def compile_policy(
    loaded: LoadedPolicy,
    *,
    generation: int,
    default_upstream_url: str,
    previous: CompiledPolicy | None = None,
) -> CompiledPolicy:
    """Build the runtime objects; `previous` lets stateful parts keep their state on reload."""
    policy = loaded.policy
    resilience = ResilienceCompiler(
        (r.resilience for r in previous.routes) if previous else (),
        policy.upstream.url or default_upstream_url,
    )
    engines: EngineCache = {
        r.attacks.ruleset_key: r.attacks.engine
        for r in (previous.routes if previous else ())
        if r.attacks is not None
    }
    routes = tuple(
        RouteRuntime(
            name=route.name,
            policy=route,
            matcher=RouteMatcher.compile(route.match),
            upstream=UpstreamTarget.from_policy(
                route.upstream or policy.upstream, policy.upstream.url or default_upstream_url
            ),
            resilience=resilience.compile(route),
            # Counters live in the store under keys naming the rule's definition: an unchanged
            # rule finds its counters again after a reload, a changed one starts afresh.
            limiter=RouteLimiter(route.rate_limit, on_error=policy.store.on_error)
            if route.rate_limit
            else None,
            # JSON Schemas and sanitizers are compiled here, once per load, never per request.
            validator=compile_validator(route, index, loaded.source),
            # A ruleset takes a few hundred ms to compile: shared by routes, kept across reloads.
            attacks=compile_attacks(route, index, loaded.source, engines),
        )
        for index, route in enumerate(policy.routes)
    )
    return CompiledPolicy(
        loaded=loaded,
        generation=generation,
        routes=routes,
        trusted_proxies=parse_networks(policy.forwarding.trusted_proxies),
        access_mode=policy.logging.access.mode,
        access_sample_rate=policy.logging.access.sample_rate,
    )


def check_policy(path: str) -> LoadedPolicy:
    """Load and compile a policy as `run` would, so that `check` also sees what only compiling
    finds (a schema file that is missing or invalid, a rules directory that does not load)."""
    loaded = load_policy(path)
    compile_policy(loaded, generation=0, default_upstream_url="http://127.0.0.1:9")
    return loaded

"""The process-wide state every port shares, and the typed keys to reach it."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from gateway.errors import PolicyError, Rejection
from gateway.observability.logs import get_logger
from gateway.observability.metrics import GatewayMetrics
from gateway.policy.loader import LoadedPolicy, load_policy
from gateway.policy.model import Policy
from gateway.runtime import CompiledPolicy, RouteRuntime, compile_policy
from gateway.stores import LimitStore, MemoryStore
from gateway.upstream.client import UpstreamClient

if TYPE_CHECKING:
    from gateway.capture.service import CaptureService

log = get_logger("gateway.policy")


@dataclass(frozen=True, slots=True)
class ReloadRecord:
    at: float
    result: str  # success | failure | unchanged
    generation: int
    sha256: str | None
    errors: tuple[str, ...] = ()
    trigger: str = "start"  # start | watch | sighup | admin


@dataclass(eq=False)
class GatewayState:
    """What the proxy, health, metrics and admin apps share within one process."""

    current: CompiledPolicy
    metrics: GatewayMetrics
    upstream: UpstreamClient
    policy_path: str | None = None
    default_upstream_url: str = "http://127.0.0.1:3000"
    started_at: float = field(default_factory=time.time)
    draining: bool = False
    reloads: deque[ReloadRecord] = field(default_factory=lambda: deque(maxlen=20))
    limit_store: LimitStore = field(default_factory=MemoryStore)
    """Rate-limit counters; serve.py opens the policy's store at start and closes it at stop."""
    health_components: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)
    """Extra /health components by name; a `{"status": "fail", "required": True}` one
    also fails /readyz."""
    capture: CaptureService | None = None
    """Error capture; the proxy app's cleanup context opens it (middleware/capture.py)."""

    @classmethod
    def create(
        cls,
        loaded: LoadedPolicy,
        *,
        metrics: GatewayMetrics,
        upstream: UpstreamClient,
        policy_path: str | None,
        default_upstream_url: str,
    ) -> GatewayState:
        compiled = compile_policy(loaded, generation=1, default_upstream_url=default_upstream_url)
        metrics.policy_generation.set(1)
        state = cls(compiled, metrics, upstream, policy_path, default_upstream_url)
        _observe_breakers(compiled, metrics)
        state.reloads.append(ReloadRecord(time.time(), "success", 1, loaded.sha256))
        return state

    def reload(self, trigger: str = "watch") -> bool:
        """Load the policy file again; keep serving the last good policy if it is refused.

        `trigger` (watch, sighup, admin) only labels the record and the log line.
        """
        assert self.policy_path is not None
        serving = self.current
        try:
            loaded = load_policy(self.policy_path)
            if loaded.sha256 == serving.loaded.sha256:
                self._record("unchanged", serving.generation, loaded.sha256, trigger)
                return True
            compiled = compile_policy(
                loaded,
                generation=serving.generation + 1,
                default_upstream_url=self.default_upstream_url,
                previous=serving,
            )
        except Exception as exc:
            # A compile step that fails for any reason must not take the gateway down with it.
            messages = (
                exc.messages
                if isinstance(exc, PolicyError)
                else [f"{self.policy_path}: cannot compile the policy: {exc!r}"]
            )
            self._record("failure", serving.generation, None, trigger, messages)
            log.error(
                "policy_reload_refused",
                path=self.policy_path,
                trigger=trigger,
                errors=messages,
                serving_generation=serving.generation,
            )
            return False
        _observe_breakers(compiled, self.metrics)
        # One assignment: a request already routed keeps the RouteRuntime it started with.
        self.current = compiled
        self.metrics.policy_generation.set(compiled.generation)
        self._record("success", compiled.generation, loaded.sha256, trigger)
        restart_only = _needs_restart(serving.policy, loaded.policy)
        log.info(
            "policy_reloaded",
            path=self.policy_path,
            trigger=trigger,
            generation=compiled.generation,
            sha256=loaded.sha256,
            **({"needs_restart": restart_only} if restart_only else {}),
        )
        return True

    def _record(
        self,
        result: str,
        generation: int,
        sha256: str | None,
        trigger: str,
        errors: list[str] | None = None,
    ) -> None:
        self.metrics.policy_reloads.labels(result).inc()
        self.reloads.append(
            ReloadRecord(time.time(), result, generation, sha256, tuple(errors or ()), trigger)
        )


def _needs_restart(old: Policy, new: Policy) -> list[str]:
    """Keys read once at start (bound sockets, the parser, the pool): a reload keeps the old."""
    fixed: dict[str, Callable[[Policy], object]] = {
        "listen": lambda p: p.listen,
        "limits": lambda p: p.limits,
        "store": lambda p: p.store,
        "logging.level": lambda p: p.logging.level,
        "upstream.max_connections": lambda p: p.upstream.max_connections,
        "upstream.client": lambda p: p.upstream.client,
    }
    return [key for key, read in fixed.items() if read(old) != read(new)]


STATE = web.AppKey("gateway_state", GatewayState)
REQUEST_ID: Final = web.RequestKey("request_id", str)
ROUTE: Final = web.RequestKey("route", RouteRuntime)
CLIENT_IP: Final = web.RequestKey("client_ip", str)
BYTES_IN: Final = web.RequestKey("bytes_in", int)
BYTES_OUT: Final = web.RequestKey("bytes_out", int)
UPSTREAM_SECONDS: Final = web.RequestKey("upstream_seconds", float)
"""Time until the upstream's response headers, for the access log."""
RETRIES: Final = web.RequestKey("retries", int)
"""Upstream attempts beyond the first, set by the upstream step; error events report it."""
UNENFORCED: Final = web.RequestKey("unenforced_rejection", Rejection)
"""A rejection a step decided but did not enforce (attack detection in detect mode): the request
goes on, and the capture step still emits its error event."""
BREAKER_STATE: Final = web.RequestKey("breaker_state", str)
"""The route's breaker state seen by this request (closed, open, half_open); for error events."""
BODY: Final = web.RequestKey("body", bytes)
"""The request body, once a step had to read it whole (validation, retries); the proxy then
sends these bytes, with their own Content-Length, instead of streaming the client's body."""


def _observe_breakers(compiled: CompiledPolicy, metrics: GatewayMetrics) -> None:
    """Export every breaker's state from the moment its policy serves, not from its first call:
    compile_policy runs without the metrics, so their listeners are attached here."""
    for route in compiled.routes:
        if route.resilience is not None:
            route.resilience.observe(metrics)

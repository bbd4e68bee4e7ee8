"""The process-wide state every port shares, and the typed keys to reach it."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from aiohttp import web

from gateway.errors import PolicyError
from gateway.observability.logs import get_logger
from gateway.observability.metrics import GatewayMetrics
from gateway.policy.loader import LoadedPolicy, load_policy
from gateway.runtime import CompiledPolicy, RouteRuntime, compile_policy
from gateway.upstream.client import UpstreamClient

log = get_logger("gateway.policy")


@dataclass(frozen=True, slots=True)
class ReloadRecord:
    at: float
    result: str  # success | failure | unchanged
    generation: int
    sha256: str | None
    errors: tuple[str, ...] = ()


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
        state.reloads.append(ReloadRecord(time.time(), "success", 1, loaded.sha256))
        return state

    def reload(self) -> bool:
        """Load the policy file again; keep serving the last good policy if it is refused."""
        assert self.policy_path is not None
        try:
            loaded = load_policy(self.policy_path)
            if loaded.sha256 == self.current.loaded.sha256:
                return True
            compiled = compile_policy(
                loaded,
                generation=self.current.generation + 1,
                default_upstream_url=self.default_upstream_url,
                previous=self.current,
            )
        except PolicyError as exc:
            self.metrics.policy_reloads.labels("failure").inc()
            self.reloads.append(
                ReloadRecord(
                    time.time(), "failure", self.current.generation, None, tuple(exc.messages)
                )
            )
            log.error(
                "policy_reload_refused",
                path=self.policy_path,
                errors=exc.messages,
                serving_generation=self.current.generation,
            )
            return False
        self.current = compiled
        self.metrics.policy_reloads.labels("success").inc()
        self.metrics.policy_generation.set(compiled.generation)
        self.reloads.append(
            ReloadRecord(time.time(), "success", compiled.generation, loaded.sha256)
        )
        log.info(
            "policy_reloaded",
            path=self.policy_path,
            generation=compiled.generation,
            sha256=loaded.sha256,
        )
        return True


STATE = web.AppKey("gateway_state", GatewayState)
REQUEST_ID = web.RequestKey("request_id", str)
ROUTE = web.RequestKey("route", RouteRuntime)
CLIENT_IP = web.RequestKey("client_ip", str)
BYTES_IN = web.RequestKey("bytes_in", int)
BYTES_OUT = web.RequestKey("bytes_out", int)
BODY = web.RequestKey("body", bytes)
"""The request body, once a step had to read it whole (validation, retries); the proxy then
sends these bytes, with their own Content-Length, instead of streaming the client's body."""

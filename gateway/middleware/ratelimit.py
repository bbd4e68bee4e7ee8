"""Rate limiting: identity -> limiter -> pass, or RateLimited(retry_after), before the body is read.

Decision headers reach every response, streamed ones included, through a prepare hook
(gateway/app.py PREPARE_HOOKS) that reads the verdict this step left on the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, get_args

from aiohttp import web

from gateway.errors import RateLimited, StoreUnavailable
from gateway.observability.logs import get_logger
from gateway.observability.metrics import GatewayMetrics, perf_counter
from gateway.ratelimit.headers import rate_limit_lines, whole_seconds
from gateway.ratelimit.identity import RequestFacts
from gateway.ratelimit.limiter import Outcome, RouteLimiter, Verdict
from gateway.server.connection import Answer, Handler
from gateway.server.request import ProxyRequest
from gateway.state import CLIENT_IP, ROUTE
from gateway.stores import LimitStore, MemoryStore

log: Final = get_logger("gateway.ratelimit")

VERDICT: Final = web.RequestKey("ratelimit_verdict", Verdict)


class Meters:
    """A limiter's metric children, bound at its first request rather than looked up on each:
    per rule (in the limiter's order) one counter per outcome, and the store's timer."""

    __slots__ = ("decisions", "duration", "local", "metrics", "store")

    def __init__(
        self, metrics: GatewayMetrics, route: str, limiter: RouteLimiter, store: LimitStore
    ) -> None:
        self.metrics = metrics
        self.store = store
        family = metrics.ratelimit_decisions
        self.decisions = tuple(
            {outcome: family.labels(route, rule.name, outcome) for outcome in OUTCOMES}
            for rule in limiter.rules
        )
        self.duration = metrics.ratelimit_store_duration.labels(store.kind)
        # An in-process store answers at once: the limiter is called, not awaited (a queueing
        # rule must wait for slots, so it takes the awaited path).
        self.local = store if isinstance(store, MemoryStore) and not limiter.queues else None


OUTCOMES: Final[tuple[Outcome, ...]] = get_args(Outcome)
_new: Final = tuple.__new__
_NO_FIELDS: Final[Mapping[str, str]] = MappingProxyType({})
"""The header fields of a request for keys that read none: the map is built only when read."""


async def ratelimit(request: ProxyRequest, handler: Handler) -> Answer:
    route = request[ROUTE]
    limiter = route.limiter
    if limiter is None:
        return await handler(request)
    state = request.state
    store = state.limit_store
    meters = limiter.meters
    if meters is None or meters.store is not store or meters.metrics is not state.metrics:
        meters = limiter.meters = Meters(state.metrics, route.name, limiter, store)
    client_ip = request[CLIENT_IP]
    # tuple.__new__: the NamedTuple's own constructor is a Python-level call (limiter.py).
    headers = request.headers if limiter.reads_headers else _NO_FIELDS
    facts = _new(RequestFacts, (route.name, client_ip, request.method, request.path, headers))
    started = perf_counter()
    if meters.local is not None:
        verdict = limiter.decide_now(meters.local, facts)
    else:
        try:
            verdict = await limiter.check(store, facts)
        except StoreUnavailable:  # on_error: closed
            meters.duration.observe(perf_counter() - started)
            for counters in meters.decisions:
                counters["store_error"].inc()
            raise
    meters.duration.observe(perf_counter() - started)
    request[VERDICT] = verdict
    results = verdict.results
    if len(results) == 1 and results[0].outcome == "allowed":  # the common case, in short
        meters.decisions[0]["allowed"].inc()
    else:
        for counters, result in zip(meters.decisions, results, strict=True):
            outcome = result.outcome
            counters[outcome].inc()
            if outcome == "shadow_limited":
                log.info("ratelimit_shadow_limited", route=route.name, rule=result.rule.name)
            elif outcome == "store_error":
                log.warning("ratelimit_store_error", route=route.name, rule=result.rule.name)
    if not limiter.holds_slots:
        if verdict.denied is not None:
            _raise_if_denied(verdict)
        return await handler(request)
    # try/finally in effect, but the release is awaited outside any handler: compiled by mypyc,
    # a coroutine that suspends inside `finally` or `except` leaves the exception it was
    # handling as the thread's current one, the __context__ of every later exception.
    failure: BaseException | None = None
    try:
        _raise_if_denied(verdict)
        answer = await handler(request)
    except BaseException as exc:
        failure = exc
    await limiter.release(store, verdict)
    if failure is not None:
        raise failure
    return answer


def _raise_if_denied(verdict: Verdict) -> None:
    denied = verdict.denied
    if denied is None or denied.decision is None:
        return
    retry = whole_seconds(denied.decision.retry_after)
    rule = denied.rule.policy
    if rule.algorithm == "concurrency":
        allows = f"{rule.limit} requests in flight at once"
    else:
        allows = f"{rule.limit} per " + (
            f"{rule.window:g}s" if rule.window is not None else f"1 {rule.calendar}"
        )
    raise RateLimited(
        f"Rule '{rule.name}' admits {allows}; retry in {retry}s.",
        headers={"Retry-After": str(retry)},
        extensions={"rule": rule.name, "retry_after": retry},
    )


def add_rate_limit_headers(request: ProxyRequest, response: Answer) -> str:
    """Prepare hook: the verdict's headers on allowed and refused responses alike."""
    verdict = request.get(VERDICT)
    if verdict is None:
        return ""
    limiter: RouteLimiter | None = request[ROUTE].limiter
    if limiter is None:
        return ""
    return rate_limit_lines(limiter, verdict, response)

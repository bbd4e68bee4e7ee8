"""Rate limiting: identity -> limiter -> pass, or RateLimited(retry_after), before the body is read.

Decision headers reach every response, streamed ones included, through an on_response_prepare
hook that reads the verdict this step left on the request.
"""

from __future__ import annotations

from time import perf_counter

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.errors import RateLimited, StoreUnavailable
from gateway.observability.logs import get_logger
from gateway.ratelimit.headers import rate_limit_headers, whole_seconds
from gateway.ratelimit.identity import RequestFacts
from gateway.ratelimit.limiter import RouteLimiter, Verdict
from gateway.state import CLIENT_IP, ROUTE, STATE

log = get_logger("gateway.ratelimit")

VERDICT = web.RequestKey("ratelimit_verdict", Verdict)


@web.middleware
async def ratelimit(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request[ROUTE]
    limiter = route.limiter
    if limiter is None:
        return await handler(request)
    state = request.app[STATE]
    facts = RequestFacts(
        route.name, request[CLIENT_IP], request.method, request.path, request.headers
    )
    metrics = state.metrics
    store = state.limit_store
    started = perf_counter()
    try:
        verdict = await limiter.check(store, facts)
    except StoreUnavailable:  # on_error: closed
        for rule in limiter.rules:
            metrics.ratelimit_decisions.labels(route.name, rule.name, "store_error").inc()
        raise
    finally:
        elapsed = perf_counter() - started
        metrics.child(metrics.ratelimit_store_duration, store.kind).observe(elapsed)
    request[VERDICT] = verdict
    decisions = metrics.ratelimit_decisions
    for result in verdict.results:
        outcome = result.outcome
        metrics.child(decisions, route.name, result.rule.name, outcome).inc()
        if outcome == "allowed":
            continue
        if outcome == "shadow_limited":
            log.info("ratelimit_shadow_limited", route=route.name, rule=result.rule.name)
        elif outcome == "store_error":
            log.warning("ratelimit_store_error", route=route.name, rule=result.rule.name)
    if not limiter.holds_slots:
        if verdict.denied is not None:
            _raise_if_denied(verdict)
        return await handler(request)
    try:
        _raise_if_denied(verdict)
        return await handler(request)
    finally:
        await limiter.release(store, verdict)


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


async def add_rate_limit_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """on_response_prepare hook: the verdict's headers on allowed and refused responses alike."""
    verdict = request.get(VERDICT)
    if verdict is None:
        return
    limiter: RouteLimiter | None = request[ROUTE].limiter
    if limiter is not None:
        headers = response.headers
        for name, value in rate_limit_headers(limiter, verdict):
            headers[name] = value

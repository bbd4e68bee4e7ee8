"""Admin endpoints of rate limiting: the rules, one key's usage, and resets.

A key is named by its parts as query parameters, as the policy spells them:
    GET  /admin/ratelimit/usage?route=api&rule=per-ip&client_ip=192.0.2.7
    POST /admin/ratelimit/reset?route=api&rule=per-key&header:X-API-Key=k1
    POST /admin/ratelimit/reset?route=api&rule=per-ip          (every key of the rule)
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

from gateway.errors import StoreUnavailable
from gateway.ratelimit.identity import RequestFacts
from gateway.ratelimit.limiter import CompiledRule, RouteLimiter
from gateway.state import STATE

_NOT_KEY_PARTS = frozenset({"route", "rule"})


def _describe(rule: CompiledRule) -> dict[str, Any]:
    policy = rule.policy
    return {
        "name": rule.name,
        "namespace": rule.namespace,
        "mode": policy.mode,
        "algorithm": policy.algorithm,
        "limit": policy.limit,
        "window_s": policy.window,
        "calendar": policy.calendar,
        "timezone": policy.timezone if policy.calendar else None,
        "burst": policy.burst,
        "key": list(policy.key),
        "cost": policy.cost,
    }


async def _rules(request: web.Request) -> web.Response:
    state = request.app[STATE]
    routes = [
        {"route": route.name, "rules": [_describe(rule) for rule in route.limiter.all_rules]}
        for route in state.current.routes
        if route.limiter is not None
    ]
    store = state.health_components.get("ratelimit_store")
    return web.json_response({"store": store() if store else None, "routes": routes})


def _find(request: web.Request) -> tuple[RouteLimiter, CompiledRule, str]:
    query = request.query
    route_name, rule_name = query.get("route"), query.get("rule")
    route = next((r for r in request.app[STATE].current.routes if r.name == route_name), None)
    limiter = route.limiter if route is not None else None
    rule = limiter.rule(rule_name or "") if limiter is not None else None
    if route is None or limiter is None or rule is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": f"no rate-limit rule {rule_name!r} on route {route_name!r}"}),
            content_type="application/json",
        )
    return limiter, rule, route.name


def _facts(request: web.Request, route: str) -> RequestFacts:
    """The request the given key parts describe, so the rule's own key function applies."""
    query = request.query
    headers = {k[len("header:") :]: v for k, v in query.items() if k.startswith("header:")}
    claims = {k[len("jwt:") :]: v for k, v in query.items() if k.startswith("jwt:")}
    if claims:
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        headers["Authorization"] = f"Bearer e30.{payload}.admin"
    ip = query.get("client_ip") or next(
        (v for k, v in query.items() if k.startswith("client_ip/")), ""
    )
    return RequestFacts(route, ip, query.get("method", ""), query.get("path", ""), headers)


async def _usage(request: web.Request) -> web.Response:
    state = request.app[STATE]
    limiter, rule, route = _find(request)
    key = rule.key(_facts(request, route))
    try:
        decision = await limiter.usage(state.limit_store, rule, key)
    except StoreUnavailable as exc:
        return web.json_response({"error": exc.detail}, status=503)
    return web.json_response(
        {
            "route": route,
            "rule": rule.name,
            "key": key,
            "limit": decision.limit,
            "remaining": decision.remaining,
            "reset_after_s": round(decision.reset_after, 3),
        }
    )


async def _reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    _, rule, route = _find(request)
    whole_rule = not (set(request.query) - _NOT_KEY_PARTS)
    prefix = rule.prefix if whole_rule else rule.key(_facts(request, route))
    try:
        deleted = await state.limit_store.reset(prefix)
    except StoreUnavailable as exc:
        return web.json_response({"error": exc.detail}, status=503)
    return web.json_response({"route": route, "rule": rule.name, "prefix": prefix,
                              "deleted": deleted})  # fmt: skip


def add_ratelimit_routes(app: web.Application) -> None:
    app.router.add_get("/admin/ratelimit/rules", _rules)
    app.router.add_get("/admin/ratelimit/usage", _usage)
    app.router.add_post("/admin/ratelimit/reset", _reset)

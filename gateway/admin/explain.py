"""What the gateway would do with a described request, step by step, without doing any of it.

Nothing here takes a quota, reads a client body or calls the upstream: rate-limit rules are
read with cost 0 (a store read that writes nothing, on memory and Redis alike), validation runs
the route's compiled checks on the given bytes, and the breaker is looked at, never asked for a
permit (which would count a half-open probe).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.errors import (
    AttackDetected,
    NoRouteMatched,
    RateLimited,
    Rejection,
    StoreUnavailable,
)
from gateway.ratelimit.identity import RequestFacts
from gateway.ratelimit.limiter import RouteLimiter
from gateway.resilience.breaker import State
from gateway.resilience.compile import RouteResilience
from gateway.runtime import CompiledPolicy, RouteRuntime
from gateway.stores.base import LimitStore
from gateway.upstream.headers import client_address
from gateway.validation.body import too_large
from gateway.validation.crs.request import RequestView
from gateway.validation.limits import MediaType, RequestHead
from gateway.validation.validator import Validator

Json = dict[str, Any]

HEAD_CHECKS = (
    ("methods", "methods"),
    ("max_url", "max_url"),
    ("max_headers.count", "max_header_count"),
    ("max_headers.size", "max_header_bytes"),
    ("max_query_params", "max_query_params"),
    ("content_types", "content_types"),
    ("max_body", "max_body"),
)
"""The head checks in the order HeadLimits.check runs them, with the attribute that turns each
on; the first failure hides the ones after it, as it would for a real request."""


class ExplainInputError(ValueError):
    """The request description is not usable (the admin port answers 400)."""


@dataclass(frozen=True, slots=True)
class Described:
    """A request as the operator described it."""

    method: str
    target: str
    path: str
    query: str
    headers: CIMultiDictProxy[str]
    body: bytes
    client_ip: str

    @classmethod
    def parse(cls, data: object, peer: str | None, compiled: CompiledPolicy) -> Described:
        if not isinstance(data, Mapping):
            raise ExplainInputError("the body must be a JSON object: {method, path, headers, body}")
        method, target = data.get("method", "GET"), data.get("path")
        if not isinstance(method, str) or not method.isalpha():
            raise ExplainInputError("method must be an HTTP method such as GET")
        if not isinstance(target, str) or not target.startswith("/"):
            raise ExplainInputError("path must be a request target starting with '/'")
        headers: CIMultiDict[str] = CIMultiDict()
        raw_headers = data.get("headers") or {}
        pairs = raw_headers.items() if isinstance(raw_headers, Mapping) else raw_headers
        try:
            for name, value in pairs:
                headers.add(str(name), str(value))
        except (TypeError, ValueError):
            raise ExplainInputError(
                "headers must be an object or a list of [name, value]"
            ) from None
        body = data.get("body")
        if body is None:
            raw = b""
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raise ExplainInputError("body must be a string (send JSON as its text)")
        if raw and "Content-Length" not in headers and "Transfer-Encoding" not in headers:
            headers["Content-Length"] = str(len(raw))
        given_ip = data.get("client_ip")
        client_ip = (
            given_ip
            if isinstance(given_ip, str) and given_ip
            else client_address(peer, headers.get("X-Forwarded-For"), compiled.trusted_proxies)
        )
        parts = urlsplit(target)
        return cls(
            method.upper(),
            target,
            parts.path,
            parts.query,
            CIMultiDictProxy(headers),
            raw,
            client_ip,
        )

    def head(self) -> RequestHead:
        length = self.headers.get("Content-Length")
        declared = int(length) if length is not None and length.isdigit() else None
        return RequestHead(
            method=self.method,
            target=self.target,
            query_string=self.query,
            header_count=len(self.headers),
            header_bytes=sum(len(k) + len(v) + 4 for k, v in self.headers.items()),
            media_type=MediaType.parse(self.headers.get("Content-Type")),
            content_length=declared,
            has_body=bool(self.body) or bool(declared) or "Transfer-Encoding" in self.headers,
            content_encoding=self.headers.get("Content-Encoding"),
        )


def _rejection(exc: Rejection) -> Json:
    extensions = {
        k: v for k, v in exc.extensions.items() if k in ("pointer", "keyword", "expected")
    }
    return {"status": exc.status, "reason": exc.reason, "detail": exc.detail, **extensions}


async def explain_rate_limits(
    limiter: RouteLimiter, store: LimitStore, facts: RequestFacts
) -> tuple[list[Json], Rejection | None]:
    """Each rule's key and remaining quota, read with cost 0; the refusal a request would get."""
    rules: list[Json] = []
    refusal: Rejection | None = None
    for rule in limiter.rules:
        key = rule.key(facts)
        entry: Json = {
            "rule": rule.name,
            "mode": rule.policy.mode,
            "algorithm": rule.policy.algorithm,
            "key": key,
            "cost": rule.cost,
        }
        try:
            decision = await limiter.usage(store, rule, key)
        except StoreUnavailable as exc:
            entry["verdict"] = "store_error"
            entry["detail"] = exc.detail
            if limiter.on_error == "closed" and refusal is None:
                refusal = exc
            rules.append(entry)
            continue
        admits = decision.remaining >= rule.cost
        entry.update(
            limit=decision.limit,
            remaining=decision.remaining,
            reset_after_s=round(decision.reset_after, 3),
            verdict="pass" if admits else ("limit" if rule.enforce else "shadow_limit"),
        )
        if not admits and rule.enforce and refusal is None:
            refusal = RateLimited(f"Rule '{rule.name}' has no quota left for this key.")
        rules.append(entry)
    return rules, refusal


def explain_validation(validator: Validator, described: Described) -> tuple[Json, Rejection | None]:
    """Every check of the route with its verdict: pass, fail, not_reached or skipped.

    As for a real request, the first failure ends the checks: the ones after it are not_reached.
    """
    checks: list[Json] = []
    first: Rejection | None = None

    def failed(exc: Rejection, check: str | None = None) -> None:
        nonlocal first
        name = check or str(exc.extensions.get("check", exc.reason))
        checks.append({"check": name, "verdict": "fail", **_rejection(exc)})
        first = first or exc

    head = described.head()
    configured = [name for name, attr in HEAD_CHECKS if getattr(validator.head, attr, None)]
    try:
        validator.check_head(head)
        checks.extend({"check": name, "verdict": "pass"} for name in configured)
    except Rejection as exc:
        hit = str(exc.extensions.get("check", exc.reason))
        index = configured.index(hit) if hit in configured else len(configured)
        checks.extend({"check": name, "verdict": "pass"} for name in configured[:index])
        failed(exc, hit)
        checks.extend({"check": name, "verdict": "not_reached"} for name in configured[index + 1 :])
    for target in ("query", "headers"):
        if target in validator.schemas and first is not None:
            checks.append({"check": f"schema.{target}", "verdict": "not_reached"})
        elif target in validator.schemas:
            try:
                if target == "query":
                    validator.check_query(parse_qsl(described.query, keep_blank_values=True))
                else:
                    validator.check_headers(described.headers.items())
                checks.append({"check": f"schema.{target}", "verdict": "pass"})
            except Rejection as exc:
                failed(exc, f"schema.{target}")
    if first is not None:
        checks.append({"check": "body", "verdict": "not_reached"})
    elif head.has_body and validator.needs_body(head.media_type, head.content_length):
        try:
            validator.head.check_decodable(head)
            if len(described.body) > validator.max_body:
                raise too_large(validator.max_body)
            outcome = validator.check_body(described.body, head.media_type)
            checks.append({"check": "body", "verdict": "pass", "sanitized": outcome.sanitized})
        except Rejection as exc:
            failed(exc)
    else:
        checks.append({"check": "body", "verdict": "skipped", "detail": "streams untouched"})
    shadow = validator.shadow
    return {"mode": validator.mode, "checks": checks}, None if shadow else first


def explain_attacks(route: RouteRuntime, described: Described) -> Json:
    """The CRS verdict, when the route carries an attack detector."""
    detector = route.attacks
    if detector is None:
        return {"available": False, "detail": "no attack detector on this route"}
    view = RequestView(
        method=described.method,
        uri=described.target,
        headers=tuple(described.headers.items()),
        body=described.body,
        remote_addr=described.client_ip,
    )
    verdict = detector.evaluate(view, route.name)
    return {
        "available": True,
        "mode": "block" if detector.blocking else "detect",
        "blocked": verdict.blocked and detector.blocking,
        "reaches_threshold": verdict.blocked,
        "rule_ids": list(verdict.rule_ids),
        "families": list(verdict.families),
        "anomaly_score": verdict.anomaly_score,
        "threshold": verdict.threshold,
        "failure": verdict.failure,
    }


def _attack_refusal(attacks: Json) -> Rejection | None:
    """A blocking verdict becomes the same 403 the validation step would answer."""
    if not attacks.get("blocked"):
        return None
    return AttackDetected(
        f"The request's anomaly score {attacks['anomaly_score']} reached the threshold "
        f"{attacks['threshold']}",
        extensions={"rule_ids": attacks["rule_ids"], "families": attacks["families"]},
    )


def explain_breaker(resilience: RouteResilience | None) -> tuple[Json | None, Rejection | None]:
    """The breaker's state and whether a call would pass, without taking a permit."""
    breaker = resilience.breaker if resilience is not None else None
    if resilience is None or breaker is None:
        return None, None
    state = breaker.state
    retry_after = breaker.retry_after()
    if state is State.OPEN and retry_after <= 0:
        would = "probe"  # open_for has elapsed: the next call moves it to half-open
    elif state is State.HALF_OPEN:
        out = breaker.snapshot().get("half_open_probes_out", 0)
        room = isinstance(out, int) and out < breaker.config.half_open_calls
        would = "probe" if room else "reject"
    elif state in (State.OPEN, State.FORCED_OPEN):
        would = "reject"
    else:
        would = "pass"
    info: Json = {
        "name": breaker.name,
        "state": state.value,
        "mode": resilience.breaker_mode,
        "would": would,
        "retry_after_s": round(retry_after, 3),
    }
    if would == "reject" and resilience.breaker_mode == "enforce":
        return info, resilience.fallback(f"The circuit of {breaker.name} is {state.value}.")
    return info, None


async def explain(
    compiled: CompiledPolicy, store: LimitStore, data: object, peer: str | None
) -> Json:
    """The answer of POST /admin/explain."""
    described = Described.parse(data, peer, compiled)
    host = described.headers.get("Host", "localhost")
    answer: Json = {
        "request": {
            "method": described.method,
            "path": described.path,
            "query": described.query,
            "host": host,
            "client_ip": described.client_ip,
        },
        "generation": compiled.generation,
    }
    route = compiled.route_for(described.method, host, described.path)
    if route is None:
        answer.update(route=None, rate_limit=[], validation=None, attacks=None, breaker=None)
        answer["outcome"] = _outcome(NoRouteMatched(), "route", None)
        return answer
    answer["route"] = route.name
    steps: list[tuple[str, Rejection | None]] = []
    if route.limiter is not None:
        facts = RequestFacts(
            route.name, described.client_ip, described.method, described.path, described.headers
        )
        answer["rate_limit"], refusal = await explain_rate_limits(route.limiter, store, facts)
        steps.append(("rate_limit", refusal))
    else:
        answer["rate_limit"] = []
    if route.validator is not None:
        answer["validation"], refusal = explain_validation(route.validator, described)
        steps.append(("validation", refusal))
    else:
        answer["validation"] = None
    answer["attacks"] = attacks = explain_attacks(route, described)
    steps.append(("attacks", _attack_refusal(attacks)))
    answer["breaker"], refusal = explain_breaker(route.resilience)
    steps.append(("breaker", refusal))
    step, first = next(((s, r) for s, r in steps if r is not None), ("upstream", None))
    answer["outcome"] = _outcome(first, step, route)
    return answer


def _outcome(refusal: Rejection | None, step: str, route: RouteRuntime | None) -> Json:
    if refusal is None:
        assert route is not None
        return {
            "action": "forward",
            "step": step,
            "status": None,
            "reason": "forwarded",
            "upstream": route.upstream.base_url,
        }
    return {
        "action": "reject",
        "step": step,
        "status": refusal.status,
        "reason": refusal.reason,
        "detail": refusal.detail,
    }

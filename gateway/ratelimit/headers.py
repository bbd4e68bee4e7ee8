"""The rate-limit response fields: IETF draft-11 RateLimit / RateLimit-Policy and X-RateLimit-*.

RateLimit-Policy: "per-ip";q=10;w=300          (rendered once per route)
RateLimit: "per-ip";r=3;t=120
X-RateLimit-Limit: 10   X-RateLimit-Remaining: 3   X-RateLimit-Reset: 120 (seconds)
"""

from __future__ import annotations

import math

from gateway.ratelimit.limiter import RouteLimiter, Verdict


def whole_seconds(seconds: float) -> int:
    """Round up, and never 0: a client told 0 would retry at once and be refused again."""
    return max(1, math.ceil(seconds - 1e-9))


def rate_limit_headers(limiter: RouteLimiter, verdict: Verdict) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    policy = limiter.policy_header
    if policy is not None:
        headers.append(("RateLimit-Policy", policy))
        items = [
            f"{r.rule.draft_item}{d.remaining};t={whole_seconds(d.reset_after)}"
            for r in verdict.results
            if (d := r.decision) is not None and r.rule.enforce and r.rule.draft_headers
        ]
        if items:
            headers.append(("RateLimit", ", ".join(items)))
    head = verdict.headline
    if head is not None and (decision := head.decision) is not None and head.rule.legacy_headers:
        headers.append(("X-RateLimit-Limit", str(decision.limit)))
        headers.append(("X-RateLimit-Remaining", str(decision.remaining)))
        headers.append(("X-RateLimit-Reset", str(whole_seconds(decision.reset_after))))
    return headers

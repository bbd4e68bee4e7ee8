"""The rate-limit response fields: IETF draft-11 RateLimit / RateLimit-Policy and X-RateLimit-*.

RateLimit-Policy: "per-ip";q=10;w=300          (rendered once per route)
RateLimit: "per-ip";r=3;t=120
X-RateLimit-Limit: 10   X-RateLimit-Remaining: 3   X-RateLimit-Reset: 120 (seconds)
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping

from multidict import istr

from gateway.ratelimit.limiter import RouteLimiter, Verdict

# Case-insensitive names made once: a header map takes them without folding them per request.
POLICY = istr("RateLimit-Policy")
RATE_LIMIT = istr("RateLimit")
LIMIT = istr("X-RateLimit-Limit")
REMAINING = istr("X-RateLimit-Remaining")
RESET = istr("X-RateLimit-Reset")

_ceil = math.ceil


def whole_seconds(seconds: float) -> int:
    """Round up, and never 0: a client told 0 would retry at once and be refused again."""
    return max(1, _ceil(seconds - 1e-9))


def write_rate_limit_headers(
    limiter: RouteLimiter, verdict: Verdict, headers: MutableMapping[str, str]
) -> None:
    """Set the verdict's fields on a response's headers, replacing any the upstream sent."""
    results = verdict.results
    head = verdict.headline
    policy = limiter.policy_header
    if policy is not None:
        headers[POLICY] = policy
        if len(results) == 1:  # the common case: one rule, also the headline when advertised
            result = results[0]
            rule = result.rule
            decision = result.decision
            if decision is not None and rule.enforce and rule.draft_headers:
                remaining = str(decision.remaining)
                reset = str(max(1, _ceil(decision.reset_after - 1e-9)))  # whole_seconds
                headers[RATE_LIMIT] = rule.draft_item + remaining + ";t=" + reset
                if result is head and rule.legacy_headers:
                    limit = decision.limit
                    headers[LIMIT] = rule.limit_text if limit == rule.limit else str(limit)
                    headers[REMAINING] = remaining
                    headers[RESET] = reset
                return
        else:
            items = [
                f"{r.rule.draft_item}{d.remaining};t={whole_seconds(d.reset_after)}"
                for r in results
                if (d := r.decision) is not None and r.rule.enforce and r.rule.draft_headers
            ]
            if items:
                headers[RATE_LIMIT] = ", ".join(items)
    if head is not None and (decision := head.decision) is not None and head.rule.legacy_headers:
        headers[LIMIT] = str(decision.limit)
        headers[REMAINING] = str(decision.remaining)
        headers[RESET] = str(whole_seconds(decision.reset_after))

"""The rate-limit response fields: IETF draft-11 RateLimit / RateLimit-Policy and X-RateLimit-*.

RateLimit-Policy: "per-ip";q=10;w=300          (rendered once per route)
RateLimit: "per-ip";r=3;t=120
X-RateLimit-Limit: 10   X-RateLimit-Remaining: 3   X-RateLimit-Reset: 120 (seconds)

They are rendered straight into head lines ("Name: value\r\n"): five fields set one by one in a
header map, then rendered from it, cost more than the rest of the decision.
"""

from __future__ import annotations

import math
from typing import Final

from gateway.ratelimit.limiter import RouteLimiter, Verdict
from gateway.server.connection import Answer, drop_fields

DRAFT: Final = frozenset({"ratelimit-policy", "ratelimit"})
LEGACY: Final = frozenset({"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"})
_NAMES: Final = {  # by (draft fields on, legacy fields on)
    (True, True): DRAFT | LEGACY,
    (True, False): DRAFT,
    (False, True): LEGACY,
    (False, False): frozenset(),
}

_ceil: Final = math.ceil


def whole_seconds(seconds: float) -> int:
    """Round up, and never 0: a client told 0 would retry at once and be refused again."""
    return max(1, _ceil(seconds - 1e-9))


def rate_limit_lines(limiter: RouteLimiter, verdict: Verdict, answer: Answer) -> str:
    """The verdict's fields as head lines; `answer` loses any field of its own of the same
    names, so ours replace what the upstream sent rather than repeat it."""
    results = verdict.results
    fields = limiter.one_rule_fields
    if fields is not None:  # the common case: one rule, filled in with two numbers
        result = results[0]
        rule = result.rule
        decision = result.decision
        if decision is not None and decision.limit == rule.limit:
            drop_fields(answer, _NAMES[rule.draft_headers, rule.legacy_headers])
            remaining = str(decision.remaining)
            reset = str(max(1, _ceil(decision.reset_after - 1e-9)))  # whole_seconds, inlined
            lines = ""
            for before, between, after in fields:
                lines += f"{before}{remaining}{between}{reset}{after}"
            return lines
    head = verdict.headline
    lines = ""
    policy = limiter.policy_line
    if policy:
        drop_fields(answer, DRAFT)
        lines = policy
        items = [
            f"{r.rule.draft_item}{d.remaining};t={whole_seconds(d.reset_after)}"
            for r in results
            if (d := r.decision) is not None and r.rule.enforce and r.rule.draft_headers
        ]
        if items:
            lines += "RateLimit: " + ", ".join(items) + "\r\n"
    if head is not None and (decision := head.decision) is not None and head.rule.legacy_headers:
        drop_fields(answer, LEGACY)
        lines += (
            f"X-RateLimit-Limit: {decision.limit}\r\n"
            f"X-RateLimit-Remaining: {decision.remaining}\r\n"
            f"X-RateLimit-Reset: {whole_seconds(decision.reset_after)}\r\n"
        )
    return lines

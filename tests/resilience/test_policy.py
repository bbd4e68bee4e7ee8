"""The resilience blocks of the policy: defaults, shorthands, and one exact message per mistake."""

from __future__ import annotations

import pytest

from gateway.errors import PolicyError
from gateway.policy.loader import parse_policy

ISSUE_EXAMPLE = """
routes:
  - name: api
    circuit_breaker:
      mode: enforce
      window: {type: count, size: 100}
      min_calls: 20
      failure_rate: 50%
      slow_call: {duration: 2s, rate: 80%}
      failure_on: [502, 503, 504, connect_error, timeout]
      open_for: 30s
      half_open_calls: 5
      fallback: {status: 503, retry_after: true}
    retry:
      attempts: 3
      on: [connect_error, 502, 503, 504]
      backoff: {base: 25ms, max: 1s, jitter: full}
      methods: [GET, HEAD, OPTIONS, PUT, DELETE]
      budget: 20%
      respect_retry_after: true
    timeout: {per_try: 5s, total: 15s}
    max_concurrent: 100
"""


def test_the_issue_example_loads() -> None:
    """The policy block written in the issue loads, shorthands included."""
    route = parse_policy(ISSUE_EXAMPLE).policy.routes[0]
    assert route.circuit_breaker is not None and route.retry is not None
    assert route.circuit_breaker.slow_call is not None
    assert route.circuit_breaker.slow_call.rate == 0.8
    assert route.retry.budget.ratio == 0.2
    assert route.max_concurrent is not None and route.max_concurrent.limit == 100
    assert route.timeout.total == 15.0


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            "circuit_breaker: {failure_on: [timout]}",
            "<policy>:3:36: routes[0].circuit_breaker.failure_on[0]: invalid outcome 'timout' "
            "(use a status such as 503, connect_error or timeout)",
        ),
        (
            "circuit_breaker: {window: {type: time, size: fast}}",
            "<policy>:3:44: routes[0].circuit_breaker.window.size: invalid duration 'fast' "
            "(use 250ms, 10s, 1m, 1h)",
        ),
        (
            "circuit_breaker: {window: {type: count, size: 10s}}",
            "<policy>:3:45: routes[0].circuit_breaker.window.size: invalid count window '10s' "
            "(a number of calls, at least 1)",
        ),
        (
            "retry: {budget: 120%}",
            "<policy>:3:13: routes[0].retry.budget: invalid percentage '120%' (use 50% or 0.5)",
        ),
        (
            "retry: {methods: [FETCH]}",
            "<policy>:3:13: routes[0].retry.methods: unknown HTTP method 'FETCH'",
        ),
        (
            "timeout: {per_try: soon}",
            "<policy>:3:15: routes[0].timeout.per_try: invalid duration 'soon' "
            "(use 250ms, 10s, 1m, 1h)",
        ),
        (
            "circuit_breaker: {open_fr: 1s}",
            "<policy>:3:23: routes[0].circuit_breaker.open_fr: unknown key 'open_fr' "
            "(did you mean 'open_for'?)",
        ),
    ],
    ids=[
        "bad-outcome",
        "bad-time-window",
        "duration-as-count",
        "budget-over-100",
        "unknown-method",
        "bad-timeout",
        "misspelt-key",
    ],
)
def test_mistakes_name_file_place_and_fix(block: str, message: str) -> None:
    """Each mistake in a resilience block is reported with its line, column and path."""
    with pytest.raises(PolicyError) as caught:
        parse_policy(f"routes:\n  - name: a\n    {block}\n")
    assert caught.value.messages == [message]

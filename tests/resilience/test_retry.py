"""Retry decisions, backoff and budget, with a fixed random source and a fake clock."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from gateway.resilience.retry import RetryBudget, RetryPolicy, parse_retry_after
from tests.resilience.clock import FakeClock


def policy(*, jitter: bool = True, random_value: float = 0.5) -> RetryPolicy:
    return RetryPolicy(
        attempts=3,
        on=frozenset({"connect_error", 502, 503}),
        methods=frozenset({"GET", "PUT"}),
        base=0.1,
        max_backoff=0.3,
        jitter=jitter,
        respect_retry_after=True,
        max_retry_after=5.0,
        buffer_body=1024,
        random=lambda: random_value,
    )


@pytest.mark.parametrize(
    ("retry", "jitter", "expected"),
    [(1, False, 0.1), (2, False, 0.2), (3, False, 0.3), (4, False, 0.3), (2, True, 0.1)],
    ids=["first", "doubles", "capped", "stays-capped", "full-jitter-scales-ceiling"],
)
def test_backoff_is_exponential_capped_and_jittered(
    retry: int, jitter: bool, expected: float
) -> None:
    """Backoff doubles per retry up to max; full jitter draws uniformly below that ceiling."""
    assert policy(jitter=jitter).backoff(retry) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [
        (503, "2", 2.0),
        (429, "1", 1.0),
        (503, "60", None),
        (502, "2", 0.05),
        (503, "soon", 0.05),
        (503, None, 0.05),
    ],
    ids=[
        "503-honoured",
        "429-honoured",
        "beyond-cap-not-retried",
        "502-ignores-header",
        "unreadable-ignored",
        "absent",
    ],
)
def test_retry_after_is_honoured_within_the_cap(
    status: int, header: str | None, expected: float | None
) -> None:
    """A 429/503 Retry-After sets the delay; one longer than the cap means no retry at all."""
    assert policy().delay(1, status, header) == expected


def test_retry_after_http_date() -> None:
    """Retry-After may be an HTTP date; it counts from now."""
    assert parse_retry_after(formatdate(1_000_030, usegmt=True), now=1_000_000) == 30


def test_only_listed_methods_and_outcomes_are_retried() -> None:
    """POST is not retried unless listed; only the listed statuses and errors trigger retries."""
    rules = policy()
    assert rules.allows_method("GET")
    assert not rules.allows_method("POST")
    assert rules.triggered_by(503) and rules.triggered_by("connect_error")
    assert not rules.triggered_by(500) and not rules.triggered_by("timeout")


def test_budget_allows_ratio_of_requests_plus_floor() -> None:
    """With 10 requests, a 20% ratio and a floor of 1 per 10 s window, 3 retries pass, not 4."""
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, min_per_second=0.1, window=10, clock=clock)
    for _ in range(10):
        budget.record_request()
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]


def test_budget_refills_as_the_window_slides() -> None:
    """Retries spent more than a window ago no longer count against the budget."""
    clock = FakeClock()
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10, clock=clock)
    assert budget.try_spend()
    assert not budget.try_spend()
    clock.advance(10)
    assert budget.try_spend()

"""The breaker state machine, driven by a fake clock: exact events, no sleeps."""

from __future__ import annotations

import pytest

from gateway.resilience.breaker import Breaker, BreakerConfig, Permit, State, Transition
from tests.resilience.clock import FakeClock


def make(config: BreakerConfig) -> tuple[Breaker, FakeClock, list[tuple[str, str, str]]]:
    clock = FakeClock()
    events: list[tuple[str, str, str]] = []

    def listen(event: Transition) -> None:
        events.append((event.from_state.value, event.to_state.value, event.reason))

    return Breaker("api", config, clock=clock, listeners=(listen,)), clock, events


def call(breaker: Breaker, *, failure: bool) -> Permit:
    permit = breaker.acquire()
    assert permit is not None, "the breaker refused a call it should have let through"
    breaker.record(permit, failure=failure)
    return permit


SMALL = BreakerConfig(window_size=4, min_calls=4, failure_rate=0.5, open_for=30, half_open_calls=2)


def test_full_cycle_emits_exact_events() -> None:
    """Closed -> open on failures, half-open after open_for, closed after every probe passes."""
    breaker, clock, events = make(SMALL)
    for failure in (False, True, False, True):
        call(breaker, failure=failure)
    assert breaker.state is State.OPEN
    assert breaker.acquire() is None
    clock.advance(29.9)
    assert breaker.acquire() is None
    assert breaker.retry_after() == pytest.approx(0.1)
    clock.advance(0.1)
    call(breaker, failure=False)
    call(breaker, failure=False)
    assert events == [
        ("closed", "open", "failure_rate"),
        ("open", "half_open", "open_for_elapsed"),
        ("half_open", "closed", "probes_passed"),
    ]
    assert breaker.snapshot()["state"] == "closed"


def test_below_min_calls_never_opens() -> None:
    """However bad the failure rate, fewer than min_calls calls keep the breaker closed."""
    breaker, _, events = make(SMALL)
    for _ in range(3):
        call(breaker, failure=True)
    assert breaker.state is State.CLOSED
    assert events == []


def test_half_open_lets_exactly_half_open_calls_through() -> None:
    """Half-open hands out half_open_calls permits; the next caller is refused."""
    breaker, clock, _ = make(SMALL)
    for _ in range(4):
        call(breaker, failure=True)
    clock.advance(30)
    probes = [breaker.acquire(), breaker.acquire()]
    assert all(p is not None and p.probe for p in probes)
    assert breaker.acquire() is None


def test_failed_probe_reopens_for_a_full_open_for() -> None:
    """One failed probe sends the breaker back to open, with the full open_for ahead."""
    breaker, clock, events = make(SMALL)
    for _ in range(4):
        call(breaker, failure=True)
    clock.advance(30)
    call(breaker, failure=False)
    call(breaker, failure=True)
    assert events[-1] == ("half_open", "open", "probe_failed")
    assert breaker.retry_after() == 30


def test_released_probe_is_given_back() -> None:
    """A probe whose client went away frees its place for another probe."""
    breaker, clock, _ = make(SMALL)
    for _ in range(4):
        call(breaker, failure=True)
    clock.advance(30)
    first, _second = breaker.acquire(), breaker.acquire()
    assert first is not None and breaker.acquire() is None
    breaker.release(first)
    assert breaker.acquire() is not None


def test_outcome_from_a_previous_state_is_ignored() -> None:
    """A call let through while closed that ends after the breaker opened changes nothing."""
    breaker, clock, events = make(SMALL)
    straggler = breaker.acquire()
    assert straggler is not None
    for _ in range(4):
        call(breaker, failure=True)
    clock.advance(30)
    probe = breaker.acquire()
    assert probe is not None
    breaker.record(straggler, failure=True)
    assert breaker.state is State.HALF_OPEN
    assert events == [
        ("closed", "open", "failure_rate"),
        ("open", "half_open", "open_for_elapsed"),
    ]


def test_slow_calls_open_the_breaker() -> None:
    """Calls slower than slow_call.duration open the breaker at slow_call.rate."""
    config = BreakerConfig(
        window_size=2, min_calls=2, failure_rate=1.0, slow_call_duration=2.0, slow_call_rate=1.0
    )
    breaker, clock, events = make(config)
    for _ in range(2):
        permit = breaker.acquire()
        assert permit is not None
        clock.advance(2.5)
        breaker.record(permit, failure=False)
    assert events == [("closed", "open", "slow_call_rate")]


def test_count_window_forgets_old_calls() -> None:
    """Only the last window_size calls count: old successes do not dilute new failures."""
    breaker, _, events = make(SMALL)
    for failure in (False, False, False, False, False, False, True):
        call(breaker, failure=failure)
    assert events == []
    # 2 failures in 8 calls overall, but 2 in the last 4: 50 %.
    call(breaker, failure=True)
    assert events == [("closed", "open", "failure_rate")]


def test_time_window_forgets_old_seconds() -> None:
    """A time window counts only the calls of its last seconds."""
    config = BreakerConfig(window="time", window_size=10, min_calls=3, failure_rate=0.5)
    breaker, clock, events = make(config)
    call(breaker, failure=True)
    call(breaker, failure=True)
    clock.advance(11)
    call(breaker, failure=True)
    call(breaker, failure=False)
    call(breaker, failure=False)
    assert breaker.snapshot()["calls"] == 3
    assert events == []
    call(breaker, failure=True)
    assert events == [("closed", "open", "failure_rate")]


@pytest.mark.parametrize(
    ("action", "expected", "refuses"),
    [
        ("force_open", State.FORCED_OPEN, True),
        ("disable", State.DISABLED, False),
    ],
    ids=["force_open", "disable"],
)
def test_admin_states_hold_until_reset(action: str, expected: State, refuses: bool) -> None:
    """forced_open refuses and disabled admits every call, whatever time or outcomes do."""
    breaker, clock, events = make(SMALL)
    getattr(breaker, action)()
    for _ in range(10):
        clock.advance(60)
        permit = breaker.acquire()
        assert (permit is None) is refuses
        if permit is not None:
            breaker.record(permit, failure=True)
    assert breaker.state is expected
    breaker.reset()
    assert breaker.state is State.CLOSED
    assert events == [
        ("closed", expected.value, expected.value),
        (expected.value, "closed", "reset"),
    ]


def test_reset_clears_the_window() -> None:
    """After a reset, earlier failures no longer count toward opening."""
    breaker, _, events = make(SMALL)
    for _ in range(3):
        call(breaker, failure=True)
    breaker.reset()
    call(breaker, failure=True)
    assert breaker.state is State.CLOSED
    assert events == []

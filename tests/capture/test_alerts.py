"""Alert rules: conditions parsed once, windows on an injected clock, fire/cooldown/recover."""

from __future__ import annotations

import pytest

from gateway.capture.alerts import AlertEngine, AlertRuleSpec, parse_condition
from gateway.capture.reasons import known_names
from tests.capture.conftest import FakeClock


@pytest.mark.parametrize(
    ("text", "kind", "selector", "threshold", "window"),
    [
        ("rate(upstream_5xx) > 5/min", "rate", "upstream_5xx", 5 / 60, 60.0),
        ("rate(rate_limited) >= 2/s over 10s", "rate", "rate_limited", 2.0, 10.0),
        ("ratio(5xx) > 10% over 5m", "ratio", "5xx", 0.10, 300.0),
        ("ratio(upstream_timeout) > 1.5%", "ratio", "upstream_timeout", 0.015, 300.0),
    ],
    ids=["rate-per-min", "rate-window", "ratio-window", "ratio-default-window"],
)
def test_conditions_parse_into_typed_objects(
    text: str, kind: str, selector: str, threshold: float, window: float
) -> None:
    """A `when` becomes a typed condition with its threshold per second or as a fraction."""
    condition = parse_condition(text, known_names())
    assert (condition.kind, condition.selector, condition.window) == (kind, selector, window)
    assert condition.threshold == pytest.approx(threshold)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rate(upstream_5xx) >> 5", "invalid alert condition"),
        ("rate(upstream_5xx) > 5", "a rate needs a unit"),
        ("rate(upstream_5xx) > 5/fortnight", "unknown rate unit 'fortnight'"),
        ("ratio(5xx) > 10/min", "a ratio needs a percentage"),
        ("ratio(5xx) > 150%", "above 100%"),
        ("rate(teapots) > 1/s", "unknown selector 'teapots'"),
        ("ratio(5xx) > 10% over soon", "invalid duration 'soon'"),
    ],
    ids=["syntax", "no-unit", "bad-unit", "ratio-unit", "over-100", "selector", "window"],
)
def test_bad_conditions_say_what_is_wrong(text: str, message: str) -> None:
    """A mistyped `when` is refused with a message naming the mistake."""
    with pytest.raises(ValueError, match=message):
        parse_condition(text, known_names())


def _engine(
    when: str, *, min_requests: int = 0, cooldown: float = 600
) -> tuple[AlertEngine, FakeClock]:
    clock = FakeClock()
    spec = AlertRuleSpec("r", parse_condition(when, known_names()), min_requests, cooldown, ("s",))
    return AlertEngine([spec], clock=clock, wall=clock), clock


def _feed(engine: AlertEngine, count: int, status: int, reason: str | None = None) -> None:
    for _ in range(count):
        engine.record(status, reason, reason)


def test_rate_rule_fires_once_then_recovers() -> None:
    """Over 5/min fires one notice; staying high repeats nothing; a quiet window recovers."""
    engine, clock = _engine("rate(upstream_5xx) > 5/min")
    _feed(engine, 5, 502, "upstream_5xx")
    assert engine.evaluate() == ([], [])  # 5/min is not over 5/min
    _feed(engine, 1, 502, "upstream_5xx")
    notices, _ = engine.evaluate()
    assert [(n.rule, n.state) for n in notices] == [("r", "fired")]
    assert notices[0].value == "6.00/min"
    clock.advance(10)
    _feed(engine, 3, 502, "upstream_5xx")
    assert engine.evaluate() == ([], [])  # deduplicated while firing
    clock.advance(61)
    notices, _ = engine.evaluate()
    assert [(n.rule, n.state) for n in notices] == [("r", "resolved")]


def test_cooldown_holds_back_a_second_firing() -> None:
    """A rule that recovered and trips again within its cooldown stays quiet, then fires."""
    engine, clock = _engine("rate(5xx) > 1/min", cooldown=300)
    _feed(engine, 2, 500)
    assert [n.state for n in engine.evaluate()[0]] == ["fired"]
    clock.advance(61)
    assert [n.state for n in engine.evaluate()[0]] == ["resolved"]
    _feed(engine, 2, 500)
    assert engine.evaluate() == ([], ["r"])  # within 300 s of the firing: suppressed
    assert engine.evaluate() == ([], [])  # reported once per suppression
    clock.advance(240)
    _feed(engine, 2, 500)
    assert [n.state for n in engine.evaluate()[0]] == ["fired"]


def test_ratio_rule_needs_min_requests() -> None:
    """A ratio over the threshold does not fire until the window holds min_requests."""
    engine, _ = _engine("ratio(5xx) > 10% over 5m", min_requests=50)
    _feed(engine, 6, 500)
    _feed(engine, 20, 200)
    assert engine.evaluate() == ([], [])  # 23% but only 26 requests
    _feed(engine, 24, 200)
    notices, _ = engine.evaluate()
    assert [n.state for n in notices] == ["fired"]
    assert (notices[0].value, notices[0].requests) == ("12.0%", 50)


def test_ratio_rule_recovers_when_successes_dilute_errors() -> None:
    """Once errors fall below the ratio, one recovery notice follows."""
    engine, clock = _engine("ratio(5xx) > 10% over 1m", min_requests=10)
    _feed(engine, 5, 503)
    _feed(engine, 5, 200)
    assert [n.state for n in engine.evaluate()[0]] == ["fired"]
    clock.advance(30)
    _feed(engine, 90, 200)
    notices, _ = engine.evaluate()
    assert [(n.state, n.value) for n in notices] == [("resolved", "5.0%")]


def test_old_buckets_leave_the_window() -> None:
    """Errors older than the window stop counting."""
    engine, clock = _engine("rate(rate_limited) >= 3/min")
    _feed(engine, 2, 429, "rate_limited")
    clock.advance(45)
    _feed(engine, 1, 429, "rate_limited")
    assert [n.state for n in engine.evaluate()[0]] == ["fired"]
    clock.advance(30)  # the first two are now more than a minute old
    assert [n.state for n in engine.evaluate()[0]] == ["resolved"]


def test_unchanged_rule_keeps_its_state_on_replace() -> None:
    """Reloading the same rule keeps it firing (no second notice); a changed rule starts over."""
    engine, _ = _engine("rate(5xx) > 1/min")
    _feed(engine, 2, 500)
    assert [n.state for n in engine.evaluate()[0]] == ["fired"]
    engine.replace(engine.rules)
    assert engine.evaluate() == ([], [])
    changed = AlertRuleSpec("r", parse_condition("rate(5xx) > 2/min"), 0, 600, ("s",))
    engine.replace([changed])
    assert engine.status() == [{"rule": "r", "when": "rate(5xx) > 2/min", "firing": False}]

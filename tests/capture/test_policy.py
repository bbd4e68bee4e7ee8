"""The `errors:` block: the issue's example loads, and each mistake is named with its place."""

from __future__ import annotations

import pytest

from gateway.errors import PolicyError
from gateway.policy.loader import parse_policy

ISSUE_EXAMPLE = """
errors:
  capture: [upstream_5xx, upstream_timeout, upstream_connect_error, circuit_open, gateway_exception,
            rate_limited, validation_rejected, attack_detected]
  body_excerpt: 2KiB
  scrub: {headers: [authorization, cookie, set-cookie, x-api-key], fields: [password, token, secret], patterns: [credit_card, bearer_token]}
  sinks:
    - {name: hook, type: webhook, url: "https://hooks.example/x", format: json}
    - {name: sentry, type: sentry, dsn: "${SENTRY_DSN:-}"}
    - {name: mail, type: email, smtp: "smtp://mail:587", from: gw@example.com, to: [ops@example.com], starttls: true}
  alerts:
    - {name: upstream-errors, when: "rate(upstream_5xx) > 5/min", sinks: [hook], cooldown: 10m}
    - {name: error-ratio, when: "ratio(5xx) > 10% over 5m", min_requests: 50, sinks: [mail]}
routes: [{name: api}]
"""  # noqa: E501 - the issue's own lines


def test_the_issue_example_loads() -> None:
    """The policy block written in the issue loads into typed objects."""
    errors = parse_policy(ISSUE_EXAMPLE, "policy.yaml").policy.errors
    assert errors.body_excerpt == 2048
    assert [sink.type for sink in errors.sinks] == ["webhook", "sentry", "email"]
    ratio = errors.alerts[1]
    assert (ratio.when.kind, ratio.when.threshold, ratio.when.window) == ("ratio", 0.1, 300.0)
    assert errors.alerts[0].cooldown == 600.0


def test_defaults_capture_the_gateways_failures() -> None:
    """Without an `errors:` block, the issue's eight categories are captured, with no sinks."""
    errors = parse_policy("routes: [{name: api}]\n").policy.errors
    assert {"upstream_5xx", "gateway_exception", "attack_detected"} <= set(errors.capture)
    assert errors.sinks == () and errors.alerts == ()


HOOK = '{name: hook, type: webhook, url: "http://127.0.0.1:1/x"}'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            f'errors:\n  alerts:\n    - {{name: a, when: "rate(5xx) >> 1", sinks: [hook]}}\n'
            f"  sinks: [{HOOK}]\n",
            "policy.yaml:3:17: errors.alerts[0].when: invalid alert condition 'rate(5xx) >> 1' "
            '(use "rate(upstream_5xx) > 5/min" or "ratio(5xx) > 10% over 5m")',
        ),
        (
            "errors:\n  capture: [upstream_5xx, teapot]\n",
            "policy.yaml:2:27: errors.capture[1]: unknown reason 'teapot'",
        ),
        (
            f"errors:\n  sinks: [{HOOK}]\n  alerts:\n"
            '    - {name: a, when: "rate(5xx) > 1/min", sinks: [pager]}\n',
            "errors: alert 'a' names unknown sink 'pager' (known: hook)",
        ),
        (
            "errors:\n  sinks:\n    - {name: s, type: sentry, dsn: not-a-dsn}\n",
            "invalid Sentry DSN 'not-a-dsn'",
        ),
        (
            "errors:\n  sinks:\n    - {name: m, type: email, smtp: smtp://mail:587, from: gw, "
            "to: [ops@example.com]}\n",
            "policy.yaml:3:53: errors.sinks[0].from: invalid email address 'gw' "
            "(use name@example.com)",
        ),
        (
            "errors:\n  scrub: {patterns: [credit_card, phone]}\n",
            "errors.scrub.patterns[1]",
        ),
        (
            "errors:\n  body_excerpt: lots\n",
            "errors.body_excerpt: invalid size 'lots'",
        ),
    ],
    ids=[
        "bad-when",
        "unknown-reason",
        "unknown-sink",
        "bad-dsn",
        "bad-from",
        "bad-pattern",
        "size",
    ],
)
def test_mistakes_are_named_with_their_place(body: str, message: str) -> None:
    """Each mistake in the block is reported with the file, line and the YAML path."""
    with pytest.raises(PolicyError) as caught:
        parse_policy(body + "routes: [{name: api}]\n", "policy.yaml")
    assert any(message in line for line in caught.value.messages), caught.value.messages

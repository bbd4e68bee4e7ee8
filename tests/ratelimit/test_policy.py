"""The rate_limit and store blocks: defaults, and every mistake named with its place."""

from __future__ import annotations

import pytest

from gateway.errors import PolicyError
from gateway.policy.loader import parse_policy


def rules(*lines: str) -> str:
    return "routes:\n  - name: api\n    rate_limit:\n" + "".join(f"      - {x}\n" for x in lines)


def test_defaults_are_a_sliding_window_per_client_ip_enforced() -> None:
    """A rule needs only name, limit and window; the rest has safe defaults."""
    policy = parse_policy(rules("{name: r, limit: 5, window: 1m}")).policy
    rule = policy.routes[0].rate_limit[0]
    assert (rule.key, rule.algorithm, rule.mode, rule.cost, rule.window) == (
        ("client_ip",),
        "sliding_window",
        "enforce",
        1,
        60.0,
    )
    assert (policy.store.url, policy.store.on_error, policy.store.replicas) == (
        "memory://",
        "local",
        1,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            rules("{name: r, limit: 5, window: fast}"),
            "p.yaml:4:29: routes[0].rate_limit[0].window: invalid duration 'fast' "
            "(use 250ms, 10s, 1m, 1h)",
            id="bad-window",
        ),
        pytest.param(
            rules("{name: r, limit: 5, window: 1m, key: [cookie]}"),
            "p.yaml:4:41: routes[0].rate_limit[0].key: unknown key part 'cookie' (use client_ip, "
            "client_ip/48, header:NAME, jwt:CLAIM, route, method, path)",
            id="unknown-key-part",
        ),
        pytest.param(
            rules("{name: r, limit: 5}"),
            "p.yaml:4:9: routes[0].rate_limit[0]: give exactly one of window (e.g. 1m) or "
            "calendar (day, month)",
            id="no-period",
        ),
        pytest.param(
            rules("{name: r, limit: 5, window: 1m, burst: 9}"),
            "p.yaml:4:9: routes[0].rate_limit[0]: burst applies to algorithm: token_bucket only",
            id="burst-without-bucket",
        ),
        pytest.param(
            rules("{name: r, limit: 5, window: 1m, max_wait: 1s}"),
            "p.yaml:4:9: routes[0].rate_limit[0]: max_wait applies to algorithm: concurrency only",
            id="max-wait-without-concurrency",
        ),
        pytest.param(
            rules("{name: r, limit: 5, calendar: day, timezone: Mars/Olympus}"),
            "p.yaml:4:44: routes[0].rate_limit[0].timezone: unknown time zone 'Mars/Olympus' "
            "(use e.g. UTC, Europe/Paris)",
            id="unknown-zone",
        ),
        pytest.param(
            rules("{name: r, limit: 5, window: 1m}", "{name: r, limit: 9, window: 1h}"),
            "p.yaml:3:5: routes[0].rate_limit: rate-limit rule name 'r' is used twice in this "
            "route",
            id="duplicate-name",
        ),
        pytest.param(
            rules("{name: r, limit: 5, window: 1m, mode: dry}"),
            "p.yaml:4:41: routes[0].rate_limit[0].mode: Input should be 'enforce', 'shadow' or "
            "'off', got 'dry'",
            id="unknown-mode",
        ),
        pytest.param(
            "store: {url: 'redis://x', on_error: maybe}\n"
            + rules("{name: r, limit: 1, window: 1s}"),
            "p.yaml:1:27: store.on_error: Input should be 'open', 'closed' or 'local', got 'maybe'",
            id="unknown-on-error",
        ),
    ],
)
def test_mistakes_are_named_with_their_place(text: str, message: str) -> None:
    """Each mistake is reported as FILE:LINE:COL: path: what is wrong."""
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yaml")
    assert caught.value.messages == [message]

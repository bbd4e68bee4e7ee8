"""The processor chain over events: scrub, fingerprint, drop, group, sample."""

from __future__ import annotations

import dataclasses
import random

import pytest

from gateway.capture.events import ErrorEvent, build_event, client_label
from gateway.capture.groups import GroupStore
from gateway.capture.processors import (
    dropper,
    fingerprinter,
    grouper,
    run_chain,
    sampler,
    scrubber,
)
from gateway.capture.scrubbing import Scrubber

FINGERPRINT = ("reason", "route", "status", "exception_type")


def _event(
    reason: str = "upstream_5xx", status: int = 502, route: str = "api", **kw: object
) -> ErrorEvent:
    values: dict[str, object] = {
        "reason": reason,
        "status": status,
        "route": route,
        "method": "POST",
        "path": "/orders",
        "query": "",
        "headers": [],
        "body": None,
        "body_limit": 64,
        "client_ip": "203.0.113.9",
        "client_mode": "hash",
        "client_salt": b"salt",
        "duration": 0.01,
    }
    values.update(kw)
    return build_event(**values)  # type: ignore[arg-type]


def test_event_carries_the_request_facts() -> None:
    """An event names its reason, category, severity, route, request id and traceparent."""
    event = _event(
        reason="invalid_json",
        status=400,
        request_id="req-1",
        headers=[("Traceparent", "00-" + "a" * 32 + "-" + "b" * 16 + "-01")],
        retry_count=2,
        breaker_state="closed",
        upstream="127.0.0.1:9",
    )
    assert (event.reason, event.category, event.severity) == (
        "invalid_json",
        "validation_rejected",
        "warning",
    )
    assert (
        event.request_id == "req-1" and event.traceparent and event.traceparent.startswith("00-a")
    )
    assert (event.retry_count, event.breaker_state, event.upstream) == (2, "closed", "127.0.0.1:9")
    assert event.client is not None and "203.0.113.9" not in event.client


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("full", "203.0.113.9"), ("truncate", "203.0.113.0/24"), ("omit", None)],
    ids=["full", "truncate", "omit"],
)
def test_client_is_shown_as_configured(mode: str, expected: str | None) -> None:
    """The client address appears whole, as its /24, or not at all."""
    assert client_label("203.0.113.9", mode, b"s") == expected  # type: ignore[arg-type]


def test_exception_keeps_type_message_and_stack() -> None:
    """A gateway exception's type, message and stack travel in the event, scrubbed."""
    try:
        raise KeyError("password=hunter2")
    except KeyError as exc:
        event = _event(reason="gateway_exception", status=500, exc=exc)
    scrubbed = scrubber(Scrubber(), 64)(event)
    assert scrubbed is not None and scrubbed.exception is not None
    assert scrubbed.exception.type == "KeyError"
    assert "hunter2" not in scrubbed.exception.message + scrubbed.exception.stack
    assert "test_exception_keeps_type_message_and_stack" in scrubbed.exception.stack


def test_scrub_covers_headers_query_body_and_bounds_the_body() -> None:
    """Secrets leave every field, and the body excerpt is cut to its size after scrubbing."""
    body = b'{"password": "hunter2", "note": "' + b"x" * 200 + b'"}'
    event = _event(
        headers=[("Authorization", "Bearer abc"), ("Accept", "application/json")],
        query="token=t0k&page=1",
        body=body,
        detail="card 4111111111111111 refused",
    )
    scrubbed = scrubber(Scrubber(), 64)(event)
    assert scrubbed is not None
    text = repr(dataclasses.asdict(scrubbed))
    for secret in ("hunter2", "abc", "t0k", "4111111111111111"):
        assert secret not in text
    assert dict(scrubbed.headers)["accept"] == "application/json"
    assert scrubbed.body_excerpt is not None and len(scrubbed.body_excerpt) == 64


def test_fingerprint_groups_alike_events_and_separates_others() -> None:
    """Same reason, route, status and exception type share a fingerprint; a new route does not."""
    fingerprint = fingerprinter(FINGERPRINT)
    a, b, c = (
        fingerprint(_event()),
        fingerprint(_event(path="/x")),
        fingerprint(_event(route="b")),
    )
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_groups_count_and_remember_first_and_last_seen() -> None:
    """A group counts its events and keeps the first and last time it saw one."""
    groups = GroupStore(max_groups=10)
    chain = [fingerprinter(FINGERPRINT), grouper(groups)]
    for at in (10.0, 20.0, 30.0):
        run_chain(chain, dataclasses.replace(_event(), timestamp=at))
    (group,) = groups.snapshot()
    assert (group["count"], group["first_seen"], group["last_seen"]) == (3, 10.0, 30.0)


def test_group_store_is_bounded() -> None:
    """Past max_groups, the least recently seen group is evicted."""
    groups = GroupStore(max_groups=2)
    chain = [fingerprinter(FINGERPRINT), grouper(groups)]
    for route in ("a", "b", "a", "c"):
        run_chain(chain, _event(route=route))
    assert sorted(g["route"] for g in groups.snapshot()) == ["a", "c"]
    assert groups.evicted == 1


def test_drop_is_explicit_and_named() -> None:
    """A drop rule ends the chain with None and names the processor that dropped."""
    groups = GroupStore()
    chain = [fingerprinter(FINGERPRINT), dropper([("rate_limited", None, None)]), grouper(groups)]
    assert run_chain(chain, _event(reason="rate_limited", status=429)) == (None, "drop")
    kept, dropped_by = run_chain(chain, _event())
    assert kept is not None and dropped_by is None
    assert len(groups) == 1  # the dropped event was never grouped


def test_sampling_keeps_a_share_per_reason() -> None:
    """With rate_limited sampled at 10%, about a tenth of them pass; others all pass."""
    sample = sampler({"rate_limited": 0.1}, random.Random(7))
    kept = sum(sample(_event(reason="rate_limited", status=429)) is not None for _ in range(1000))
    assert 60 < kept < 140
    assert all(sample(_event()) is not None for _ in range(100))

"""Hostile input never crashes the evaluator, and the prefilters never change a verdict."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.validation.crs import CrsEngine, RequestView
from tests.crs.conftest import NO_BUDGET, request

text = st.text(max_size=80)
raw = st.binary(max_size=300)
header = st.tuples(
    st.sampled_from(["Cookie", "Content-Type", "User-Agent", "X-A", "Referer"]), text
)
content_type = st.sampled_from(
    [
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=b",
        "text/xml",
        "text/plain",
        "",
    ]
)
json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)


@st.composite
def views(draw: st.DrawFn) -> RequestView:
    kind = draw(content_type)
    if kind == "application/json" and draw(st.booleans()):
        body = json.dumps(draw(json_like)).encode()
    else:
        body = draw(raw)
    headers = (*draw(st.lists(header, max_size=5)), ("Content-Type", kind))
    uri = "/" + draw(text) + "?" + draw(text)
    return RequestView(
        draw(st.sampled_from(["GET", "POST", "PUT", "X\x00"])),
        uri,
        draw(st.sampled_from(["HTTP/1.1", "HTTP/2", ""])),
        headers,
        body,
    )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(view=views())
def test_no_input_crashes_the_evaluator(crs: CrsEngine, view: RequestView) -> None:
    """Whatever the bytes, the CRS evaluation finishes without an internal error."""
    verdict = crs.evaluate(view)
    assert verdict.failure is None
    assert verdict.anomaly_score >= 0


@pytest.fixture(scope="session")
def crs_unfiltered(crs_dir: Path) -> CrsEngine:
    """The same CRS with the RE2-set and joined-text prefilters switched off."""
    return CrsEngine.load(crs_dir, time_budget=NO_BUDGET, prefilter=False)


PAYLOADS = st.sampled_from(
    [
        "' OR 1=1--",
        "<svg onload=alert(1)>",
        "../../etc/passwd",
        ";cat /etc/passwd",
        "<?php ",
        "${jndi:ldap://x}",
        "java.lang.Runtime",
        "O'Brien",
        "a\nb",
        "%0a",
        "\\",
        "^",
        "$",
        "",
        "a /* b */ c -- d # e",
        "x\t, y ;z\x0b",
        ".",
        "./a/../../b",
        "\\x41\\u0042",
        "&lt;svg onload=alert(1)&gt;",
        "UNION/**/SELECT",
        "cm\\d /c dir",
        "Y2F0IC9ldGMvcGFzc3dk",
        "\xa0\x1c",
    ]
)


@settings(max_examples=120, deadline=None)
@given(
    parts=st.lists(st.one_of(PAYLOADS, st.text(max_size=20)), min_size=1, max_size=6),
    as_json=st.booleans(),
)
def test_prefilters_never_change_a_verdict(
    crs: CrsEngine, crs_unfiltered: CrsEngine, parts: list[str], as_json: bool
) -> None:
    """Joining values for one RE2-set pass finds every rule that per-value evaluation finds."""
    if as_json:
        view = request("/x", "POST", json_body={f"k{i}": p for i, p in enumerate(parts)})
    else:
        view = request("/x?" + "&".join(f"k{i}={quote(p)}" for i, p in enumerate(parts)))
    fast, slow = crs.evaluate(view), crs_unfiltered.evaluate(view)
    assert (fast.rule_ids, fast.anomaly_score) == (slow.rule_ids, slow.anomaly_score)


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(st.one_of(PAYLOADS, st.text(max_size=20)), min_size=1, max_size=4))
def test_engine_wide_caches_never_change_a_verdict(
    crs: CrsEngine, crs_unfiltered: CrsEngine, parts: list[str]
) -> None:
    """A request seen before (cached transformations and set searches) scores as the first time."""
    view = request(
        "/x?" + "&".join(f"k{i}={quote(p)}" for i, p in enumerate(parts)),
        headers=(
            ("Host", "a.example"),
            ("User-Agent", parts[0]),
            ("Cookie", f"s={quote(parts[-1])}"),
        ),
    )
    first, again, slow = crs.evaluate(view), crs.evaluate(view), crs_unfiltered.evaluate(view)
    assert (first.rule_ids, first.anomaly_score) == (again.rule_ids, again.anomaly_score)
    assert (again.rule_ids, again.anomaly_score) == (slow.rule_ids, slow.anomaly_score)

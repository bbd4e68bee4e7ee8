"""Transforming all of a target's values at once gives each value's own verdict, name and text."""

from __future__ import annotations

import pytest

from gateway.validation.crs import CrsEngine
from tests.crs.conftest import request, rules

# ARGS are url-decoded once when the query is parsed; t:urlDecode decodes a second time, so
# %250a in the query becomes a newline inside one value only after the transformation.
RULES = """
SecRule ARGS "@streq b" "id:1,phase:2,pass,log,t:urlDecode"
SecRule ARGS "@rx ^x\\nb$" "id:2,phase:2,pass,log,t:urlDecode"
SecRule ARGS "@streq admin" "id:3,phase:2,pass,log,t:lowercase"
SecRule ARGS "@rx ^(?:ab|cd)$" "id:4,phase:2,pass,log,t:none,t:removeWhitespace"
"""


@pytest.fixture(params=[True, False], ids=["batched", "per-value"])
def engine(request: pytest.FixtureRequest) -> CrsEngine:
    """The rules above, with the joined-text passes on and off (the reference behaviour)."""
    return rules(RULES, prefilter=request.param)


CASES = [
    ("/?k0=a&k1=x%250ab", (2,), ("ARGS:k1",)),
    ("/?k0=b%250a&k1=c", (), ()),
    ("/?k0=ADMIN&k1=x", (3,), ("ARGS:k0",)),
    ("/?k0=c%20d&k1=a%250ab", (4,), ("ARGS:k0",)),
    ("/?k0=zz&k1=yy", (), ()),
]


@pytest.mark.parametrize(
    ("uri", "ids", "fields"),
    CASES,
    ids=["newline-in-one-value", "line-is-not-a-value", "first-name", "whitespace", "benign"],
)
def test_each_value_is_matched_on_its_own(
    engine: CrsEngine, uri: str, ids: tuple[int, ...], fields: tuple[str, ...]
) -> None:
    """A value that decodes to a newline is still one value: no line of it matches alone."""
    verdict = engine.evaluate(request(uri))
    assert (verdict.rule_ids, verdict.fields) == (ids, fields)


def test_repeated_and_overlapping_requests_keep_their_verdicts() -> None:
    """Requests sharing some values, and a request seen twice, score as they did alone."""
    alone = {uri: rules(RULES).evaluate(request(uri)) for uri, _, _ in CASES}
    shared = rules(RULES)
    for _ in range(2):
        for uri, ids, fields in CASES:
            verdict = shared.evaluate(request(uri))
            assert (verdict.rule_ids, verdict.fields) == (ids, fields)
            assert verdict.anomaly_score == alone[uri].anomaly_score

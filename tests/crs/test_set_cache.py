"""RE2-set results kept per target across requests: a repeated header keeps its result, a new
argument is searched, and no target or transformation chain borrows another's result."""

from __future__ import annotations

import pytest

from gateway.validation.crs import CrsEngine
from tests.crs.conftest import request, rules

# One pattern per chain, each chain with a set of its own; the header and ARGS share each set.
RULES = """
SecRule REQUEST_HEADERS:X-Note|ARGS "@rx EVIL" "id:1,phase:2,pass,log,t:none"
SecRule REQUEST_HEADERS:X-Note|ARGS "@rx evil" "id:2,phase:2,pass,log,t:lowercase"
SecRule REQUEST_HEADERS:X-Note|ARGS "@rx ^$" "id:3,phase:2,pass,log,t:none"
"""

SEQUENCE = [
    ("EVIL", "ok"),
    ("EVIL", "fine"),
    ("calm", "EVIL"),
    ("calm", "evil"),
    ("evil", "ok"),
    ("EVIL", "ok"),
    ("calm", ""),
    ("calm", "ok"),
]


@pytest.fixture
def engines() -> tuple[CrsEngine, CrsEngine]:
    return rules(RULES), rules(RULES, prefilter=False)


def test_a_sequence_of_requests_scores_as_without_the_sets(
    engines: tuple[CrsEngine, CrsEngine],
) -> None:
    """Headers repeat and arguments change: each verdict is the one per-value evaluation gives."""
    fast, slow = engines
    for note, argument in SEQUENCE:
        view = request(f"/?q={argument}", headers=(("Host", "a"), ("X-Note", note)))
        expected = slow.evaluate(view)
        got = fast.evaluate(view)
        assert (got.rule_ids, got.fields) == (expected.rule_ids, expected.fields), (note, argument)
    assert fast.evaluate(request("/?q=EVIL")).rule_ids == (1, 2)

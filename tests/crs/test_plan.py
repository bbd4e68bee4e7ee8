"""Inert rules left out and the constant start evaluated at load never change a verdict."""

from __future__ import annotations

import pytest

from gateway.validation.crs import CrsEngine, Exclusion
from tests.crs.conftest import BROWSER, request, rules


def phase_ids(engine: CrsEngine, phase: int) -> list[int]:
    return [rule.id for rule in engine._programs[phase][0]]


PARANOIA_SKIPS = """
SecRule ARGS "@rx attack" "id:10,phase:2,pass,log,setvar:tx.anomaly_score=+5"
SecRule TX:level "@lt 2" "id:11,phase:2,pass,nolog,skipAfter:END"
SecRule TX:level "@lt 3" "id:12,phase:2,pass,nolog,skipAfter:END"
SecMarker END
SecRule ARGS "@rx attack" "id:13,phase:2,pass,log,setvar:tx.anomaly_score=+5"
"""


def test_skips_that_land_on_the_next_rule_are_left_out() -> None:
    """Paranoia-level skips with nothing left to skip run in no request; the rest still score."""
    engine = rules(PARANOIA_SKIPS, tx={"level": "1"})
    assert phase_ids(engine, 2) == [10, 13]
    verdict = engine.evaluate(request("/?q=attack"))
    assert (verdict.rule_ids, verdict.anomaly_score) == ((10, 13), 10)


@pytest.mark.parametrize(
    ("text", "uri", "expected"),
    [
        pytest.param(
            """
            SecRule ARGS:a "@streq 1" "id:1,phase:2,pass,nolog,skipAfter:END"
            SecRule ARGS "@rx ." "id:2,phase:2,pass,log"
            SecMarker END
            """,
            "/?a=1",
            (),
            id="skip-over-a-rule",
        ),
        pytest.param(
            """
            SecRule ARGS "@rx x" "id:1,phase:2,pass,nolog,setvar:tx.anomaly_score=+5,skipAfter:E"
            SecMarker E
            """,
            "/?a=x",
            (),
            id="setvar",
        ),
        pytest.param(
            """
            SecRule ARGS "@rx ^sel" "id:1,phase:2,pass,nolog"
            SecRule MATCHED_VAR "@streq select" "id:2,phase:2,pass,log"
            """,
            "/?q=select",
            (2,),
            id="matched-var-read-by-the-next-rule",
        ),
        pytest.param(
            """
            SecRule ARGS "@streq a" "id:1,phase:2,pass,nolog,skip:1"
            SecRule ARGS "@rx ." "id:2,phase:2,pass,nolog"
            SecRule ARGS "@rx ." "id:3,phase:2,pass,log"
            """,
            "/?q=a",
            (3,),
            id="skip-count",
        ),
        pytest.param(
            """
            SecRule ARGS "@rx ." "id:1,phase:2,pass,nolog,chain"
                SecRule ARGS "@rx ." "setvar:tx.anomaly_score=+5"
            """,
            "/?q=a",
            (),
            id="setvar-in-a-chained-rule",
        ),
        pytest.param(
            """
            SecRule ARGS "@rx (b)" "id:1,phase:2,pass,nolog,capture"
            SecRule TX:1 "@streq b" "id:2,phase:2,pass,log"
            """,
            "/?q=ab",
            (2,),
            id="capture",
        ),
    ],
)
def test_rules_with_an_effect_still_run(text: str, uri: str, expected: tuple[int, ...]) -> None:
    """A rule that skips others, sets, captures or feeds MATCHED_VAR is kept, with its effect."""
    engine = rules(text)
    verdict = engine.evaluate(request(uri))
    assert verdict.rule_ids == expected
    assert 1 in phase_ids(engine, 2)


CONSTANT_START = """
SecAction "id:1,phase:1,pass,nolog,setvar:tx.a=1,setvar:tx.n=0"
SecRule TX:a "@eq 1" "id:2,phase:1,pass,log,setvar:tx.b=%{tx.a}"
SecRule TX:a "@eq 1" "id:3,phase:1,pass,nolog,setvar:tx.c=%{REQUEST_HEADERS.X-Mode}"
SecRule TX:c "@streq strict" "id:4,phase:1,pass,log"
SecRule ARGS "@rx ." "id:5,phase:2,pass,log,setvar:tx.n=+1"
SecRule TX:n "@ge 2" "id:6,phase:2,deny"
"""


def test_the_constant_start_is_run_once_and_copied() -> None:
    """Rules reading only TX run at load; a rule reading the request stays per request."""
    engine = rules(CONSTANT_START)
    assert engine._start is not None
    assert engine._start.index == 2  # rule 3 reads a header: the start ends before it
    strict = engine.evaluate(request("/", headers=(*BROWSER, ("X-Mode", "strict"))))
    lax = engine.evaluate(request("/", headers=(*BROWSER, ("X-Mode", "lax"))))
    assert strict.rule_ids == (2, 4)
    assert lax.rule_ids == (2,)


@pytest.mark.parametrize(
    "reader",
    [
        'SecRule REQUEST_METHOD "@streq POST" "id:2,phase:1,pass,log"',
        'SecRule TX:m "@streq %{REQUEST_METHOD}" "id:2,phase:1,pass,log"',
        'SecRule TX:m "@rx ." "id:2,phase:1,pass,nolog,setvar:tx.x=%{REQUEST_METHOD}"\n'
        'SecRule TX:x "@streq POST" "id:3,phase:1,pass,log"',
    ],
    ids=["target", "operand", "setvar"],
)
def test_the_start_ends_at_the_first_rule_reading_the_request(reader: str) -> None:
    """A rule reading the request by target or macro runs per request, never at load."""
    engine = rules('SecAction "id:1,phase:1,pass,nolog,setvar:tx.m=POST"\n' + reader)
    assert engine._start is not None and engine._start.index == 1
    assert engine.evaluate(request("/", "POST")).rule_ids != ()
    assert engine.evaluate(request("/", "GET")).rule_ids == ()


def test_each_request_starts_from_its_own_copy() -> None:
    """What one request adds to TX is not where the next one starts."""
    engine = rules(CONSTANT_START)
    assert engine.evaluate(request("/?a=1")).blocked is False
    assert engine.evaluate(request("/?a=1")).blocked is False
    assert engine.evaluate(request("/?a=1&b=2")).blocked is True


def test_a_route_excluding_a_start_rule_runs_the_start_itself() -> None:
    """A route exclusion that removes a rule of the constant start removes it for that route."""
    text = """
        SecAction "id:1,phase:1,pass,nolog,setvar:tx.score=5"
        SecRule TX:score "@eq 5" "id:2,phase:1,deny"
        """
    engine = rules(text, exclusions=(Exclusion(((1, 1),), routes=("open",)),))
    assert engine._start is not None
    assert engine.evaluate(request("/")).blocked is True
    assert engine.evaluate(request("/"), route="open").blocked is False


def test_crs_keeps_its_verdicts_without_the_inert_rules(crs: CrsEngine) -> None:
    """At PL1 the CRS's own paranoia skips are gone, and an attack still scores as before."""
    assert not {911013, 911014, 942013, 942014} & set(phase_ids(crs, 1) + phase_ids(crs, 2))
    verdict = crs.evaluate(request("/?q=1%27%20UNION%20SELECT%20NULL--"))
    assert verdict.blocked
    assert "sqli" in verdict.families

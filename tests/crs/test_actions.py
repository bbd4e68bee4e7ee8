"""Actions and flow: setvar, chain, capture, ctl, skipAfter, removal, scoring, time budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.validation.crs import CrsEngine, Exclusion
from tests.crs.conftest import request, rules

SCORING = """
SecAction "id:900,phase:1,pass,nolog,setvar:tx.anomaly_score=0"
SecRule ARGS "@rx attack" "id:100,phase:2,block,setvar:'tx.anomaly_score=+%{tx.points}'"
SecRule ARGS "@rx evil" "id:200,phase:2,block,setvar:tx.anomaly_score=+3"
"""


def test_setvar_with_macro_adds_to_the_anomaly_score() -> None:
    """Each matching rule adds its points; the verdict blocks at the threshold."""
    engine = rules(SCORING, anomaly_threshold=5, tx={"points": "4"})
    verdict = engine.evaluate(request("/?a=attack"))
    assert (verdict.rule_ids, verdict.anomaly_score, verdict.blocked) == ((100,), 4, False)
    verdict = engine.evaluate(request("/?a=attack&b=evil"))
    assert (verdict.rule_ids, verdict.anomaly_score, verdict.blocked) == ((100, 200), 7, True)


def test_setvar_runs_once_per_matched_value_like_modsecurity() -> None:
    """Two matching arguments count twice, as in ModSecurity (non-chained rules)."""
    engine = rules(SCORING, anomaly_threshold=100, tx={"points": "4"})
    assert engine.evaluate(request("/?a=attack&b=attack")).anomaly_score == 8


MULTI_MATCH = """
SecAction "id:900,phase:1,pass,nolog,setvar:tx.anomaly_score=0"
SecRule ARGS "@contains ../" \\
    "id:100,phase:2,pass,t:none,t:urlDecode,t:lowercase{multi},setvar:tx.anomaly_score=+5"
"""

# (id, query string, score with multiMatch, score without). The engine has URL-decoded the
# query once already, so %252F reaches the rule as %2F.
MULTI_MATCH_CASES = [
    ("raw-only", "q=../etc", 5, 5),
    ("raw-and-lowercase", "q=../ETC", 10, 5),
    ("urldecode-and-lowercase", "q=..%252F..%252FETC", 10, 5),
    ("raw-urldecode-and-lowercase", "q=../..%252FETC", 15, 5),
    ("only-the-last-stage", "q=..%252f", 5, 5),
    ("each-value-its-own-stages", "a=../ETC&b=..%252f", 15, 10),
    ("no-stage-matches", "q=..%255C", 0, 0),
]


@pytest.mark.parametrize(
    ("query", "with_multi_match", "without"),
    [c[1:] for c in MULTI_MATCH_CASES],
    ids=[c[0] for c in MULTI_MATCH_CASES],
)
def test_multi_match_scores_every_changed_stage_that_matches(
    query: str, with_multi_match: int, without: int
) -> None:
    """multiMatch runs the actions once per stage that changed the value and matches."""
    multi = rules(MULTI_MATCH.format(multi=",multiMatch"), anomaly_threshold=100)
    single = rules(MULTI_MATCH.format(multi=""), anomaly_threshold=100)
    assert multi.evaluate(request(f"/?{query}")).anomaly_score == with_multi_match
    assert single.evaluate(request(f"/?{query}")).anomaly_score == without


def test_setvar_delete_and_decrement() -> None:
    """!tx.x deletes a variable; =- subtracts."""
    engine = rules(
        """
        SecAction "id:1,phase:1,pass,nolog,setvar:tx.a=10,setvar:tx.a=-3,setvar:tx.gone=1"
        SecAction "id:2,phase:1,pass,nolog,setvar:!tx.gone"
        SecRule TX:a "@eq 7" "id:3,phase:1,pass"
        SecRule &TX:gone "@eq 0" "id:4,phase:1,pass"
        """
    )
    assert engine.evaluate(request()).rule_ids == (3, 4)


def test_chain_matches_only_when_every_link_matches() -> None:
    """A chained rule fires when its last link matches; the starter's id is reported."""
    engine = rules(
        """
        SecRule REQUEST_METHOD "@streq POST" "id:10,phase:2,pass,chain"
            SecRule ARGS:cmd "@rx ^rm " "setvar:tx.anomaly_score=+5"
        """
    )
    assert engine.evaluate(request("/?cmd=rm%20-rf", "POST")).rule_ids == (10,)
    assert engine.evaluate(request("/?cmd=rm%20-rf", "GET")).rule_ids == ()
    assert engine.evaluate(request("/?cmd=ls", "POST")).rule_ids == ()


def test_capture_feeds_tx_0_and_groups_to_the_next_link() -> None:
    """capture puts the match in TX.0 and groups in TX.1.., which a chained rule can test."""
    engine = rules(
        """
        SecRule REQUEST_FILENAME "@rx \\.([a-z]+)$" "id:20,phase:1,pass,capture,chain"
            SecRule TX:1 "@streq php" "setvar:tx.anomaly_score=+5"
        """
    )
    assert engine.evaluate(request("/index.php")).rule_ids == (20,)
    assert engine.evaluate(request("/index.html")).rule_ids == ()


def test_matched_var_macros_in_setvar() -> None:
    """%{MATCHED_VAR} and %{MATCHED_VAR_NAME} carry the value and name that matched."""
    engine = rules(
        """
        SecRule ARGS "@rx ^x" \\
            "id:1,phase:2,pass,setvar:'tx.seen=%{MATCHED_VAR_NAME}=%{MATCHED_VAR}'"
        SecRule TX:seen "@streq ARGS:k=xyz" "id:2,phase:2,pass"
        """
    )
    assert engine.evaluate(request("/?k=xyz")).rule_ids == (1, 2)


def test_skip_after_jumps_past_the_marker() -> None:
    """skipAfter skips every rule up to its SecMarker, in the same phase."""
    engine = rules(
        """
        SecRule ARGS:skip "@eq 1" "id:1,phase:2,pass,nolog,skipAfter:END"
        SecRule ARGS "@rx ." "id:2,phase:2,pass"
        SecMarker END
        SecRule ARGS "@rx ." "id:3,phase:2,pass"
        """
    )
    assert engine.evaluate(request("/?skip=1")).rule_ids == (3,)
    assert engine.evaluate(request("/?skip=0")).rule_ids == (2, 3)


def test_ctl_rule_remove_by_id_and_target_apply_to_this_request_only() -> None:
    """ctl:ruleRemoveById / ruleRemoveTargetById switch rules or fields off for one request."""
    engine = rules(
        """
        SecRule REQUEST_FILENAME "@streq /upload" "id:1,phase:1,pass,nolog,ctl:ruleRemoveById=50"
        SecRule REQUEST_FILENAME "@streq /form" \\
            "id:2,phase:1,pass,nolog,ctl:ruleRemoveTargetById=50;ARGS:body"
        SecRule ARGS "@rx <script" "id:50,phase:2,block"
        """
    )
    assert engine.evaluate(request("/upload?body=%3Cscript")).rule_ids == ()
    assert engine.evaluate(request("/form?body=%3Cscript")).rule_ids == ()
    assert engine.evaluate(request("/form?other=%3Cscript")).rule_ids == (50,)
    assert engine.evaluate(request("/else?body=%3Cscript")).rule_ids == (50,)


def test_deny_stops_evaluation_and_blocks() -> None:
    """A deny rule blocks at once; later rules do not run."""
    engine = rules(
        """
        SecRule REQUEST_METHOD "@streq TRACE" "id:1,phase:1,deny"
        SecAction "id:2,phase:2,pass"
        """
    )
    verdict = engine.evaluate(request(method="TRACE"))
    assert (verdict.blocked, verdict.blocked_by, verdict.rule_ids) == (True, 1, (1,))
    assert engine.evaluate(request()).rule_ids == (2,)


def test_directives_remove_and_retarget_rules_wherever_they_appear() -> None:
    """SecRuleRemoveById/ByTag and SecRuleUpdateTargetById act on rules defined before them."""
    engine = rules(
        """
        SecRule ARGS "@rx bad" "id:1,phase:2,pass"
        SecRule ARGS "@rx bad" "id:2,phase:2,pass,tag:'noisy'"
        SecRule ARGS "@rx bad" "id:3,phase:2,pass"
        SecRule ARGS "@rx bad" "id:4,phase:2,pass"
        SecRuleRemoveById 1
        SecRuleRemoveByTag noisy
        SecRuleUpdateTargetById 3 "!ARGS:comment"
        """
    )
    assert engine.evaluate(request("/?comment=bad")).rule_ids == (4,)
    assert engine.evaluate(request("/?q=bad")).rule_ids == (3, 4)
    assert engine.report.removed == 2


def test_variable_forms_counts_exclusions_and_regex_selectors() -> None:
    """&ARGS counts, !ARGS:x excludes, ARGS:/re/ selects by name, *_NAMES see names."""
    engine = rules(
        """
        SecRule &ARGS "@eq 3" "id:1,phase:2,pass"
        SecRule ARGS|!ARGS:safe "@rx bad" "id:2,phase:2,pass"
        SecRule ARGS:/^user_/ "@rx bad" "id:3,phase:2,pass"
        SecRule ARGS_NAMES "@streq user_x" "id:4,phase:2,pass"
        SecRule REQUEST_COOKIES:session "@rx bad" "id:5,phase:1,pass"
        SecRule REQUEST_HEADERS:x-test|REQUEST_COOKIES_NAMES "@streq yes" "id:6,phase:1,pass"
        """
    )
    headers = (("X-Test", "yes"), ("Cookie", "session=bad; other=1"))
    # Phase 1 rules (5, 6) run before phase 2 rules.
    verdict = engine.evaluate(request("/?safe=bad&user_x=bad&z=1", headers=headers))
    assert verdict.rule_ids == (5, 6, 1, 2, 3, 4)
    assert engine.evaluate(request("/?safe=bad")).rule_ids == ()


def test_request_variables_describe_the_request() -> None:
    """URI, filename, basename, query, method, protocol, line and body are what was sent."""
    engine = rules(
        """
        SecRule REQUEST_URI "@streq /a/b.php?x=1" "id:1,phase:1,pass"
        SecRule REQUEST_FILENAME "@streq /a/b.php" "id:2,phase:1,pass"
        SecRule REQUEST_BASENAME "@streq b.php" "id:3,phase:1,pass"
        SecRule QUERY_STRING "@streq x=1" "id:4,phase:1,pass"
        SecRule REQUEST_LINE "@streq PUT /a/b.php?x=1 HTTP/1.1" "id:5,phase:1,pass"
        SecRule REQUEST_BODY "@streq y=2" "id:6,phase:2,pass"
        SecRule ARGS_POST:y "@eq 2" "id:7,phase:2,pass"
        SecRule ARGS_GET:x "@eq 1" "id:8,phase:2,pass"
        SecRule REQBODY_PROCESSOR "@streq URLENCODED" "id:9,phase:2,pass"
        """
    )
    view = request(
        "/a/b.php?x=1", "PUT", body="y=2", content_type="application/x-www-form-urlencoded"
    )
    assert engine.evaluate(view).rule_ids == (1, 2, 3, 4, 5, 6, 7, 8, 9)


def test_json_bodies_become_args_named_like_modsecurity() -> None:
    """{"a": {"b": ..}, "c": [..]} is seen as ARGS json.a.b and json.c.0, json.c.1."""
    engine = rules(
        """
        SecRule ARGS:json.a.b "@streq deep" "id:1,phase:2,pass"
        SecRule ARGS:json.c.1 "@streq second" "id:2,phase:2,pass"
        SecRule ARGS_NAMES "@streq json.n" "id:3,phase:2,pass"
        """
    )
    view = request("/", "POST", json_body={"a": {"b": "deep"}, "c": ["first", "second"], "n": None})
    assert engine.evaluate(view).rule_ids == (1, 2, 3)


def test_multipart_fields_and_files() -> None:
    """Multipart fields become ARGS; uploads fill FILES (file names) and FILES_NAMES."""
    engine = rules(
        """
        SecRule ARGS:title "@streq hello" "id:1,phase:2,pass"
        SecRule FILES "@endsWith .php" "id:2,phase:2,pass"
        SecRule FILES_NAMES "@streq upload" "id:3,phase:2,pass"
        """
    )
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="title"\r\n\r\nhello\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="upload"; filename="shell.php"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n<?php ?>\r\n--XyZ--\r\n"
    )
    view = request("/", "POST", body=body, content_type="multipart/form-data; boundary=XyZ")
    assert engine.evaluate(view).rule_ids == (1, 2, 3)


def test_paranoia_level_leaves_out_stricter_rules() -> None:
    """Rules tagged paranoia-level/2 run at PL2 and are left out at PL1."""
    text = """
        SecRule ARGS "@rx x" "id:1,phase:2,pass,tag:'paranoia-level/1'"
        SecRule ARGS "@rx x" "id:2,phase:2,pass,tag:'paranoia-level/2'"
        """
    assert rules(text, paranoia_level=1).evaluate(request("/?a=x")).rule_ids == (1,)
    assert rules(text, paranoia_level=2).evaluate(request("/?a=x")).rule_ids == (1, 2)
    assert rules(text, paranoia_level=1).report.above_paranoia == 1


class SteppingClock:
    """A clock that moves forward by `step` seconds every time it is read."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.mark.parametrize(
    ("fail_mode", "blocked"), [("block", True), ("pass", False)], ids=["fail-closed", "fail-open"]
)
def test_time_budget_fails_safe(fail_mode: str, blocked: bool) -> None:
    """Over its time budget the evaluation stops, says 'timeout', and applies the fail mode."""
    text = "\n".join(f'SecRule ARGS "@rx zz{i}" "id:{i},phase:2,pass"' for i in range(1, 50))
    engine = rules(text, time_budget=0.010, fail_mode=fail_mode, clock=SteppingClock(0.001))
    verdict = engine.evaluate(request("/?a=b"))
    assert (verdict.failure, verdict.blocked) == ("timeout", blocked)


def test_policy_exclusions_by_field_and_by_route(tmp_path: Path) -> None:
    """A field exclusion spares that field; a route exclusion spares that route only."""
    (tmp_path / "r.conf").write_text(
        'SecRule ARGS "@rx <script" "id:941100,phase:2,block,setvar:tx.anomaly_score=+5"\n'
        'SecRule ARGS "@rx ;\\s*rm" "id:932100,phase:2,block,setvar:tx.anomaly_score=+5"\n'
    )
    engine = CrsEngine.load(
        tmp_path,
        exclusions=(
            Exclusion(((941100, 941100),), fields=("json.comment",)),
            Exclusion(((932000, 932999),), routes=("docs",)),
        ),
    )
    comment = request("/", "POST", json_body={"comment": "<script>"})
    other = request("/", "POST", json_body={"title": "<script>"})
    assert engine.evaluate(comment).rule_ids == ()
    assert engine.evaluate(other).rule_ids == (941100,)
    shell = request("/?c=;%20rm%20-rf")
    assert engine.evaluate(shell, route="docs").rule_ids == ()
    assert engine.evaluate(shell, route="api").rule_ids == (932100,)


def test_unsupported_constructs_are_reported_once_with_their_place() -> None:
    """An unknown operator, variable, transformation or directive is listed once, file:line."""
    engine = rules(
        """
        SecRuleEngine On
        SecRule REMOTE_ADDR "@rbl bl.example" "id:1,phase:1,pass"
        SecRule REMOTE_ADDR "@rbl bl.example" "id:2,phase:1,pass"
        SecRule GEO:country_code "@streq XX" "id:3,phase:1,pass"
        SecRule ARGS "@rx x" "id:4,phase:2,pass,t:parityEven7bit"
        SecRule ARGS "@rx x" "id:5,phase:2,pass"
        """
    )
    assert engine.report.unsupported == (
        "<text>:2: unsupported directive SecRuleEngine (uses: 1)",
        "<text>:3: unsupported operator @rbl (uses: 2)",
        "<text>:5: unsupported variable GEO (uses: 1)",
        "<text>:6: unsupported transformation t:parityEven7bit (uses: 1)",
    )
    assert [line.split(": ", 1)[1] for line in engine.report.skipped] == [
        "rule 1 skipped: operator @rbl is not supported",
        "rule 2 skipped: operator @rbl is not supported",
        "rule 3 skipped: none of its variables is supported",
        "rule 4 skipped: transformation t:parityEven7bit is not supported",
    ]
    assert engine.report.rules == 1


def test_block_follows_sec_default_action() -> None:
    """`block` passes (anomaly scoring) by default, and denies after SecDefaultAction deny."""
    rule = 'SecRule ARGS "@rx evil" "id:5,phase:2,block"\n'
    assert not rules(rule).evaluate(request("/?a=evil")).blocked
    strict = rules('SecDefaultAction "phase:2,log,deny,status:403"\n' + rule)
    assert strict.evaluate(request("/?a=evil")).blocked_by == 5

"""SecLang parsing: continuations, quoting, variables, actions, and errors with file:line."""

from __future__ import annotations

import pytest

from gateway.validation.crs.parser import (
    RuleDef,
    SecLangSyntaxError,
    VariableSpec,
    parse_text,
)

RULE = r"""
# a comment
SecRule REQUEST_COOKIES|!REQUEST_COOKIES:/^_ga(?:_\w+)?$/|&TX:x|XML:/* \
    "@rx a\"b|c" \
    "id:942100,\
    phase:2,\
    msg:'SQL Injection, \'quoted\'',\
    t:none,t:urlDecodeUni,\
    setvar:'tx.score=+%{tx.critical_anomaly_score}',\
    chain"
    SecRule MATCHED_VARS "@eq 1" "t:none"
"""


def test_continuations_quotes_and_chains_parse() -> None:
    """A multi-line CRS rule becomes one rule with its chained child and exact arguments."""
    [rule] = parse_text(RULE, "x.conf").directives
    assert isinstance(rule, RuleDef)
    assert rule.location.line == 3
    assert rule.variables == [
        VariableSpec("REQUEST_COOKIES"),
        VariableSpec("REQUEST_COOKIES", r"^_ga(?:_\w+)?$", True, exclude=True),
        VariableSpec("TX", "x", count=True),
        VariableSpec("XML", "/*"),
    ]
    assert (rule.operator.name, rule.operator.argument) == ("rx", 'a"b|c')
    assert rule.first("msg") == "SQL Injection, 'quoted'"
    assert rule.action_values("t") == ["none", "urlDecodeUni"]
    assert rule.first("setvar") == "tx.score=+%{tx.critical_anomaly_score}"
    assert rule.chained is not None and rule.chained.variables == [VariableSpec("MATCHED_VARS")]


def test_bare_pattern_is_an_implicit_rx() -> None:
    """SecRule ARGS "abc" means @rx abc, as in ModSecurity."""
    [rule] = parse_text('SecRule ARGS "abc" "id:1"', "x").directives
    assert isinstance(rule, RuleDef)
    assert (rule.operator.name, rule.operator.argument, rule.operator.negated) == (
        "rx",
        "abc",
        False,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('SecRule ARGS "@rx a', "x.conf:1: unterminated quoted argument"),
        ('\nSecRule ARGS "@rx a" "id:1,chain"', "x.conf:2: 'chain' without a following rule"),
        ("SecRule ARGS", "x.conf:1: SecRule takes 2 or 3 arguments"),
        ('SecRule ARGS "x" "msg:\'open"', "x.conf:1: unterminated quote in actions"),
        ("SecRuleRemoveById 12x", "x.conf:1: invalid rule id or range '12x'"),
    ],
    ids=["open-quote", "dangling-chain", "arity", "open-action-quote", "bad-id"],
)
def test_syntax_errors_name_file_and_line(text: str, message: str) -> None:
    """A directive that cannot be parsed is an error naming its file and line."""
    with pytest.raises(SecLangSyntaxError) as caught:
        parse_text(text, "x.conf")
    assert str(caught.value).startswith(message)

"""Operators: each one matching and not matching, through a one-rule ruleset."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from gateway.validation.crs import CrsEngine, CrsLoadError, operators
from tests.crs.conftest import request, rules

# (operator with argument, value of ?v=, matches)
CASES = [
    ("@rx ^ab+c$", "abbbc", True),
    ("@rx ^ab+c$", "abd", False),
    ("@rx (?<!x)y", "ay", True),  # lookbehind: RE2 refuses, Python re takes it
    ("@pm union select", "1 UNION x", True),
    ("@pm union select", "onion", False),
    ("@detectSQLi", "1' or '1'='1", True),
    ("@detectSQLi", "O'Brien", False),
    ("@detectXSS", "<script>alert(1)</script>", True),
    ("@detectXSS", "a < b and c > d", False),
    ("@streq abc", "abc", True),
    ("@streq abc", "abcd", False),
    ("@eq 5", "5", True),
    ("@eq 5", "6", False),
    ("@ge 5", "5", True),
    ("@gt 5", "5", False),
    ("@le 5", "4", True),
    ("@lt 5", "5", False),
    ("@within GET HEAD POST", "HEAD", True),
    ("@within GET HEAD POST", "PUT", False),
    ("@contains etc/pass", "/etc/passwd", True),
    ("@containsWord select", "reselect", False),
    ("@containsWord select", "a select b", True),
    ("@beginsWith /adm", "/admin", True),
    ("@endsWith .php", "index.php", True),
    ("@endsWith .php", "index.html", False),
    ("@validateByteRange 32-126", "ok", False),
    ("@validateByteRange 32-126", "tab\there", True),
    ("@validateUrlEncoding", "100%", True),
    ("@validateUrlEncoding", "100%25", False),
    ("@validateUtf8Encoding", "caf\xc3", True),
    ("@ipMatch 192.0.2.0/24,10.0.0.1", "192.0.2.77", True),
    ("@ipMatch 192.0.2.0/24,10.0.0.1", "198.51.100.1", False),
    ("@unconditionalMatch", "anything", True),
    ("!@streq abc", "xyz", True),
]


@pytest.mark.parametrize(
    ("operator", "value", "matches"), CASES, ids=[f"{c[0]}~{c[1]!r}" for c in CASES]
)
def test_operator(operator: str, value: str, matches: bool) -> None:
    """The operator decides whether the rule matches the argument's value."""
    engine = rules(f'SecRule ARGS:v "{operator}" "id:1,phase:2,pass,t:none"')
    # Percent-encode every byte: the rule sees exactly these bytes after the query is parsed.
    view = request("/?v=" + quote(value.encode("latin-1"), safe=""))
    assert engine.evaluate(view).rule_ids == ((1,) if matches else ())
    assert engine.evaluate(view).rule_ids == ((1,) if matches else ()), "from the memo"


def test_regex_engine_choice_is_reported() -> None:
    """RE2 compiles what it can; a lookbehind falls back to Python re, and the report says so."""
    engine = rules(
        """
        SecRule ARGS "@rx ^a" "id:1,phase:2,pass"
        SecRule ARGS "@rx (?<!x)y" "id:2,phase:2,pass"
        """
    )
    assert engine.report.regex_engines == {"re2": 1, "re": 1}


def test_pm_from_file_reads_phrases_beside_the_rules(tmp_path: Path) -> None:
    """@pmFromFile loads its phrases (comments skipped) relative to the rule file."""
    (tmp_path / "words.data").write_text("# scanners\nsqlmap\nnikto\n")
    (tmp_path / "rules.conf").write_text(
        'SecRule REQUEST_HEADERS:User-Agent "@pmFromFile words.data" "id:7,phase:1,pass"\n'
    )
    engine = CrsEngine.load(tmp_path)
    assert engine.evaluate(request(headers=(("User-Agent", "SQLMap/1.7"),))).rule_ids == (7,)
    assert engine.evaluate(request(headers=(("User-Agent", "curl/8"),))).rule_ids == ()


def test_missing_data_file_fails_the_load_with_its_place(tmp_path: Path) -> None:
    """A data file that is not there stops the load and names the rule file and line."""
    (tmp_path / "rules.conf").write_text('\n\nSecRule ARGS "@pmFromFile nope.data" "id:1"\n')
    with pytest.raises(ValueError, match=r"rules\.conf:3: @pmFromFile: cannot read data file"):
        CrsEngine.load(tmp_path)


def test_unreadable_rules_file_fails_the_load(tmp_path: Path) -> None:
    """A rules file that is not there stops the load with a load error naming it."""
    missing = tmp_path / "nope.conf"
    with pytest.raises(CrsLoadError, match=r"nope\.conf: No such file or directory"):
        CrsEngine.load([missing])


def test_memo_keeps_each_verdict_and_empties_when_full() -> None:
    """A short text is searched once, a long one every time; a full memo starts over."""
    searched: list[str] = []

    def search(text: str) -> operators.Captures | None:
        searched.append(text)
        return ("hit",) if "x" in text else None

    memo = operators.Memo(longest=3, entries=2)
    remembered = memo.wrap(search)
    assert [remembered(t) for t in ("ax", "ab", "ax", "ab")] == [("hit",), None, ("hit",), None]
    assert searched == ["ax", "ab"]
    assert remembered("long x") == remembered("long x") == ("hit",)
    assert searched[2:] == ["long x", "long x"]
    remembered("c")  # a third verdict: the memo is emptied first
    remembered("ax")
    assert searched[4:] == ["c", "ax"]


def test_operand_macros_expand_per_request() -> None:
    """`@within %{tx.allowed}` compares against the TX value set by an earlier rule."""
    engine = rules(
        """
        SecAction "id:1,phase:1,pass,nolog,setvar:'tx.allowed=GET HEAD'"
        SecRule REQUEST_METHOD "!@within %{tx.allowed}" "id:2,phase:1,pass"
        """
    )
    assert engine.evaluate(request(method="GET")).rule_ids == ()
    assert engine.evaluate(request(method="DELETE")).rule_ids == (2,)


def test_rx_macro_from_request_data_matches_past_the_pattern_cache() -> None:
    """`@rx %{...}` fed by request data compiles each expansion and stays right past the cache."""
    engine = rules(
        """
        SecRule ARGS:p "@rx ." "id:1,phase:2,pass,nolog,setvar:'tx.p=%{MATCHED_VAR}'"
        SecRule ARGS:v "@rx ^%{tx.p}$" "id:2,phase:2,pass"
        """
    )
    for n in range(operators.MACRO_PATTERNS + 5):
        assert engine.evaluate(request(f"/?p=a{n}&v=a{n}")).rule_ids == (2,)
        assert engine.evaluate(request(f"/?p=a{n}&v=b{n}")).rule_ids == ()

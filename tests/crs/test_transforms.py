"""Transformations: each one on the evasions it exists to undo."""

from __future__ import annotations

import binascii
import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.validation.crs.transforms import TRANSFORMS, batch_op, lookup
from tests.crs.conftest import request, rules

CASES = [
    ("lowercase", "SeLeCt", "select"),
    ("lowercase-ascii-only", "\xc0B", "\xc0b"),
    ("uppercase", "abc", "ABC"),
    ("urlDecode", "a%20b+c%2", "a b c%2"),
    ("urlDecodeUni", "%u0041%uff1c%2e", "A<."),
    ("htmlEntityDecode", "&lt;script&gt;&#x61;&#98;", "<script>ab"),
    ("jsDecode", r"\x3cscript\u003e\101\n", "<script>A\n"),
    ("cssDecode", r"\6a avascript", "javascript"),
    ("escapeSeqDecode", r"\x41\102\t", "AB\t"),
    ("cmdLine", 'C^AT "/etc/pass"wd', "cat/etc/passwd"),
    ("compressWhitespace", "a \t\n b", "a b"),
    ("compressWhitespace-nbsp-not-x1c", "a\xa0\xa0b\x1cc", "a b\x1cc"),
    ("removeWhitespace", "s e l\te\nct", "select"),
    ("removeWhitespace-isspace-only", "a\x0bb\x85c", "ab\x85c"),
    ("cmdLine-keeps-form-feed", "a\x0cb;c", "a\x0cb c"),
    ("removeNulls", "a\x00b", "ab"),
    ("replaceNulls", "a\x00b", "a b"),
    ("removeComments", "sel/**/ect -- x", "select "),
    ("removeCommentsChar", "sel/*ect*/", "select"),
    ("replaceComments", "union/**/select", "union select"),
    ("normalizePath", "/a/./b/../c//d", "/a/c/d"),
    ("normalisePath", "/../../etc/passwd", "/etc/passwd"),
    ("normalizePathWin", "..\\..\\windows\\win.ini", "../../windows/win.ini"),
    ("utf8toUnicode", "caf\xc3\xa9", "caf%u00e9"),
    ("base64Decode", "PHNjcmlwdD4=", "<script>"),
    ("hexDecode", "3c62", "<b"),
    ("hexEncode", "<b", "3c62"),
    ("sqlHexDecode", "0x61646d696e", "admin"),
    ("length", "abcd", "4"),
    ("trim", "  x  ", "x"),
    (
        "sha1",
        "",
        "\xda\x39\xa3\xee\x5e\x6b\x4b\x0d\x32\x55\xbf\xef\x95\x60\x18\x90\xaf\xd8\x07\x09",
    ),
]


@pytest.mark.parametrize(("name", "given", "expected"), CASES, ids=[c[0] for c in CASES])
def test_transformation(name: str, given: str, expected: str) -> None:
    """Each transformation turns the encoded form into what the attack really says."""
    transform = lookup(name.split("-")[0])
    assert transform is not None
    assert transform(given) == expected


# ModSecurity's htmlEntityDecode, not HTML5's: numeric entities and five names, nothing else.
HTML_ENTITY_CASES = [
    ("five-names", "&quot;&amp;&lt;&gt;&nbsp;", '"&<>\xa0'),
    ("names-without-semicolon", "&lt&gt&quot&amp&nbsp", '<>"&\xa0'),
    ("names-caseless", "&LT;&Gt;&QUOT;&AmP;&NBSP;", '<>"&\xa0'),
    (
        "html5-name-kept",
        "javascript&colon;alert&lpar;1&rpar;",
        "javascript&colon;alert&lpar;1&rpar;",
    ),
    ("html5-tab-newline-kept", "java&Tab;script&NewLine;", "java&Tab;script&NewLine;"),
    ("legacy-latin1-name-kept", "&eacute;&copy;&copy", "&eacute;&copy;&copy"),
    ("name-runs-over-alnum", "&ltscript&gt1&gt;1", "&ltscript&gt1>1"),
    ("decimal", "&#60;&#x3c;&#X3C;", "<<<"),
    ("numeric-without-semicolon", "&#60&#x3cscript", "<<script"),
    ("hex-digits-run-greedily", "&#x3cab", "\xab"),
    ("decimal-stops-at-non-digit", "&#60a;", "<a;"),
    ("leading-zeros", "&#0000060;&#x000003c;", "<<"),
    ("low-byte-kept", "&#321;&#x141;&#x263a;", "AA:"),
    ("overflow-saturates-to-ff", "&#99999999999999999999;&#x10000000000000041;", "\xff\xff"),
    ("nul", "&#0;", "\x00"),
    ("only-one-semicolon-eaten", "&lt;;", "<;"),
    ("no-digits-kept", "&#;&#x;&#xg;&#", "&#;&#x;&#xg;&#"),
    ("bare-ampersand-kept", "a & b &", "a & b &"),
    ("double-encoding-once", "&amp;lt;&amp;#60;", "&lt;&#60;"),
    ("ampersand-before-entity", "&&lt;", "&<"),
    ("high-bytes-untouched", "\xe9&\xe9;", "\xe9&\xe9;"),
]


@pytest.mark.parametrize(
    ("given", "expected"),
    [c[1:] for c in HTML_ENTITY_CASES],
    ids=[c[0] for c in HTML_ENTITY_CASES],
)
def test_html_entity_decode_matches_modsecurity(given: str, expected: str) -> None:
    """htmlEntityDecode decodes what ModSecurity decodes; every other entity stays as written."""
    assert TRANSFORMS["htmlentitydecode"](given) == expected


def test_html5_only_entity_does_not_reach_the_rule() -> None:
    """&colon; is not decoded, so a rule looking for 'javascript:' does not match (941170)."""
    engine = rules(
        """
        SecRule ARGS "@contains javascript:" "id:1,phase:2,pass,t:none,t:htmlEntityDecode"
        """
    )
    assert engine.evaluate(request("/?q=javascript%26colon;alert(1)")).rule_ids == ()
    assert engine.evaluate(request("/?q=javascript%26%2358;alert(1)")).rule_ids == (1,)


def test_names_are_case_insensitive_like_modsecurity() -> None:
    """base64decode and base64Decode are the same transformation, as CRS 4 spells both."""
    assert lookup("base64decode") is lookup("base64Decode") is TRANSFORMS["base64decode"]


def test_transformations_apply_in_order_and_none_resets() -> None:
    """t:none drops the inherited chain; the rule then sees the URL-decoded, lowercased value."""
    engine = rules(
        """
        SecRule ARGS:q "@streq <script>" \\
            "id:1,phase:2,pass,t:lowercase,t:none,t:urlDecode,t:lowercase"
        """
    )
    assert engine.evaluate(request("/?q=%3CSCRIPT%3E")).rule_ids == (1,)
    assert engine.evaluate(request("/?q=script")).rule_ids == ()


def test_multimatch_tries_every_stage_of_the_chain() -> None:
    """With multiMatch a pattern visible only before decoding still matches."""
    text = """
        SecRule ARGS:q "@contains %27" "id:1,phase:2,pass,t:none,t:urlDecode{mm}"
        """
    request_with_double_encoding = request("/?q=%2527")
    assert rules(text.format(mm="")).evaluate(request_with_double_encoding).rule_ids == ()
    assert rules(text.format(mm=",multiMatch")).evaluate(request_with_double_encoding).rule_ids == (
        1,
    )


# Characters every transformation treats specially, so the property test reaches each branch.
SPECIAL = st.text(
    alphabet=st.sampled_from(list("aZ09 \t\n\r\x0b\x0c\xa0\x00%+&;#\\/*-.<>!'\",^uU")),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(TRANSFORMS)), values=st.lists(SPECIAL, min_size=1, max_size=5))
def test_batch_form_equals_the_join_of_the_transformed_values(name: str, values: list[str]) -> None:
    """Transforming all values at once gives what transforming each one gives (joined, or one
    by one), or declines."""
    batched = batch_op(name)("\n".join(values), len(values) - 1)
    expected = [TRANSFORMS[name](v) for v in values]
    if isinstance(batched, list):
        assert batched == expected
    elif batched is not None:
        assert batched == "\n".join(expected)


# The fast transformations (str.replace in place of re and str.translate) against the plain
# definitions they stand for: a run of separators becomes one space, deleted characters go.
def _plain_cmd_line(value: str) -> str:
    value = re.sub(r"[\\\"'^]", "", value)
    value = re.sub(r"[ \t\n\r,;]+", " ", value)
    return re.sub(r" (?=[/(])", "", value).translate(_ASCII_LOWER)


def _plain_base64(value: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9+/]+", "", value)
    if len(cleaned) % 4 == 1:
        cleaned = cleaned[:-1]
    try:
        return binascii.a2b_base64(cleaned + "=" * (-len(cleaned) % 4)).decode("latin-1")
    except (binascii.Error, ValueError):
        return ""


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

PLAIN = {
    "cmdline": _plain_cmd_line,
    "compresswhitespace": lambda v: re.sub(r"[ \t\n\r\f\v\xa0]+", " ", v),
    "removewhitespace": lambda v: re.sub(r"[ \t\n\r\f\v\xa0]+", "", v),
    "base64decode": _plain_base64,
}

RUNS = st.text(alphabet=st.sampled_from(list("aZ= \t\n\r\x0b\x0c\xa0,;\\\"'^/(+")), max_size=40)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(PLAIN)), value=RUNS | st.text(max_size=40))
def test_fast_transformations_equal_their_plain_definitions(name: str, value: str) -> None:
    """Folding and deleting with str.replace gives what the one-regex definition gives."""
    value = value.encode("utf-8", "surrogatepass").decode("latin-1")  # one character per byte
    assert TRANSFORMS[name](value) == PLAIN[name](value)

"""SecLang operators compiled once: each becomes a function value -> captures (a match) or None."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import ahocorasick  # type: ignore[import-not-found]  # C extension without stubs
import libinjection  # type: ignore[import-not-found]  # C extension without stubs
import re2  # type: ignore[import-untyped]  # the binding ships no type information

from gateway.errors import caused_by
from gateway.validation.crs.transforms import ascii_lower

Expand = Callable[[str], str]
"""Expands %{...} macros in an operand against the current transaction."""

Captures = tuple[str, ...]
Match = Callable[[str, Expand], Captures | None]
"""value, macro expander -> None when the operator does not match, else the captures (TX.0..9)."""

Search = Callable[[str], Captures | None]
"""The same for an operator that expands no macro: its verdict depends on the value alone."""

NO_CAPTURES: Final[Captures] = ()


class OperatorError(ValueError):
    """An operator that cannot be compiled (bad argument, missing data file)."""


class UnsupportedPattern(OperatorError):
    """A regex that PCRE accepts but neither RE2 nor Python's re does (variable lookbehind)."""


@dataclass(frozen=True, slots=True)
class CompiledRegex:
    """Which engine compiled a pattern: 're2' (linear time) or 're' (backtracking fallback)."""

    engine: str
    search: Search
    pattern: bytes
    """The latin-1 pattern, for RE2 sets that prefilter many rules in one pass."""


def re2_options() -> re2.Options:
    options = re2.Options()
    # Byte semantics like ModSecurity's PCRE: one character per byte, dot matches newlines.
    options.encoding = re2.Options.Encoding.LATIN1
    options.dot_nl = True
    options.max_mem = 16 << 20
    options.log_errors = False
    return options


_RE2_OPTIONS: Final = re2_options()
_UNANCHORED: Final = re2._Anchor.UNANCHORED
"""RE2::UNANCHORED; the low-level binding skips the wrapper's per-call generator."""


def compile_regex(pattern: str) -> CompiledRegex:
    """RE2 when the pattern allows it; Python's re (DOTALL, as ModSecurity) otherwise."""
    encoded = pattern.encode("latin-1", "replace")
    try:
        compiled2 = re2.compile(encoded, _RE2_OPTIONS)
    except re2.error:
        compiled2 = None
    if compiled2 is not None:
        raw_match = compiled2._regexp.Match  # the wrapper's generator costs more than the match
        groups2 = min(compiled2.groups, 9)

        def run_re2(value: str) -> Captures | None:
            text = value.encode("latin-1", "replace")
            spans = raw_match(_UNANCHORED, text, 0, len(text))
            start, end = spans[0]
            if start < 0:
                return None
            if not groups2:
                return (text[start:end].decode("latin-1"),)
            return tuple(
                text[a:b].decode("latin-1") if a >= 0 else "" for a, b in spans[: groups2 + 1]
            )

        return CompiledRegex("re2", run_re2, encoded)
    try:
        compiled = re.compile(pattern, re.DOTALL)
    except re.error as exc:
        raise caused_by(UnsupportedPattern(f"regular expression not supported: {exc}"), None)
    search = compiled.search
    groups = min(compiled.groups, 9)

    def run_re(value: str) -> Captures | None:
        m = search(value)
        if m is None:
            return None
        return (m.group(0), *(g or "" for g in m.groups()[:groups]))

    return CompiledRegex("re", run_re, encoded)


def _read_phrases(files: str, base_dir: Path) -> list[str]:
    phrases: list[str] = []
    for name in files.split():
        path = (base_dir / name) if not Path(name).is_absolute() else Path(name)
        try:
            text = path.read_text(encoding="latin-1")
        except OSError as exc:
            raise caused_by(OperatorError(f"cannot read data file {path}: {exc.strerror}"), None)
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                phrases.append(line)
    return phrases


def _phrase_matcher(phrases: list[str]) -> Search:
    """Case-insensitive multi-phrase search (Aho-Corasick), like @pm."""
    automaton = ahocorasick.Automaton()
    for phrase in phrases:
        automaton.add_word(ascii_lower(phrase), ascii_lower(phrase))
    if not phrases:
        return lambda value: None
    automaton.make_automaton()

    def pm(value: str) -> Captures | None:
        for _end, phrase in automaton.iter(ascii_lower(value)):
            return (phrase,)
        return None

    return pm


_LEADING_INTEGER: Final = re.compile(r"\s*([+-]?\d+)")


def numeric(text: str) -> int:
    """atoi semantics: leading sign and digits, anything else is 0."""
    if text.isdigit():
        return int(text)
    m = _LEADING_INTEGER.match(text)
    return int(m.group(1)) if m else 0


def _operand(argument: str) -> Callable[[Expand], str]:
    if "%{" in argument:
        return lambda expand: expand(argument)
    return lambda expand: argument


def _compare(argument: str, test: Callable[[int, int], bool]) -> Match:
    if "%{" not in argument:
        constant = numeric(argument)

        def compare_constant(value: str, expand: Expand) -> Captures | None:
            return NO_CAPTURES if test(numeric(value), constant) else None

        return compare_constant

    def compare(value: str, expand: Expand) -> Captures | None:
        return NO_CAPTURES if test(numeric(value), numeric(expand(argument))) else None

    return compare


def _string_op(argument: str, test: Callable[[str, str], bool]) -> Match:
    operand = _operand(argument)

    def string_op(value: str, expand: Expand) -> Captures | None:
        return NO_CAPTURES if test(value, operand(expand)) else None

    return string_op


def _byte_range(argument: str) -> Match:
    allowed: list[str] = []
    for token in argument.replace(",", " ").split():
        low, dash, high = token.partition("-")
        try:
            a, b = int(low), int(high) if dash else int(low)
        except ValueError:
            raise caused_by(OperatorError(f"invalid byte range {token!r}"), None)
        if not (0 <= a <= b <= 255):
            raise OperatorError(f"invalid byte range {token!r}")
        allowed.append(f"\\x{a:02x}-\\x{b:02x}")
    outside = re.compile(f"[^{''.join(allowed)}]")

    def byte_range(value: str, expand: Expand) -> Captures | None:
        return NO_CAPTURES if outside.search(value) else None

    return byte_range


_BAD_URL_ESCAPE: Final = re.compile(r"%(?![0-9a-fA-F]{2})")


def _bad_url_encoding(value: str, expand: Expand) -> Captures | None:
    return NO_CAPTURES if _BAD_URL_ESCAPE.search(value) else None


def _bad_utf8(value: str, expand: Expand) -> Captures | None:
    if value.isascii():
        return None  # ASCII is valid UTF-8: no need to copy the value twice
    try:
        value.encode("latin-1", "replace").decode("utf-8")
    except UnicodeDecodeError:
        return NO_CAPTURES
    return None


def _ip_match(argument: str) -> Search:
    try:
        networks = [ipaddress.ip_network(x.strip(), strict=False) for x in argument.split(",")]
    except ValueError as exc:
        raise caused_by(OperatorError(f"invalid @ipMatch list: {exc}"), None)

    def ip_match(value: str) -> Captures | None:
        try:
            address = ipaddress.ip_address(value.strip())
        except ValueError:
            return None
        return NO_CAPTURES if any(address in n for n in networks) else None

    return ip_match


def _detect_sqli(value: str) -> Captures | None:
    result = libinjection.is_sql_injection(value)
    return (str(result["fingerprint"]),) if result["is_sqli"] else None


def _detect_xss(value: str) -> Captures | None:
    return NO_CAPTURES if libinjection.is_xss(value)["is_xss"] else None


MEMO_VALUE: Final = 256

MEMO_ENTRIES: Final = 20_000

"""Verdicts of the costly operators kept per engine for values up to 256 bytes, at most 20k."""

MEMO_JOINED_TEXT: Final = 1024

MEMO_JOINED_ENTRIES: Final = 4096

"""Verdicts on joined targets (scans) kept per engine for texts up to 1 KiB, at most 4096."""

_MISSING: Final[Captures] = ("",)

"""Marks a value the memo has not seen (None is a verdict). Declared as a tuple of any length on
purpose: mypyc unboxes a fixed-length tuple and boxes a fresh one at each use, and `is` would
then never find the sentinel, so every value would look like a cached match."""

MACRO_PATTERNS: Final = 256

"""Compiled expansions kept per `@rx %{...}` rule before the cache is emptied."""


class Memo:
    """The verdicts of an engine's costly searches (@rx, @pm, libinjection, @ipMatch) on short
    texts.

    Header values, cookies and argument names recur across requests; a dict lookup costs far
    less than a call into RE2 (over half a microsecond through its binding, even on a short
    value), Aho-Corasick or libinjection (which builds a token list). Each search has its own
    table keyed by the text alone (a str key is the fastest lookup); together they hold at
    most `entries` verdicts on texts of at most `longest` characters, and are simply emptied
    when full.
    """

    def __init__(self, longest: int = MEMO_VALUE, entries: int = MEMO_ENTRIES) -> None:
        self.longest = longest
        self.entries = entries
        self.tables: list[dict[str, Captures | None]] = []
        self.size = 0

    def wrap(self, search: Search) -> Search:
        """`search` with its verdicts kept."""
        table: dict[str, Captures | None] = {}
        self.tables.append(table)
        longest = self.longest

        def memo(text: str) -> Captures | None:
            if len(text) > longest:
                return search(text)
            result = table.get(text, _MISSING)
            if result is _MISSING:
                result = search(text)
                self.keep(table, text, result)
            return result

        return memo

    def keep(self, table: dict[str, Captures | None], text: str, result: Captures | None) -> None:
        """Add one verdict to `table`, emptying every table first when they are full."""
        if self.size >= self.entries:
            for each in self.tables:
                each.clear()
            self.size = 0
        table[text] = result
        self.size += 1


def _constant(search: Search) -> Match:
    """The Match of an operator without macros: it has nothing to expand."""
    return lambda value, expand: search(value)


def _within(value: str, operand: str) -> bool:
    return bool(value) and value in operand


def _contains_word(value: str, operand: str) -> bool:
    return bool(re.search(rf"(?<!\w){re.escape(operand)}(?!\w)", value))


@dataclass(frozen=True, slots=True)
class CompiledOperator:
    match: Match
    regex_engine: str | None = None
    """'re2' or 're' for @rx, None otherwise."""
    set_pattern: bytes | None = None
    """A constant RE2 pattern that an RE2 set may test for this rule."""
    joinable: bool = False
    """No match on newline-joined values proves no match on any one of them."""


JOINABLE = frozenset({"pm", "pmFromFile", "pmf", "validateByteRange", "contains"})


def compile_operator(name: str, argument: str, base_dir: Path, memo: Memo) -> CompiledOperator:
    """Compile one operator; the costly ones keep their verdicts in the engine's `memo`.

    Raises KeyError for an operator outside the subset and OperatorError for a bad argument.
    """
    if name == "rx":
        if "%{" in argument:
            cache: dict[str, CompiledRegex] = {}

            def rx_macro(value: str, expand: Expand) -> Captures | None:
                pattern = expand(argument)
                regex = cache.get(pattern)
                if regex is None:
                    # A macro may expand to request data: bound the patterns kept.
                    if len(cache) >= MACRO_PATTERNS:
                        cache.clear()
                    regex = cache[pattern] = compile_regex(pattern)
                return regex.search(value)

            return CompiledOperator(rx_macro, "re2")
        compiled = compile_regex(argument)
        search = compiled.search
        return CompiledOperator(
            _constant(memo.wrap(search)),
            compiled.engine,
            compiled.pattern if compiled.engine == "re2" else None,
        )
    return CompiledOperator(
        _compile_other(name, argument, base_dir, memo), joinable=name in JOINABLE
    )


def _compile_other(name: str, argument: str, base_dir: Path, memo: Memo) -> Match:
    if name == "pm":
        return _constant(memo.wrap(_phrase_matcher(argument.split())))
    if name in ("pmFromFile", "pmf"):
        return _constant(memo.wrap(_phrase_matcher(_read_phrases(argument, base_dir))))
    if name == "detectSQLi":
        return _constant(memo.wrap(_detect_sqli))
    if name == "detectXSS":
        return _constant(memo.wrap(_detect_xss))
    simple: dict[str, Match] = {
        "validateUrlEncoding": _bad_url_encoding,
        "validateUtf8Encoding": _bad_utf8,
        "unconditionalMatch": lambda value, expand: NO_CAPTURES,
        "noMatch": lambda value, expand: None,
    }
    if name in simple:
        return simple[name]
    comparisons: dict[str, Callable[[int, int], bool]] = {
        "eq": lambda a, b: a == b,
        "ge": lambda a, b: a >= b,
        "gt": lambda a, b: a > b,
        "le": lambda a, b: a <= b,
        "lt": lambda a, b: a < b,
    }
    if name in comparisons:
        return _compare(argument, comparisons[name])
    strings: dict[str, Callable[[str, str], bool]] = {
        "streq": lambda v, o: v == o,
        "within": _within,
        "contains": lambda v, o: o in v,
        "containsWord": _contains_word,
        "beginsWith": lambda v, o: v.startswith(o),
        "endsWith": lambda v, o: v.endswith(o),
        "strmatch": lambda v, o: o in v,
    }
    if name in strings:
        return _string_op(argument, strings[name])
    if name == "validateByteRange":
        return _byte_range(argument)
    # ipaddress parses in Python: the client's address is worth remembering.
    if name == "ipMatch":
        return _constant(memo.wrap(_ip_match(argument)))
    if name == "ipMatchFromFile":
        return _constant(memo.wrap(_ip_match(",".join(_read_phrases(argument, base_dir)))))
    raise KeyError(name)

"""SecLang subset parser: configuration text -> directives with their file:line, no evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gateway.errors import caused_by


class SecLangSyntaxError(ValueError):
    """A directive that cannot be parsed at all; names the file and line."""


@dataclass(frozen=True, slots=True)
class Location:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class VariableSpec:
    """One target of a rule: ARGS, !REQUEST_HEADERS:Cookie, &TX:foo, REQUEST_COOKIES:/^_ga/."""

    name: str
    selector: str | None = None
    selector_is_regex: bool = False
    count: bool = False
    exclude: bool = False


@dataclass(frozen=True, slots=True)
class OperatorSpec:
    name: str
    argument: str
    negated: bool = False


@dataclass(frozen=True, slots=True)
class ActionSpec:
    name: str
    value: str | None = None


@dataclass(slots=True)
class RuleDef:
    """A SecRule or SecAction (which has no variables and always matches), plus its chain."""

    variables: list[VariableSpec]
    operator: OperatorSpec
    actions: list[ActionSpec]
    location: Location
    chained: RuleDef | None = None

    def action_values(self, name: str) -> list[str]:
        return [a.value or "" for a in self.actions if a.name == name]

    def first(self, name: str) -> str | None:
        values = self.action_values(name)
        return values[0] if values else None

    def has(self, name: str) -> bool:
        return any(a.name == name for a in self.actions)


@dataclass(frozen=True, slots=True)
class Marker:
    name: str
    location: Location


@dataclass(frozen=True, slots=True)
class RemoveById:
    ranges: tuple[tuple[int, int], ...]
    location: Location


@dataclass(frozen=True, slots=True)
class RemoveByTag:
    tag: str
    location: Location


@dataclass(frozen=True, slots=True)
class UpdateTargetById:
    ranges: tuple[tuple[int, int], ...]
    variables: tuple[VariableSpec, ...]
    location: Location


@dataclass(frozen=True, slots=True)
class OtherDirective:
    """A directive outside the subset; the engine decides whether it is harmless or reported."""

    name: str
    args: tuple[str, ...]
    location: Location


Directive = RuleDef | Marker | RemoveById | RemoveByTag | UpdateTargetById | OtherDirective


@dataclass(slots=True)
class ParsedFile:
    directives: list[Directive] = field(default_factory=list)


def logical_lines(text: str, filename: str) -> Iterator[tuple[str, Location]]:
    """Join backslash-continued lines; drop comments and blanks; keep the first line number."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not pending:
            stripped = line.lstrip()
            if not stripped or stripped.startswith("#"):
                continue
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        yield "".join(pending).strip(), Location(filename, start)
        pending = []
    if pending:
        yield "".join(pending).strip(), Location(filename, start)


def split_arguments(line: str, location: Location) -> list[str]:
    """Split a directive into words; quotes group, and a backslash escapes the quote character."""
    words: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if line[i].isspace():
            i += 1
            continue
        if line[i] in "\"'":
            quote = line[i]
            i += 1
            chars: list[str] = []
            while i < n and line[i] != quote:
                if line[i] == "\\" and i + 1 < n and line[i + 1] == quote:
                    chars.append(quote)
                    i += 2
                    continue
                chars.append(line[i])
                i += 1
            if i >= n:
                raise SecLangSyntaxError(f"{location}: unterminated quoted argument")
            i += 1
            words.append("".join(chars))
        else:
            start = i
            while i < n and not line[i].isspace():
                i += 1
            words.append(line[start:i])
    return words


def parse_variables(text: str, location: Location) -> list[VariableSpec]:
    """Parse `ARGS|!ARGS:foo|&TX:bar|REQUEST_COOKIES:/^_ga/`; a /regex/ selector may hold `|`."""
    specs: list[VariableSpec] = []
    i, n = 0, len(text)
    while i < n:
        exclude = count = False
        if text[i] == "!":
            exclude, i = True, i + 1
        elif text[i] == "&":
            count, i = True, i + 1
        start = i
        while i < n and text[i] not in ":|":
            i += 1
        name = text[start:i].strip().upper()
        selector: str | None = None
        is_regex = False
        if i < n and text[i] == ":":
            i += 1
            if i < n and text[i] == "/" and name != "XML":
                end = i + 1
                while end < n:
                    if (
                        text[end] == "/"
                        and text[end - 1] != "\\"
                        and (end + 1 == n or text[end + 1] == "|")
                    ):
                        break
                    end += 1
                selector, is_regex = text[i + 1 : end], True
                i = end + 1
            else:
                start = i
                while i < n and text[i] != "|":
                    i += 1
                selector = text[start:i].strip().strip("'")
        if not name:
            raise SecLangSyntaxError(f"{location}: empty variable in {text!r}")
        specs.append(VariableSpec(name, selector, is_regex, count, exclude))
        if i < n and text[i] == "|":
            i += 1
    return specs


def parse_operator(text: str) -> OperatorSpec:
    """`@rx abc`, `!@eq 0`, or a bare pattern (an implicit @rx)."""
    negated = text.startswith("!")
    if negated:
        text = text[1:]
    if not text.startswith("@"):
        return OperatorSpec("rx", text, negated)
    name, _, argument = text[1:].partition(" ")
    return OperatorSpec(name, argument.strip() if name != "rx" else argument, negated)


def parse_actions(text: str, location: Location) -> list[ActionSpec]:
    """Split `id:1,phase:2,msg:'a, b',t:none` on commas outside single quotes."""
    actions: list[ActionSpec] = []
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and quoted and i + 1 < len(text) and text[i + 1] == "'":
            current.append("'")
            i += 2
            continue
        if c == "'":
            quoted = not quoted
        elif c == "," and not quoted:
            parts.append("".join(current))
            current = []
            i += 1
            continue
        current.append(c)
        i += 1
    if quoted:
        raise SecLangSyntaxError(f"{location}: unterminated quote in actions {text!r}")
    parts.append("".join(current))
    for part in parts:
        part = part.strip()
        if not part:
            continue
        name, colon, value = part.partition(":")
        name = name.strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == "'" and value[-1] == "'":
            value = value[1:-1]
        actions.append(ActionSpec(name, value if colon else None))
    return actions


def parse_id_ranges(text: str, location: Location) -> tuple[tuple[int, int], ...]:
    """`942100 942200-942299` or `"942100,942110"` -> inclusive ranges."""
    ranges: list[tuple[int, int]] = []
    for token in text.replace(",", " ").split():
        low, dash, high = token.partition("-")
        try:
            ranges.append((int(low), int(high) if dash else int(low)))
        except ValueError:
            raise caused_by(
                SecLangSyntaxError(f"{location}: invalid rule id or range {token!r}"), None
            )
    return tuple(ranges)


def parse_text(text: str, filename: str) -> ParsedFile:
    """Parse configuration text; chains become nested RuleDefs."""
    parsed = ParsedFile()
    chain_parent: RuleDef | None = None
    for line, location in logical_lines(text, filename):
        words = split_arguments(line, location)
        name, args = words[0], words[1:]
        directive: Directive
        if name == "SecRule":
            if len(args) not in (2, 3):
                raise SecLangSyntaxError(f"{location}: SecRule takes 2 or 3 arguments")
            directive = RuleDef(
                parse_variables(args[0], location),
                parse_operator(args[1]),
                parse_actions(args[2], location) if len(args) == 3 else [],
                location,
            )
        elif name == "SecAction":
            if len(args) != 1:
                raise SecLangSyntaxError(f"{location}: SecAction takes 1 argument")
            directive = RuleDef(
                [],
                OperatorSpec("unconditionalMatch", ""),
                parse_actions(args[0], location),
                location,
            )
        elif name == "SecMarker" and len(args) == 1:
            directive = Marker(args[0], location)
        elif name == "SecRuleRemoveById":
            directive = RemoveById(parse_id_ranges(" ".join(args), location), location)
        elif name == "SecRuleRemoveByTag" and len(args) == 1:
            directive = RemoveByTag(args[0], location)
        elif name == "SecRuleUpdateTargetById" and len(args) in (2, 3):
            directive = UpdateTargetById(
                parse_id_ranges(args[0], location),
                tuple(parse_variables(args[1], location)),
                location,
            )
        else:
            directive = OtherDirective(name, tuple(args), location)
        if chain_parent is not None:
            if not isinstance(directive, RuleDef) or not directive.variables:
                raise SecLangSyntaxError(f"{location}: a chained rule must follow 'chain'")
            chain_parent.chained = directive
        else:
            parsed.directives.append(directive)
        chain_parent = (
            directive if isinstance(directive, RuleDef) and directive.has("chain") else None
        )
    if chain_parent is not None:
        raise SecLangSyntaxError(f"{chain_parent.location}: 'chain' without a following rule")
    return parsed


def parse_file(path: Path) -> ParsedFile:
    # latin-1 keeps every byte of a pattern as one character, the way ModSecurity sees it.
    return parse_text(path.read_text(encoding="latin-1"), str(path))

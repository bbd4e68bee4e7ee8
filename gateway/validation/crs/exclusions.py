"""Rule exclusions: policy exclusions, rule-id ranges, and the per-request ones ctl actions add."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.validation.crs.parser import (
    Location,
    SecLangSyntaxError,
    VariableSpec,
    parse_id_ranges,
    parse_variables,
)
from gateway.validation.crs.variables import COLLECTIONS, KeyTest, key_test

IdRanges = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Exclusion:
    """A policy exclusion: rule ids (ranges), optionally only some fields, only some routes."""

    rule_ids: IdRanges
    fields: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()


@dataclass(slots=True)
class Runtime:
    """Per-request exclusions, seeded by route exclusions and grown by ctl actions."""

    removed: list[tuple[int, int]] = field(default_factory=list)
    removed_tags: set[str] = field(default_factory=set)
    targets: list[tuple[IdRanges | None, str | None, str, KeyTest]] = field(default_factory=list)
    """(rule ranges or None, tag or None, collection, key test)."""


def in_ranges(rule_id: int, ranges: Iterable[tuple[int, int]]) -> bool:
    # Asked for every rule once a ctl has removed some: any() and its generator cost twice
    # as much as the plain loop.
    for low, high in ranges:  # noqa: SIM110 (the loop is the point, see above)
        if low <= rule_id <= high:
            return True
    return False


def parse_field(text: str) -> tuple[str, KeyTest]:
    """`json.comment` means ARGS:json.comment; `REQUEST_HEADERS:User-Agent` names its collection."""
    head, colon, _ = text.partition(":")
    if colon and head.upper() in COLLECTIONS:
        spec = parse_variables(text, Location("<policy>", 0))[0]
        return spec.name, key_test(spec.selector or "", spec.selector_is_regex)
    return "ARGS", key_test(text, False)


def field_exclusion(text: str) -> VariableSpec:
    """A policy field as the `!ARGS:name` variable an UpdateTargetById would add to a rule."""
    head, colon, _ = text.partition(":")
    if colon and head.upper() in COLLECTIONS:
        spec = parse_variables(text, Location("<policy>", 0))[0]
        return VariableSpec(spec.name, spec.selector, spec.selector_is_regex, exclude=True)
    return VariableSpec("ARGS", text, exclude=True)


def ranges_or_empty(text: str) -> IdRanges:
    """A ctl's rule ids; none when they do not parse."""
    try:
        return parse_id_ranges(text, Location("<ctl>", 0))
    except SecLangSyntaxError:
        return ()

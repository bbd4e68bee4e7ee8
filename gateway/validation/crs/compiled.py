"""What the compiler produces: compiled rules, their atoms and prefilters, the load report."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.validation.crs import operators, transforms
from gateway.validation.crs.parser import Location
from gateway.validation.crs.transforms import BatchOp
from gateway.validation.crs.variables import Target


class CrsLoadError(ValueError):
    """The ruleset cannot be loaded: unreadable directory, syntax error, bad pattern."""


@dataclass(frozen=True, slots=True)
class LoadReport:
    files: tuple[str, ...]
    rules: int
    """Top-level rules compiled for phases 1 and 2 at this paranoia level."""
    above_paranoia: int
    response_phase: int
    removed: int
    skipped: tuple[str, ...]
    """Rules left out because they use something unsupported, each with file:line and why."""
    unsupported: tuple[str, ...]
    """Each unsupported construct once, at its first file:line, with how many rules use it."""
    regex_engines: Mapping[str, int]
    seconds: float


@dataclass(slots=True)
class SetVar:
    name: str
    """Variable name template after 'tx.', may hold macros."""
    operation: str
    """'=', '+', '-', '!' (delete)."""
    value: str


@dataclass(slots=True)
class CompiledRule:
    id: int
    phase: int
    location: Location
    targets: list[Target]
    transform_chain: int
    transforms: tuple[transforms.Transform, ...]
    multi_match: bool
    match: operators.Match
    negated: bool
    capture: bool
    setvars: list[SetVar]
    ctls: list[tuple[str, str]]
    skip_after: str | None
    skip: int
    disruptive: str
    log: bool
    tags: frozenset[str]
    msg: str
    chained: CompiledRule | None = None
    prefilter: Prefilter | None = None
    scan: tuple[Atom, ...] | None = None
    """For substring-like operators: one pass over the joined values rules the rule out."""
    scan_match: operators.Search | None = None
    """The search used on joined text when it differs from `match` (a (?m) regex)."""
    values: tuple[Atom, ...] | None = None
    """One atom per target (same order), when the rule transforms values of static targets
    (multiMatch aside): the values are then transformed all at once, as the atom's joined text."""
    operand: str = ""
    """The operator's argument as written (macros unexpanded)."""


@dataclass(frozen=True, slots=True)
class Atom:
    """One target under one transformation chain: its RE2-set matches are computed once."""

    id: int
    chain: int
    target: Target
    transforms: tuple[transforms.Transform, ...]
    stages: bool = False
    """Every transformation stage of every value (for multiMatch), not only the last."""
    source: int = 0
    """Which (target, exclusions) the values come from; atoms of one source share raw text."""
    ops: tuple[BatchOp, ...] = ()
    """The chain's transformations applied to all the values at once, joined by newlines."""
    prefixes: tuple[int, ...] = ()
    """Id of (source, the chain's prefix) after each op: atoms of one source share the text
    per prefix, and a request caches it under this one int."""


@dataclass(frozen=True, slots=True)
class Prefilter:
    index: int
    """This rule's pattern index in its chain's RE2 set."""
    chain: int
    """The transformation chain whose RE2 set holds the pattern."""


Step = CompiledRule | str

"""A phase program: rules, and marker names that skipAfter jumps to."""

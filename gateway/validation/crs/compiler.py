"""Compile SecLang directives once into phase programs of rules, with RE2-set prefilters."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import re2  # type: ignore[import-untyped]  # the binding ships no type information

from gateway.validation.crs import operators, transforms
from gateway.validation.crs.parser import (
    Directive,
    Location,
    Marker,
    OtherDirective,
    RemoveById,
    RemoveByTag,
    RuleDef,
    SecLangSyntaxError,
    UpdateTargetById,
    VariableSpec,
    parse_actions,
    parse_variables,
)
from gateway.validation.crs.transforms import BatchOp
from gateway.validation.crs.variables import (
    COLLECTIONS,
    SCALARS,
    KeyTest,
    Target,
    compile_target,
    key_test,
    supported,
)

IdRanges = tuple[tuple[int, int], ...]

# Actions that only describe a rule or steer logging: accepted, no effect on the verdict.
METADATA_ACTIONS = frozenset(
    {
        "id",
        "phase",
        "msg",
        "tag",
        "severity",
        "ver",
        "rev",
        "logdata",
        "maturity",
        "accuracy",
        "log",
        "nolog",
        "auditlog",
        "noauditlog",
        "status",
        "capture",
        "chain",
        "t",
        "setvar",
        "ctl",
        "skipAfter",
        "skip",
        "pass",
        "block",
        "deny",
        "drop",
        "multiMatch",
        "sanitiseMatched",
        "sanitizeMatched",
    }
)

# Persistent collections and logging side effects this engine does not keep: reported once.
NO_OP_ACTIONS = frozenset({"initcol", "setsid", "setuid", "expirevar", "deprecatevar", "exec"})

NO_OP_CTLS = frozenset(
    {
        "forceRequestBodyVariable",
        "auditEngine",
        "auditLogParts",
        "requestBodyAccess",
        "requestBodyProcessor",
        "requestBodyLimit",
        "debugLogLevel",
        "hashEngine",
    }
)

HARMLESS_DIRECTIVES = frozenset({"SecComponentSignature"})

NEVER_SET = frozenset({"XML"})

"""Variables that never hold a value here (no XML body processor): nothing to search in them."""

# Variables whose values cannot change while the rules run: safe to prefilter once per request.
STATIC_VARIABLES = (frozenset(COLLECTIONS) | frozenset(SCALARS)) - {
    "TX",
    "MATCHED_VAR",
    "MATCHED_VAR_NAME",
    "MATCHED_VARS",
    "MATCHED_VARS_NAMES",
}

SET_SENTINEL = 0

"""Index of the always-matching `\\z` pattern each RE2 set starts with."""

_TEXT_ANCHOR = re.compile(rb"(?<!\\)\\[AzZ]")


def _set_options() -> re2.Options:
    options = operators.re2_options()
    options.max_mem = 32 << 20
    return options


_SET_OPTIONS = _set_options()

Re2Set = Any

"""re2._re2.Set: the binding ships no type information."""


LIGHT_GROUP = 4

"""Groups with this many patterns or fewer are merged into one set: fewer searches."""


@dataclass(frozen=True, slots=True)
class Bucket:
    """One RE2 set of a chain and the targets (atoms) whose joined values it searches."""

    regex_set: Re2Set | None
    """None when RE2 could not build it: then the set knows nothing."""
    indices: tuple[int, ...]
    """Set-local index -> the pattern's index in its chain (Prefilter.index); 0 is the sentinel."""
    atoms: tuple[Atom, ...]


def _bucket(patterns: list[bytes], covered: set[int], atoms: list[Atom]) -> Bucket:
    indices = (SET_SENTINEL, *sorted(covered))
    candidate = re2.Set.SearchSet(_SET_OPTIONS)
    try:
        if candidate.Add(rb"\z") != SET_SENTINEL:
            raise re2.error("the sentinel must come first")
        for index in indices[1:]:
            candidate.Add(b"(?m)" + patterns[index - 1])  # Prefilter indices start at 1
        candidate.Compile()
    except re2.error:
        return Bucket(None, indices, tuple(atoms))
    return Bucket(candidate._set, indices, tuple(atoms))


class CrsLoadError(ValueError):
    """The ruleset cannot be loaded: unreadable directory, syntax error, bad pattern."""


@dataclass(frozen=True, slots=True)
class Exclusion:
    """A policy exclusion: rule ids (ranges), optionally only some fields, only some routes."""

    rule_ids: IdRanges
    fields: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()


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
    scan_match: Callable[[str], operators.Captures | None] | None = None
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
    """Id of the chain's prefix after each op: atoms of one source share the text per prefix."""


@dataclass(frozen=True, slots=True)
class Prefilter:
    index: int
    """This rule's pattern index in its chain's RE2 set."""
    chain: int
    """The transformation chain whose RE2 set holds the pattern."""


Step = CompiledRule | str

"""A phase program: rules, and marker names that skipAfter jumps to."""


def in_ranges(rule_id: int, ranges: Iterable[tuple[int, int]]) -> bool:
    # Asked for every rule once a ctl has removed some: any() and its generator cost twice
    # as much as the plain loop.
    for low, high in ranges:  # noqa: SIM110 (the loop is the point, see above)
        if low <= rule_id <= high:
            return True
    return False


numeric = operators.numeric


def parse_field(text: str) -> tuple[str, KeyTest]:
    """`json.comment` means ARGS:json.comment; `REQUEST_HEADERS:User-Agent` names its collection."""
    head, colon, _ = text.partition(":")
    if colon and head.upper() in COLLECTIONS:
        spec = parse_variables(text, Location("<policy>", 0))[0]
        return spec.name, key_test(spec.selector or "", spec.selector_is_regex)
    return "ARGS", key_test(text, False)


class _Collector:
    """Remembers each unsupported construct once, with where it first appeared."""

    def __init__(self) -> None:
        self.first: dict[str, Location] = {}
        self.count: Counter[str] = Counter()
        self.skipped: list[str] = []

    def note(self, what: str, location: Location) -> None:
        self.first.setdefault(what, location)
        self.count[what] += 1

    def lines(self) -> tuple[str, ...]:
        return tuple(
            f"{self.first[what]}: {what} (uses: {self.count[what]})" for what in self.first
        )


def rule_files(rules: Path | str | Sequence[Path | str]) -> list[Path]:
    if isinstance(rules, str | Path):
        root = Path(rules)
        if root.is_dir():
            return sorted(root.glob("*.conf"))
        if root.is_file():
            return [root]
        raise CrsLoadError(f"{root}: no such rules directory or file")
    return [Path(p) for p in rules]


class Compiler:
    """Directives -> phase programs; each unsupported construct is noted, never dropped silently."""

    def __init__(
        self, paranoia_level: int, exclusions: Sequence[Exclusion], prefilter: bool = True
    ) -> None:
        self.paranoia_level = paranoia_level
        self.use_prefilter = prefilter
        self.defaults: dict[int, str] = {}
        self.notes = _Collector()
        self.chains: dict[tuple[str, ...], int] = {}
        self.engines: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.removed_ranges: list[tuple[int, int]] = []
        self.removed_tags: list[str] = []
        self.chain_names: dict[int, tuple[str, ...]] = {}
        self.sources: dict[tuple[VariableSpec, frozenset[VariableSpec]], int] = {}
        self.atoms: dict[tuple[int, VariableSpec, frozenset[VariableSpec], bool], Atom] = {}
        self.prefixes: dict[tuple[str, ...], int] = {}
        self.atom_patterns: dict[int, set[int]] = {}
        self.atom_by_id: dict[int, Atom] = {}
        self.set_patterns: dict[int, list[bytes]] = {}
        self.updates: list[tuple[IdRanges, tuple[VariableSpec, ...]]] = []
        self.reads_matched_across = False
        """Some top-level rule reads MATCHED_VAR* before it matches: what an earlier rule
        matched is then visible to it (CRS reads them in chained rules only)."""
        for exclusion in exclusions:
            if exclusion.routes:
                continue
            if exclusion.fields:
                specs = tuple(_field_exclusion(f) for f in exclusion.fields)
                self.updates.append((exclusion.rule_ids, specs))
            else:
                self.removed_ranges.extend(exclusion.rule_ids)

    def compile(self, directives: list[Directive]) -> dict[int, list[Step]]:
        rules: list[RuleDef] = []
        order: list[RuleDef | Marker | OtherDirective] = []
        for directive in directives:
            if isinstance(directive, RuleDef):
                rules.append(directive)
                order.append(directive)
            elif isinstance(directive, Marker):
                order.append(directive)
            elif isinstance(directive, RemoveById):
                self.removed_ranges.extend(directive.ranges)
            elif isinstance(directive, RemoveByTag):
                self.removed_tags.append(directive.tag)
            elif isinstance(directive, UpdateTargetById):
                self.updates.append((directive.ranges, directive.variables))
            elif isinstance(directive, OtherDirective) and directive.name == "SecDefaultAction":
                order.append(directive)
            elif (
                isinstance(directive, OtherDirective) and directive.name not in HARMLESS_DIRECTIVES
            ):
                self.notes.note(f"unsupported directive {directive.name}", directive.location)
        phases: dict[int, list[Step]] = {1: [], 2: []}
        for item in order:
            if isinstance(item, OtherDirective):
                self.default_action(item)
                continue
            if isinstance(item, Marker):
                for steps in phases.values():
                    steps.append(item.name)
                continue
            compiled = self.compile_top(item)
            if compiled is not None:
                phases[compiled.phase].append(compiled)
        return phases

    def default_action(self, directive: OtherDirective) -> None:
        """SecDefaultAction: its disruptive action is what `block` means in later rules."""
        try:
            actions = parse_actions(" ".join(directive.args), directive.location)
        except SecLangSyntaxError as exc:
            raise CrsLoadError(str(exc)) from None
        phase = 2
        for action in actions:
            if action.name == "phase":
                phase = {"request": 2}.get(action.value or "", numeric(action.value or "2"))
            elif action.name in ("deny", "drop", "pass"):
                self.defaults[phase] = action.name
            elif action.name == "t" and (action.value or "").lower() != "none":
                self.notes.note(
                    "SecDefaultAction transformations are not applied", directive.location
                )

    def compile_top(self, rule: RuleDef) -> CompiledRule | None:
        rule_id = numeric(rule.first("id") or "0")
        phase_text = (rule.first("phase") or "2").lower()
        phase = {"request": 2, "response": 4, "logging": 5}.get(phase_text) or numeric(phase_text)
        tags = frozenset(rule.action_values("tag"))
        if phase not in (1, 2):
            self.counts["response_phase"] += 1
            return None
        if in_ranges(rule_id, self.removed_ranges) or tags & set(self.removed_tags):
            self.counts["removed"] += 1
            return None
        level = max(
            (
                int(t.rsplit("/", 1)[1])
                for t in tags
                if t.startswith("paranoia-level/") and t.rsplit("/", 1)[1].isdigit()
            ),
            default=0,
        )
        if level > self.paranoia_level:
            self.counts["above_paranoia"] += 1
            return None
        extra = [specs for ranges, specs in self.updates if in_ranges(rule_id, ranges)]
        try:
            compiled = self.compile_rule(rule, rule_id, phase, tags, extra)
        except _Skip as skip:
            self.notes.skipped.append(f"{rule.location}: rule {rule_id} skipped: {skip}")
            return None
        self.counts["rules"] += 1
        if any(spec.name.startswith("MATCHED_VAR") for spec in rule.variables) or (
            "MATCHED_VAR" in rule.operator.argument.upper()
        ):
            self.reads_matched_across = True
        return compiled

    def compile_rule(
        self,
        rule: RuleDef,
        rule_id: int,
        phase: int,
        tags: frozenset[str],
        extra: list[tuple[VariableSpec, ...]],
    ) -> CompiledRule:
        location = rule.location
        specs = list(rule.variables) + [spec for group in extra for spec in group]
        exclusions = [
            (s.name, key_test(s.selector or "", s.selector_is_regex)) for s in specs if s.exclude
        ]
        targets: list[Target] = []
        for spec in specs:
            if spec.exclude:
                continue
            if not supported(spec):
                self.notes.note(f"unsupported variable {spec.name}", location)
                continue
            if spec.name == "XML":
                self.notes.note("variable XML sees nothing: no XML body processor", location)
            targets.append(compile_target(spec, exclusions))
        if rule.variables and not targets:
            raise _Skip("none of its variables is supported")
        names: list[str] = []
        functions: list[transforms.Transform] = []
        for name in rule.action_values("t"):
            if name.lower() == "none":
                names, functions = [], []
                continue
            function = transforms.lookup(name)
            if function is None:
                self.notes.note(f"unsupported transformation t:{name}", location)
                raise _Skip(f"transformation t:{name} is not supported")
            names.append(name.lower())
            functions.append(function)
        chain_key = tuple(names)
        chain_id = self.chains.setdefault(chain_key, len(self.chains))
        self.chain_names[chain_id] = chain_key
        try:
            operator = operators.compile_operator(
                rule.operator.name, rule.operator.argument, Path(location.file).parent
            )
        except KeyError:
            self.notes.note(f"unsupported operator @{rule.operator.name}", location)
            raise _Skip(f"operator @{rule.operator.name} is not supported") from None
        except operators.UnsupportedPattern as exc:
            self.notes.note(
                f"@{rule.operator.name} pattern neither RE2 nor Python re accepts", location
            )
            raise _Skip(str(exc)) from None
        except operators.OperatorError as exc:
            raise CrsLoadError(f"{location}: @{rule.operator.name}: {exc}") from None
        if operator.regex_engine is not None:
            self.engines[operator.regex_engine] += 1
        setvars: list[SetVar] = []
        ctls: list[tuple[str, str]] = []
        for action in rule.actions:
            if action.name == "setvar":
                setvar = _compile_setvar(action.value or "")
                if setvar is None:
                    self.notes.note(
                        f"unsupported setvar target {action.value!r} (only tx.*)", location
                    )
                else:
                    setvars.append(setvar)
            elif action.name == "ctl":
                kind, _, argument = (action.value or "").partition("=")
                if kind in NO_OP_CTLS:
                    self.notes.note(f"ctl:{kind} accepted with no effect", location)
                elif kind in (
                    "ruleRemoveById",
                    "ruleRemoveByTag",
                    "ruleRemoveTargetById",
                    "ruleRemoveTargetByTag",
                    "ruleEngine",
                ):
                    ctls.append((kind, argument))
                else:
                    self.notes.note(f"unsupported ctl:{kind}", location)
            elif action.name in NO_OP_ACTIONS:
                self.notes.note(f"action {action.name} accepted with no effect", location)
            elif action.name not in METADATA_ACTIONS:
                self.notes.note(f"unsupported action {action.name}", location)
        disruptive = "block"
        for action in rule.actions:
            if action.name in ("deny", "drop", "block", "pass"):
                disruptive = action.name
        if disruptive == "block":
            # `block` means "what SecDefaultAction says": pass in CRS anomaly-scoring mode.
            disruptive = self.defaults.get(phase, "pass")
        chained = None
        if rule.chained is not None:
            chained = self.compile_rule(rule.chained, rule_id, phase, tags, [])
        multi_match = rule.has("multiMatch")
        prefilter = None
        scan = None
        scan_match: Callable[[str], operators.Captures | None] | None = None
        if not self.use_prefilter:
            pass
        elif (
            not rule.operator.negated
            and not multi_match
            and targets
            and all(spec.name in STATIC_VARIABLES and not spec.count for spec in specs)
        ):
            if operator.set_pattern is not None:
                # \A or \z would not hold inside newline-joined values: no prefilter then.
                if not _TEXT_ANCHOR.search(operator.set_pattern):
                    scan = _searched(
                        self.atoms_of(tuple(specs), chain_id, targets, tuple(functions))
                    )
                    prefilter = self.prefilter(scan, chain_id, operator.set_pattern)
                    # Past the chain's RE2 set, the rule's own regex over each joined target
                    # tells whether any single value can match.
                    scan_match = operators.compile_regex(
                        "(?m)" + operator.set_pattern.decode("latin-1")
                    ).search
            elif operator.joinable:
                scan = _searched(self.atoms_of(tuple(specs), chain_id, targets, tuple(functions)))
        elif (
            multi_match
            and operator.set_pattern is not None
            and not rule.operator.negated
            and targets
            and not _TEXT_ANCHOR.search(operator.set_pattern)
            and all(spec.name in STATIC_VARIABLES and not spec.count for spec in specs)
        ):
            # multiMatch tests every transformation stage: scan them all, joined, in one search.
            scan_match = operators.compile_regex(
                "(?m)" + operator.set_pattern.decode("latin-1")
            ).search
            scan = _searched(
                self.atoms_of(tuple(specs), chain_id, targets, tuple(functions), stages=True)
            )
        values = None
        if (
            self.use_prefilter
            and functions
            and not multi_match
            and targets
            and all(spec.name in STATIC_VARIABLES and not spec.count for spec in specs)
        ):
            values = self.atoms_of(tuple(specs), chain_id, targets, tuple(functions))
        return CompiledRule(
            id=rule_id,
            phase=phase,
            location=location,
            targets=targets,
            transform_chain=chain_id,
            transforms=tuple(functions),
            multi_match=multi_match,
            match=operator.match,
            negated=rule.operator.negated,
            capture=rule.has("capture"),
            setvars=setvars,
            ctls=ctls,
            skip_after=rule.first("skipAfter"),
            skip=numeric(rule.first("skip") or "0"),
            disruptive=disruptive,
            log=not rule.has("nolog"),
            tags=tags,
            msg=rule.first("msg") or "",
            chained=chained,
            prefilter=prefilter,
            scan=scan,
            scan_match=scan_match,
            values=values,
            operand=rule.operator.argument,
        )

    def prefilter(self, atoms: tuple[Atom, ...], chain_id: int, pattern: bytes) -> Prefilter:
        """Add the pattern to its chain's RE2 set, to be searched in these atoms' values."""
        patterns = self.set_patterns.setdefault(chain_id, [])
        patterns.append(pattern)
        for atom in atoms:
            self.atom_patterns.setdefault(atom.id, set()).add(len(patterns))
            self.atom_by_id[atom.id] = atom
        return Prefilter(len(patterns), chain_id)  # index 0 is the sentinel

    def atoms_of(
        self,
        specs: tuple[VariableSpec, ...],
        chain_id: int,
        targets: list[Target],
        functions: tuple[transforms.Transform, ...],
        stages: bool = False,
    ) -> tuple[Atom, ...]:
        """Each target under this chain, shared by every rule that has the same one."""
        positive = [spec for spec in specs if not spec.exclude]
        atoms: list[Atom] = []
        for spec, target in zip(positive, targets, strict=True):
            excluded = frozenset(s for s in specs if s.exclude and s.name == spec.name)
            key = (chain_id, spec, excluded, stages)
            atom = self.atoms.get(key)
            if atom is None:
                source = self.sources.setdefault((spec, excluded), len(self.sources))
                names = self.chain_names[chain_id]
                ops = tuple(transforms.batch_op(name) for name in names)
                prefixes = tuple(
                    self.prefixes.setdefault(names[: i + 1], len(self.prefixes))
                    for i in range(len(names))
                )
                atom = Atom(
                    len(self.atoms), chain_id, target, functions, stages, source, ops, prefixes
                )
                self.atoms[key] = atom
            atoms.append(atom)
        return tuple(atoms)

    def build_sets(self) -> dict[int, tuple[Bucket, ...]]:
        """RE2 sets per transformation chain, each over the targets that need its patterns.

        A set only searches the values of rules that name them: the heavy command-injection
        patterns never scan the headers or the raw body. Targets whose patterns are a subset
        of a bigger group join it; the light leftovers share one set.
        """
        result: dict[int, tuple[Bucket, ...]] = {}
        for chain_id, patterns in self.set_patterns.items():
            signatures: dict[frozenset[int], list[Atom]] = {}
            for atom_id, indices in self.atom_patterns.items():
                atom = self.atom_by_id[atom_id]
                if atom.chain == chain_id:
                    signatures.setdefault(frozenset(indices), []).append(atom)
            groups: list[tuple[set[int], list[Atom]]] = []
            for signature, atoms in sorted(signatures.items(), key=lambda kv: -len(kv[0])):
                for covered, members in groups:
                    if signature <= covered:
                        members.extend(atoms)
                        break
                else:
                    groups.append((set(signature), list(atoms)))
            light = [g for g in groups if len(g[0]) <= LIGHT_GROUP]
            if len(light) > 1:
                groups = [g for g in groups if len(g[0]) > LIGHT_GROUP]
                merged: tuple[set[int], list[Atom]] = (set(), [])
                for covered, members in light:
                    merged[0].update(covered)
                    merged[1].extend(members)
                groups.append(merged)
            result[chain_id] = tuple(
                _bucket(patterns, covered, members) for covered, members in groups
            )
        return result

    def report(self, paths: list[Path], seconds: float) -> LoadReport:
        return LoadReport(
            files=tuple(str(p) for p in paths),
            rules=self.counts["rules"],
            above_paranoia=self.counts["above_paranoia"],
            response_phase=self.counts["response_phase"],
            removed=self.counts["removed"],
            skipped=tuple(self.notes.skipped),
            unsupported=self.notes.lines(),
            regex_engines=dict(self.engines),
            seconds=seconds,
        )


class _Skip(Exception):
    """This rule cannot be evaluated faithfully; it is left out and listed in the report."""


def _searched(atoms: tuple[Atom, ...]) -> tuple[Atom, ...]:
    """The atoms worth a search: XML has no body processor here, so it never holds a value."""
    return tuple(atom for atom in atoms if atom.target.collection not in NEVER_SET)


def _field_exclusion(text: str) -> VariableSpec:
    head, colon, _ = text.partition(":")
    if colon and head.upper() in COLLECTIONS:
        spec = parse_variables(text, Location("<policy>", 0))[0]
        return VariableSpec(spec.name, spec.selector, spec.selector_is_regex, exclude=True)
    return VariableSpec("ARGS", text, exclude=True)


def _compile_setvar(text: str) -> SetVar | None:
    text = text.strip()
    delete = text.startswith("!")
    if delete:
        text = text[1:]
    target, equals, value = text.partition("=")
    collection, dot, name = target.partition(".")
    if collection.lower() != "tx" or not dot:
        return None
    if delete:
        return SetVar(name, "!", "")
    if not equals:
        return SetVar(name, "=", "1")
    if (
        value[:1] in ("+", "-")
        and value[1:2] != ""
        and (value[1:].strip().isdigit() or value[1:].startswith("%{"))
    ):
        return SetVar(name, value[0], value[1:])
    return SetVar(name, "=", value)

"""Compile SecLang directives once into phase programs of rules, with RE2-set prefilters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from gateway.errors import caused_by
from gateway.validation.crs import operators, transforms
from gateway.validation.crs.actions import compile_actions
from gateway.validation.crs.compiled import CompiledRule, CrsLoadError, LoadReport, Step
from gateway.validation.crs.exclusions import Exclusion, IdRanges, field_exclusion, in_ranges
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
)
from gateway.validation.crs.prefilter import Passes, Prefilters
from gateway.validation.crs.sets import Bucket
from gateway.validation.crs.variables import Target, compile_target, key_test, supported

HARMLESS_DIRECTIVES = frozenset({"SecComponentSignature"})

numeric = operators.numeric


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
        self.memo = operators.Memo()
        self.prefilters = Prefilters(
            operators.Memo(operators.MEMO_JOINED_TEXT, operators.MEMO_JOINED_ENTRIES)
        )
        self.updates: list[tuple[IdRanges, tuple[VariableSpec, ...]]] = []
        self.reads_matched_across = False
        """Some top-level rule reads MATCHED_VAR* before it matches: what an earlier rule
        matched is then visible to it (CRS reads them in chained rules only)."""
        for exclusion in exclusions:
            if exclusion.routes:
                continue
            if exclusion.fields:
                specs = tuple(field_exclusion(f) for f in exclusion.fields)
                self.updates.append((exclusion.rule_ids, specs))
            else:
                self.removed_ranges.extend(exclusion.rule_ids)

    def compile(self, directives: list[Directive]) -> dict[int, list[Step]]:
        order: list[RuleDef | Marker | OtherDirective] = []
        for directive in directives:
            if isinstance(directive, RuleDef | Marker):
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
            raise caused_by(CrsLoadError(str(exc)), None)
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
        try:
            operator = operators.compile_operator(
                rule.operator.name,
                rule.operator.argument,
                Path(location.file).parent,
                self.memo,
            )
        except KeyError:
            self.notes.note(f"unsupported operator @{rule.operator.name}", location)
            raise caused_by(_Skip(f"operator @{rule.operator.name} is not supported"), None)
        # Distinct names: mypyc types a name reused across except clauses by the first one.
        except operators.UnsupportedPattern as unsupported:
            self.notes.note(
                f"@{rule.operator.name} pattern neither RE2 nor Python re accepts", location
            )
            raise caused_by(_Skip(str(unsupported)), None)
        except operators.OperatorError as invalid:
            raise caused_by(CrsLoadError(f"{location}: @{rule.operator.name}: {invalid}"), None)
        if operator.regex_engine is not None:
            self.engines[operator.regex_engine] += 1
        setvars, ctls = compile_actions(rule.actions, location, self.notes.note)
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
        passes = Passes()
        if self.use_prefilter:
            passes = self.prefilters.passes(
                operator,
                rule.operator.negated,
                multi_match,
                tuple(specs),
                targets,
                (chain_id, chain_key),
                tuple(functions),
            )
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
            prefilter=passes.prefilter,
            scan=passes.scan,
            scan_match=passes.scan_match,
            values=passes.values,
            operand=rule.operator.argument,
        )

    def build_sets(self) -> dict[int, tuple[Bucket, ...]]:
        return self.prefilters.build_sets()

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

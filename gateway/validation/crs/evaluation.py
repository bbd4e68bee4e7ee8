"""Evaluate one request through the compiled phases: TX state, actions, prefilters, verdict."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from gateway.validation.crs import operators
from gateway.validation.crs.compiled import Atom, CompiledRule, SetVar
from gateway.validation.crs.exclusions import Runtime, in_ranges, parse_field, ranges_or_empty
from gateway.validation.crs.operators import numeric
from gateway.validation.crs.request import RequestData, RequestView
from gateway.validation.crs.sets import set_hits
from gateway.validation.crs.texts import (
    SHARED_JOINED_ENTRIES,
    SHARED_JOINED_TEXT,
    Texts,
    each_stage,
)
from gateway.validation.crs.variables import COLLECTIONS, SCALARS, TxState

if TYPE_CHECKING:
    from gateway.validation.crs.engine import CrsEngine


FAMILIES: Final[tuple[tuple[int, int, str], ...]] = (
    (911000, 911999, "method"),
    (913000, 913999, "scanner"),
    (920000, 921999, "protocol"),
    (922000, 922999, "multipart"),
    (930000, 930999, "lfi"),
    (931000, 931999, "rfi"),
    (932000, 932999, "rce"),
    (933000, 933999, "php"),
    (934000, 934999, "generic"),
    (941000, 941999, "xss"),
    (942000, 942999, "sqli"),
    (943000, 943999, "session-fixation"),
    (944000, 944999, "java"),
)


def family_of(rule_id: int) -> str:
    for low, high, name in FAMILIES:
        if low <= rule_id <= high:
            return name
    return "other"


_MACRO: Final = re.compile(r"%\{([^}]+)\}")

_UNKNOWN: Final[frozenset[int]] = frozenset({-1})
"""Marks a group whose RE2-set pass has not run yet in this request."""

_NOT_SEARCHED: Final[tuple[int, ...]] = (-1,)
"""Marks a target the engine has not searched yet with these values. A tuple of any length on
purpose: mypyc would unbox a fixed-length one and box a new copy at each use, so `is` would
never find it."""


@dataclass(frozen=True, slots=True)
class Verdict:
    blocked: bool
    anomaly_score: int
    threshold: int
    rule_ids: tuple[int, ...] = ()
    """Detection rules that matched (logged ones), in evaluation order."""
    families: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    """MATCHED_VAR_NAMEs (ARGS:json.q, REQUEST_HEADERS:User-Agent), to write exclusions from."""
    blocked_by: int | None = None
    failure: str | None = None
    """'timeout' or 'error' when the evaluation did not finish; then `blocked` is the fail mode."""
    elapsed: float = 0.0


class EvaluationTimeout(Exception):
    pass


class Evaluation:
    """One request through the phases; holds every bit of mutable state."""

    def __init__(
        self, engine: CrsEngine, view: RequestView, route: str | None, started: float
    ) -> None:
        self.engine = engine
        seed = engine._route_exclusions.get(route or "")
        # A route's exclusions may remove rules of the constant start: such a route runs it.
        start = self.start = engine._start if seed is None else None
        self.state = TxState(
            RequestData.from_view(view),
            dict(engine._setup if start is None else start.tx),
            unique_id=f"{next(engine._ids):016x}",
        )
        self.runtime = (
            Runtime(list(seed.removed), set(seed.removed_tags), list(seed.targets))
            if seed
            else Runtime()
        )
        self.deadline = started + engine._budget
        self.chain_hits: dict[int, frozenset[int] | None] = {}
        self.texts = Texts(self.state, engine._joined, engine._transformed)
        self.matched: list[int] = []
        self.fields: list[str] = []
        self.blocked_by: int | None = None
        self.stopped = False
        self.next_rule = 0
        """Where the last `run_phase` stopped."""
        if start is not None:
            self.state.matched_var = start.matched_var
            self.state.matched_var_name = start.matched_var_name
            self.state.matched_vars = list(start.matched_vars)
            self.matched.extend(start.matched)
            self.fields.extend(start.fields)
            self.blocked_by = start.blocked_by
            self.stopped = start.stopped

    # -- phases

    def run(self) -> None:
        start = self.start
        self.run_phase(1, 0 if start is None else start.index)
        self.run_phase(2, 0)

    def run_phase(self, phase: int, first: int, stop: int | None = None) -> None:
        """The phase's rules from index `first`, until one at or past `stop` (default: all)."""
        program = self.engine._programs.get(phase)
        if program is None:
            return
        clock = self.engine._clock
        deadline = self.deadline
        state = self.state
        removed = self.runtime.removed
        removed_tags = self.runtime.removed_tags
        chain_hits = self.chain_hits
        rules, markers = program
        count = len(rules)
        end = count if stop is None else stop
        i = first
        while i < end and not self.stopped:
            rule = rules[i]
            i += 1
            if clock() > deadline:
                raise EvaluationTimeout
            if (removed or removed_tags) and (
                in_ranges(rule.id, removed) or not removed_tags.isdisjoint(rule.tags)
            ):
                continue
            prefilter = rule.prefilter
            if prefilter is not None:
                # Most rules end here: their pattern is in none of the chain's texts.
                hits = chain_hits.get(prefilter.chain, _UNKNOWN)
                if hits is _UNKNOWN:
                    hits = chain_hits[prefilter.chain] = self.chain_pass(prefilter.chain)
                if hits is not None and prefilter.index not in hits:
                    continue
            state.matched_vars = []
            if not self.link(rule, rule):
                continue
            if rule.log and rule.id:
                self.matched.append(rule.id)
                if state.matched_var_name and rule.disruptive not in ("deny", "drop"):
                    self.fields.append(state.matched_var_name[:100])
            if rule.disruptive in ("deny", "drop"):
                self.blocked_by = rule.id
                self.stopped = True
            elif rule.skip_after is not None:
                i = markers.get(rule.skip_after, count)
            elif rule.skip:
                i += rule.skip
        self.next_rule = i

    def link(self, rule: CompiledRule, top: CompiledRule) -> bool:
        """Evaluate one rule of a chain; its non-disruptive actions run per matched value."""
        prefilter = rule.prefilter
        if prefilter is not None and rule is not top:  # `run` has checked the top rule's
            hits = self.chain_hits.get(prefilter.chain, _UNKNOWN)
            if hits is _UNKNOWN:
                hits = self.chain_hits[prefilter.chain] = self.chain_pass(prefilter.chain)
            if hits is not None and prefilter.index not in hits:
                return False
        if rule.scan is not None and not self.scan_hits(rule, rule.scan):
            return False
        state = self.state
        matches: list[tuple[str, str, operators.Captures]] = []
        expand = self.expand
        excluded = self.runtime.targets
        match = rule.match
        negated = rule.negated
        functions = rule.transforms
        texts = self.texts
        if not rule.targets:
            matches.append(("", "", operators.NO_CAPTURES))
        for position, target in enumerate(rule.targets):
            pairs = target.fetch(state)
            if not pairs:
                continue
            # All the target's values through the chain at once (most chains are exact on
            # the joined text); one by one only when a value holds a newline.
            lines = (
                None
                if rule.values is None
                else texts.value_lines(rule.values[position], len(pairs))
            )
            for index, (name, value) in enumerate(pairs):
                if excluded and self._excluded(top, name):
                    continue
                if not functions:
                    captures = match(value, expand)
                    if (captures is not None) != negated:
                        matches.append((name, value, captures or operators.NO_CAPTURES))
                    continue
                if lines is not None:
                    candidates = [lines[index]]
                elif rule.multi_match:
                    candidates = each_stage(functions, value)
                else:
                    candidates = [texts.transformed(rule.transform_chain, functions, value)]
                # multiMatch: as ModSecurity, every stage that changed the value and matches is
                # a match of its own, and runs the actions again (the score counts each one).
                for candidate in candidates:
                    captures = match(candidate, expand)
                    if (captures is not None) != negated:
                        matches.append((name, candidate, captures or operators.NO_CAPTURES))
        if not matches:
            return False
        for name, value, captures in matches:
            state.matched_var = value
            state.matched_var_name = name
            state.matched_vars.append((name, value))
            if rule.capture and captures:
                for index, captured in enumerate(captures[:10]):
                    state.tx[str(index)] = captured
            for setvar in rule.setvars:
                self.apply_setvar(setvar)
            for kind, argument in rule.ctls:
                self.apply_ctl(kind, argument)
        if rule.chained is not None:
            return self.link(rule.chained, top)
        return True

    def chain_pass(self, chain: int) -> frozenset[int] | None:
        """The chain's RE2 sets, each over the joined values of each target it serves.

        A pattern no set finds is in none of the targets, so most rules are ruled out by a few
        searches per chain; a pattern found is then tried on the rule's own targets (scan).
        Each target is searched on its own: the headers and cookies of one client recur from
        request to request, and their results are kept engine-wide, so a request searches
        little more than what is new in it (its URI, its arguments).
        """
        hits: set[int] = set()
        texts = self.texts
        shared = self.engine._atom_hits
        for position, bucket in enumerate(self.engine._sets.get(chain, ())):
            for atom in bucket.atoms:
                raw_text, separators = texts.raw(atom)
                if separators < 0:
                    continue  # no value: nothing to find (one empty value is still searched)
                small = len(raw_text) <= SHARED_JOINED_TEXT
                # Keyed by the untransformed values: a repeat skips transformations and search.
                key = (chain, position, atom.id, raw_text, separators)
                found = shared.get(key, _NOT_SEARCHED) if small else _NOT_SEARCHED
                if found is _NOT_SEARCHED:
                    found = set_hits(bucket, texts.joined(atom))
                    if small:
                        if len(shared) >= SHARED_JOINED_ENTRIES:
                            shared.clear()
                        shared[key] = found
                if found is None:
                    return None
                hits.update(found)
        return frozenset(hits)

    def scan_hits(self, rule: CompiledRule, atoms: tuple[Atom, ...]) -> bool:
        texts = self.texts
        if rule.scan_match is not None:
            search = rule.scan_match
            return any(search(texts.joined(atom)) is not None for atom in atoms)
        return any(rule.match(texts.joined(atom), self.expand) is not None for atom in atoms)

    def _excluded(self, rule: CompiledRule, name: str) -> bool:
        collection, _, key = name.partition(":")
        for ranges, tag, target_collection, test in self.runtime.targets:
            if target_collection != collection or not test(key):
                continue
            if ranges is not None and in_ranges(rule.id, ranges):
                return True
            if tag is not None and tag in rule.tags:
                return True
        return False

    # -- actions

    def expand(self, text: str) -> str:
        if "%{" not in text:
            return text
        return _MACRO.sub(lambda m: self.macro(m.group(1)), text)

    def macro(self, reference: str) -> str:
        collection, _, key = reference.partition(".")
        upper = collection.upper()
        state = self.state
        if upper == "TX":
            return state.tx.get(key.lower(), "")
        if upper in SCALARS and not key:
            return SCALARS[upper](state)
        if upper == "REQUEST_HEADERS":
            return (state.data.header_index.get(key.lower()) or [""])[0]
        if upper in COLLECTIONS:
            lowered = key.lower()
            for k, v in COLLECTIONS[upper](state):
                if k.lower() == lowered:
                    return v
        return ""

    def apply_setvar(self, setvar: SetVar) -> None:
        tx = self.state.tx
        name = self.expand(setvar.name).lower()
        if setvar.operation == "!":
            tx.pop(name, None)
            return
        value = self.expand(setvar.value)
        if setvar.operation == "=":
            tx[name] = value
        else:
            delta = numeric(value) if setvar.operation == "+" else -numeric(value)
            tx[name] = str(numeric(tx.get(name, "0")) + delta)

    def apply_ctl(self, kind: str, argument: str) -> None:
        argument = self.expand(argument)
        runtime = self.runtime
        if kind == "ruleRemoveById":
            runtime.removed.extend(ranges_or_empty(argument))
        elif kind == "ruleRemoveByTag":
            runtime.removed_tags.add(argument)
        elif kind in ("ruleRemoveTargetById", "ruleRemoveTargetByTag"):
            head, _, target = argument.partition(";")
            collection, test = parse_field(target) if ":" in target else (target.upper(), None)
            if test is None:
                return
            if kind == "ruleRemoveTargetById":
                runtime.targets.append((ranges_or_empty(head), None, collection, test))
            else:
                runtime.targets.append((None, head, collection, test))
        elif kind == "ruleEngine" and argument.lower() == "off":
            self.stopped = True

    def verdict(self, failure: str | None, elapsed: float) -> Verdict:
        tx = self.state.tx
        raw = tx.get("blocking_inbound_anomaly_score")
        if raw is None:
            raw = tx.get("anomaly_score", "0")
        score = numeric(raw)
        threshold = self.engine.threshold
        blocked = self.blocked_by is not None or score >= threshold
        if failure is not None:
            blocked = blocked or self.engine._fail_blocks
        ids = tuple(dict.fromkeys(self.matched))
        families = tuple(sorted({family_of(i) for i in ids if i != self.blocked_by} - {"other"}))
        return Verdict(
            blocked,
            score,
            threshold,
            ids,
            families,
            tuple(dict.fromkeys(self.fields)),
            self.blocked_by,
            failure,
            elapsed,
        )

"""The phase programs as the per-request loop runs them, with what no request can change settled
once at load: inert rules left out, and the constant start of phase 1 evaluated in advance.

An inert rule logs nothing, sets nothing, stops nothing and jumps only to the rule that follows
it anyway: with it or without it, every later step sees the same state. (It does set MATCHED_VAR,
so this holds only while no top-level rule reads MATCHED_VAR* before matching: CRS never does,
its readers are chained rules. The compiler reports when a ruleset does.)

The first rules of phase 1 (CRS 901: defaults for what crs-setup.conf left unset, scores set to
zero) read and write TX alone, and every request starts with the same TX: each request would
reach the same state after them, so they run once, at load, and requests start from a copy.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from gateway.validation.crs.compiled import CompiledRule, Step
from gateway.validation.crs.request import Pairs

Program = tuple[list[CompiledRule], dict[str, int]]
"""A phase's rules alone, and for each marker the index of the first rule after it."""

_MACRO = re.compile(r"%\{([^}]*)\}")


def program(steps: list[Step]) -> Program:
    rules: list[CompiledRule] = []
    markers: dict[str, int] = {}
    for step in steps:
        if isinstance(step, str):
            markers[step] = len(rules)
        else:
            rules.append(step)
    return rules, markers


def _links(rule: CompiledRule) -> Iterator[CompiledRule]:
    link: CompiledRule | None = rule
    while link is not None:
        yield link
        link = link.chained


def _inert(rule: CompiledRule) -> bool:
    """Whether the rule leaves no trace when it matches (its jump aside)."""
    if (rule.log and rule.id) or rule.disruptive in ("deny", "drop") or rule.skip:
        return False
    return not any(link.setvars or link.ctls or link.capture for link in _links(rule))


def without_inert(steps: list[Step]) -> list[Step]:
    """The steps without the inert rules whose jump, if any, lands on the next rule anyway.

    Walks backwards, so a run of such rules skipping to one marker goes entirely. A phase with a
    `skip:N` rule is left whole: N counts rules, and leaving some out would move its landing.
    """
    if any(isinstance(step, CompiledRule) and step.skip for step in steps):
        return list(steps)
    markers = Counter(step for step in steps if isinstance(step, str))
    kept: list[Step] = []  # reversed: kept[-1] is the step right after the current one
    for step in reversed(steps):
        if isinstance(step, CompiledRule) and _inert(step) and _lands_next(step, kept, markers):
            continue
        kept.append(step)
    kept.reverse()
    return kept


def _lands_next(rule: CompiledRule, after: list[Step], markers: Counter[str]) -> bool:
    """No rule lies between `rule` and where its skipAfter (if any) resumes; `after` reversed."""
    target = rule.skip_after
    if target is None:
        return True
    if markers[target] > 1:
        return False  # the last of the repeated markers wins: not worth reasoning about
    for step in reversed(after):
        if isinstance(step, CompiledRule):
            return False
        if step == target:
            return True
    # Not found after the rule: an unknown marker ends the phase (and no rule follows), a
    # marker before the rule would jump back.
    return markers[target] == 0


def _tx_only_text(text: str) -> bool:
    return all(reference.lower().startswith("tx.") for reference in _MACRO.findall(text))


def constant(rule: CompiledRule) -> bool:
    """Whether the rule reads and writes only TX, so it does the same in every request."""
    for link in _links(rule):
        if link.ctls or any(target.collection != "TX" for target in link.targets):
            return False
        texts = [link.operand, *(part for s in link.setvars for part in (s.name, s.value))]
        if not all(_tx_only_text(text) for text in texts):
            return False
    return True


def constant_length(rules: list[CompiledRule]) -> int:
    """How many rules at the start of the program are constant."""
    for index, rule in enumerate(rules):
        if not constant(rule):
            return index
    return len(rules)


@dataclass(frozen=True, slots=True)
class Start:
    """Where every request stands after the constant start of phase 1."""

    index: int
    """The phase-1 rule to continue from."""
    tx: dict[str, str]
    matched_var: str
    matched_var_name: str
    matched_vars: Pairs
    matched: tuple[int, ...]
    fields: tuple[str, ...]
    blocked_by: int | None
    stopped: bool

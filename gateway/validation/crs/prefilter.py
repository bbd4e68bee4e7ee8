"""Which passes over joined values stand before a rule: its RE2-set pattern, its scan, its values
transformed all at once; and the atoms (target x transformation chain) they read."""

from __future__ import annotations

from typing import NamedTuple

from gateway.validation.crs import operators, transforms
from gateway.validation.crs.compiled import Atom, Prefilter
from gateway.validation.crs.parser import VariableSpec
from gateway.validation.crs.sets import TEXT_ANCHOR, Bucket, build_sets
from gateway.validation.crs.variables import COLLECTIONS, SCALARS, Target

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


class Passes(NamedTuple):
    """A rule's passes over joined values (see CompiledRule); None where it has none."""

    prefilter: Prefilter | None = None
    scan: tuple[Atom, ...] | None = None
    scan_match: operators.Search | None = None
    values: tuple[Atom, ...] | None = None


class Prefilters:
    """The atoms of a ruleset, shared by every rule that reads the same one, and the patterns
    of each chain's RE2 sets."""

    def __init__(self, scans: operators.Memo) -> None:
        self.scans = scans
        """Keeps the verdicts of the scans over joined targets (see operators.Memo)."""
        self.sources: dict[tuple[VariableSpec, frozenset[VariableSpec]], int] = {}
        self.atoms: dict[tuple[int, VariableSpec, frozenset[VariableSpec], bool], Atom] = {}
        self.prefixes: dict[tuple[int, tuple[str, ...]], int] = {}
        self.atom_patterns: dict[int, set[int]] = {}
        self.atom_by_id: dict[int, Atom] = {}
        self.set_patterns: dict[int, list[bytes]] = {}

    def passes(
        self,
        operator: operators.CompiledOperator,
        negated: bool,
        multi_match: bool,
        specs: tuple[VariableSpec, ...],
        targets: list[Target],
        chain: tuple[int, tuple[str, ...]],
        functions: tuple[transforms.Transform, ...],
    ) -> Passes:
        """What can rule the rule out, or transform its values, ahead of its own evaluation."""
        prefilter = None
        scan = None
        scan_match: operators.Search | None = None
        static = all(spec.name in STATIC_VARIABLES and not spec.count for spec in specs)
        if not negated and not multi_match and targets and static:
            if operator.set_pattern is not None:
                # \A or \z would not hold inside newline-joined values: no prefilter then.
                if not TEXT_ANCHOR.search(operator.set_pattern):
                    scan = _searched(self.atoms_of(specs, chain, targets, functions))
                    prefilter = self.prefilter(scan, chain[0], operator.set_pattern)
                    # Past the chain's RE2 set, the rule's own regex over each joined target
                    # tells whether any single value can match.
                    scan_match = self.joined_search(operator.set_pattern)
            elif operator.joinable:
                scan = _searched(self.atoms_of(specs, chain, targets, functions))
        elif (
            multi_match
            and operator.set_pattern is not None
            and not negated
            and targets
            and not TEXT_ANCHOR.search(operator.set_pattern)
            and static
        ):
            # multiMatch tests every transformation stage: scan them all, joined, in one search.
            scan_match = self.joined_search(operator.set_pattern)
            scan = _searched(self.atoms_of(specs, chain, targets, functions, stages=True))
        values = None
        if functions and not multi_match and targets and static:
            values = self.atoms_of(specs, chain, targets, functions)
        return Passes(prefilter, scan, scan_match, values)

    def joined_search(self, pattern: bytes) -> operators.Search:
        """The rule's regex as it searches newline-joined values, its verdicts kept."""
        regex = operators.compile_regex("(?m)" + pattern.decode("latin-1"))
        return self.scans.wrap(regex.search)

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
        chain: tuple[int, tuple[str, ...]],
        targets: list[Target],
        functions: tuple[transforms.Transform, ...],
        stages: bool = False,
    ) -> tuple[Atom, ...]:
        """Each target under this chain, shared by every rule that has the same one."""
        chain_id, names = chain
        positive = [spec for spec in specs if not spec.exclude]
        atoms: list[Atom] = []
        for spec, target in zip(positive, targets, strict=True):
            excluded = frozenset(s for s in specs if s.exclude and s.name == spec.name)
            key = (chain_id, spec, excluded, stages)
            atom = self.atoms.get(key)
            if atom is None:
                source = self.sources.setdefault((spec, excluded), len(self.sources))
                ops = tuple(transforms.batch_op(name) for name in names)
                prefixes = tuple(
                    self.prefixes.setdefault((source, names[: i + 1]), len(self.prefixes))
                    for i in range(len(names))
                )
                atom = Atom(
                    len(self.atoms), chain_id, target, functions, stages, source, ops, prefixes
                )
                self.atoms[key] = atom
            atoms.append(atom)
        return tuple(atoms)

    def build_sets(self) -> dict[int, tuple[Bucket, ...]]:
        return build_sets(self.set_patterns, self.atom_patterns, self.atom_by_id)


def _searched(atoms: tuple[Atom, ...]) -> tuple[Atom, ...]:
    """The atoms worth a search: XML has no body processor here, so it never holds a value."""
    return tuple(atom for atom in atoms if atom.target.collection not in NEVER_SET)

"""The RE2 sets that rule out most rules at once: built per transformation chain, searched per
target, each set starting with a sentinel that tells when RE2 gave up."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import re2  # type: ignore[import-untyped]  # the binding ships no type information

from gateway.validation.crs import operators
from gateway.validation.crs.compiled import Atom

SET_SENTINEL: Final = 0

"""Index of the always-matching `\\z` pattern each RE2 set starts with."""

TEXT_ANCHOR: Final = re.compile(rb"(?<!\\)\\[AzZ]")

"""\\A or \\z would not hold inside newline-joined values: such patterns are never in a set."""

LIGHT_GROUP: Final = 4

"""Groups with this many patterns or fewer are merged into one set: fewer searches."""

Re2Set = Any

"""re2._re2.Set: the binding ships no type information."""


def _set_options() -> re2.Options:
    options = operators.re2_options()
    options.max_mem = 32 << 20
    return options


_SET_OPTIONS: Final = _set_options()


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


def build_sets(
    set_patterns: dict[int, list[bytes]],
    atom_patterns: dict[int, set[int]],
    atom_by_id: dict[int, Atom],
) -> dict[int, tuple[Bucket, ...]]:
    """RE2 sets per transformation chain, each over the targets that need its patterns.

    A set only searches the values of rules that name them: the heavy command-injection
    patterns never scan the headers or the raw body. Targets whose patterns are a subset
    of a bigger group join it; the light leftovers share one set.
    """
    result: dict[int, tuple[Bucket, ...]] = {}
    for chain_id, patterns in set_patterns.items():
        signatures: dict[frozenset[int], list[Atom]] = {}
        for atom_id, indices in atom_patterns.items():
            atom = atom_by_id[atom_id]
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
        result[chain_id] = tuple(_bucket(patterns, covered, members) for covered, members in groups)
    return result


def set_hits(bucket: Bucket, text: str) -> tuple[int, ...] | None:
    """The chain indices of the bucket's patterns found in text; None if the set gave up."""
    if bucket.regex_set is None:
        return None
    found = bucket.regex_set.Match(text.encode("latin-1", "replace"))
    # The sentinel \z always matches at the end; without it the DFA gave up (out of memory,
    # or too slow) and the set knows nothing: every regex must run.
    if SET_SENTINEL not in found:
        return None
    indices = bucket.indices
    return tuple([indices[i] for i in found])  # a list: mypyc builds it without a generator

"""One request's target values transformed: each chain over all of a target's values at once,
kept per request and, for the short texts that recur across requests, engine-wide."""

from __future__ import annotations

from typing import Final

from gateway.validation.crs import transforms
from gateway.validation.crs.compiled import Atom
from gateway.validation.crs.variables import TxState

SHARED_CACHE_VALUE: Final = 256

SHARED_CACHE_ENTRIES: Final = 20_000

"""Engine-wide transformation cache: values up to 256 characters, at most 20k results."""

SHARED_JOINED_TEXT: Final = 1024

SHARED_JOINED_ENTRIES: Final = 4096

"""Engine-wide cache of joined, transformed targets: texts up to 1 KiB, at most 4096 of them."""


Raw = tuple[str, int]
"""A target's untransformed values joined by newlines, and how many newlines join them
(-1: no value)."""

JoinedKey = tuple[int, str, int]
"""(atom id, raw text, separators): flat, so that mypyc builds one tuple per lookup where a
nested Raw pair would be boxed into a tuple of its own again each time."""


class Texts:
    """The transformed values of one request; `shared_*` are the engine-wide caches."""

    __slots__ = (
        "cache",
        "joined_cache",
        "prefix_cache",
        "raw_cache",
        "shared_joined",
        "shared_transformed",
        "state",
    )

    def __init__(
        self,
        state: TxState,
        shared_joined: dict[JoinedKey, str],
        shared_transformed: dict[tuple[int, str], str],
    ) -> None:
        self.state = state
        self.shared_joined = shared_joined
        self.shared_transformed = shared_transformed
        self.cache: dict[tuple[int, str], str] = {}
        self.joined_cache: dict[int, str] = {}
        self.raw_cache: dict[int, Raw] = {}
        self.prefix_cache: dict[int, tuple[str, list[str] | None]] = {}

    def joined(self, atom: Atom) -> str:
        """The atom's transformed values joined by newlines (no value has its own edge lost).

        For multiMatch atoms, every transformation stage of every value, one per line.
        """
        text = self.joined_cache.get(atom.id)
        if text is None:
            raw = self.raw(atom)
            raw_text, separators = raw
            # Headers, cookies and argument names recur across requests: their transformed
            # text is kept engine-wide, in a bounded cache that is simply emptied when full.
            shared = self.shared_joined
            key = (atom.id, raw_text, separators)
            small = len(raw_text) <= SHARED_JOINED_TEXT
            text = shared.get(key) if small else None
            if text is None:
                text = self.batch(atom, raw)
                if small:
                    if len(shared) >= SHARED_JOINED_ENTRIES:
                        shared.clear()
                    shared[key] = text
            self.joined_cache[atom.id] = text
        return text

    def raw(self, atom: Atom) -> Raw:
        """The atom's untransformed values, joined."""
        raw = self.raw_cache.get(atom.source)
        if raw is None:
            values = [v for _, v in atom.target.fetch(self.state)]
            raw = self.raw_cache[atom.source] = ("\n".join(values), len(values) - 1)
        return raw

    def batch(self, atom: Atom, raw: Raw) -> str:
        """The chain run over all the values at once, joined by newlines.

        Each op works on the joined text when it can vouch for the result; when it cannot
        (a per-value transformation like base64Decode, or a value holding a newline), the
        values are transformed one by one (by the op, or here) from there on.
        Each prefix of a chain is computed once per source: the CRS chains share long prefixes
        (utf8toUnicode, urlDecodeUni, htmlEntityDecode, jsDecode, cssDecode, ...).
        """
        text, separators = raw
        if separators < 0:
            return ""
        stages = [text] if atom.stages else None
        cache = self.prefix_cache
        values: list[str] | None = None
        for position, prefix in enumerate(atom.prefixes):
            cached = cache.get(prefix)
            if cached is None:
                batched = atom.ops[position](text, separators) if values is None else None
                if isinstance(batched, str):
                    result = batched
                else:
                    if batched is None:  # the op declined: each value on its own
                        if values is None:
                            values = (
                                text.split("\n")
                                if text.count("\n") == separators
                                else self.replay(atom, position)
                            )
                        function = atom.transforms[position]
                        batched = [function(v) for v in values]
                    values = batched
                    result = "\n".join(values)
                    if result.count("\n") == separators:
                        # No value gained a newline: the joined text tells them apart again.
                        values = None
                cached = cache[prefix] = (result, values)
            after, values = cached
            if stages is not None and after != text:
                stages.append(after)
            text = after
        return text if stages is None else "\n".join(stages)

    def value_lines(self, atom: Atom, count: int) -> list[str] | None:
        """The `count` values of the atom's target, each through the whole chain, in order.

        None when a transformed value holds a newline: the joined text no longer tells the
        values apart, and the caller transforms them one by one.
        """
        text = self.joined(atom)
        if text.count("\n") != count - 1:
            return None
        return text.split("\n")

    def replay(self, atom: Atom, position: int) -> list[str]:
        """Each value through the chain's first `position` transformations."""
        functions = atom.transforms[:position]
        values = []
        for _, value in atom.target.fetch(self.state):
            for function in functions:
                value = function(value)
            values.append(value)
        return values

    def transformed(
        self, chain: int, functions: tuple[transforms.Transform, ...], value: str
    ) -> str:
        """Each distinct value goes through each transformation chain once per request.

        Short values (header values, argument names) recur across requests, so their results
        are also kept engine-wide, in a bounded cache that is simply emptied when full.
        """
        key = (chain, value)
        cached = self.cache.get(key)
        if cached is None:
            shared = self.shared_transformed
            cached = shared.get(key) if len(value) <= SHARED_CACHE_VALUE else None
            if cached is None:
                cached = value
                for transform in functions:
                    cached = transform(cached)
                if len(value) <= SHARED_CACHE_VALUE:
                    if len(shared) >= SHARED_CACHE_ENTRIES:
                        shared.clear()
                    shared[key] = cached
            self.cache[key] = cached
        return cached


def each_stage(functions: tuple[transforms.Transform, ...], value: str) -> list[str]:
    """The value before and after each transformation, consecutive duplicates dropped."""
    stages = [value]
    for transform in functions:
        value = transform(value)
        if value != stages[-1]:
            stages.append(value)
    return stages

"""Field paths as written in the policy ($.profile.bio, $.items[*].note) and JSON pointers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

Location = tuple[str | int, ...]
"""A concrete place in a document: object keys and array indexes from the root."""

_SEGMENT = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\*|\d+)\]")
_ANY = object()


def pointer(location: Location) -> str:
    """RFC 6901: '' is the whole document, '/items/0/note' a field inside it."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in location)


def form_names(paths: tuple[FieldPath, ...], excluded: tuple[FieldPath, ...]) -> frozenset[str]:
    """The form fields the `$.name` paths address, minus the excluded ones."""
    names = {p.top_level_name for p in paths} - {p.top_level_name for p in excluded}
    return frozenset(name for name in names if name is not None)


@dataclass(frozen=True, slots=True)
class FieldPath:
    """A compiled `$.a.b[*].c`: keys, fixed indexes, and `[*]` for every array item."""

    text: str
    segments: tuple[object, ...]

    @classmethod
    def compile(cls, text: str) -> FieldPath:
        segments: list[object] = []
        for match in _SEGMENT.finditer(text, 1):
            key, index = match.groups()
            if key is not None:
                segments.append(key)
            else:
                segments.append(_ANY if index == "*" else int(index))
        return cls(text, tuple(segments))

    @property
    def top_level_name(self) -> str | None:
        """`$.name` addresses the form field `name`; deeper paths have no form equivalent."""
        if len(self.segments) == 1 and isinstance(self.segments[0], str):
            return self.segments[0]
        return None

    def matches(self, location: Location) -> bool:
        """True when this path names `location` or one of its ancestors."""
        if len(location) < len(self.segments):
            return False
        for want, got in zip(self.segments, location, strict=False):
            if want is _ANY:
                if not isinstance(got, int):
                    return False
            elif want != got:
                return False
        return True

    def find(self, document: Any) -> Iterator[tuple[Location, Any, str | int]]:
        """Every (location, container, key) where this path lands on an existing value."""
        yield from self._walk(document, 0, ())

    def _walk(
        self, node: Any, depth: int, location: Location
    ) -> Iterator[tuple[Location, Any, str | int]]:
        segment = self.segments[depth]
        last = depth == len(self.segments) - 1
        if isinstance(segment, str):
            if not isinstance(node, dict) or segment not in node:
                return
            keys: list[str | int] = [segment]
        elif isinstance(node, list):
            if segment is _ANY:
                keys = list(range(len(node)))
            else:
                assert isinstance(segment, int)
                keys = [segment] if segment < len(node) else []
        else:
            return
        for key in keys:
            here = (*location, key)
            if last:
                yield here, node, key
            else:
                yield from self._walk(node[key], depth + 1, here)

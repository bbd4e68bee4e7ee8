"""HTML sanitization of declared fields with nh3 (Rust's ammonia), an allow-list cleaner.

bleach is deprecated by its maintainers (mozilla/bleach#698); nh3 is the suggested successor.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import nh3

from gateway.errors import caused_by
from gateway.policy.validation import SanitizeHtml
from gateway.validation.paths import FieldPath, form_names

# Text nh3 returns unchanged: no markup or entity starts (<, >, &), no NUL/CR/controls, no
# no-break space or BOM (serialised as entities), no noncharacters. Checked per BMP character in
# tests/validation/test_properties.py; such fields skip the parser (most fields, most of the time).
INERT = re.compile(
    r"[\t\n\x20-\x25\x27-\x3b\x3d\x3f-\x7e\xa1-\ud7ff\ue000-\ufdcf\ufdf0-\ufefe\uff00-\ufffd]*"
)


class SanitizerError(ValueError):
    """An allow-list nh3 refuses; the runtime turns it into a PolicyError."""


@dataclass(frozen=True, slots=True)
class Sanitizer:
    """The cleaner built once per route, and the fields it applies to."""

    cleaner: nh3.Cleaner
    paths: tuple[FieldPath, ...]
    excluded: tuple[FieldPath, ...] = ()
    form_fields: frozenset[str] = frozenset()

    @classmethod
    def build(cls, policy: SanitizeHtml, excluded: tuple[FieldPath, ...]) -> Sanitizer:
        try:
            # link_rel=None: cleaning removes what is not allowed and adds nothing of its own.
            cleaner = nh3.Cleaner(
                tags=set(policy.allow_tags),
                attributes={tag: set(attrs) for tag, attrs in policy.allow_attrs.items()},
                link_rel=None,
            )
        except Exception as exc:  # nh3 raises ValueError or a Rust panic for a bad allow-list
            raise caused_by(SanitizerError(f"invalid sanitize_html allow-list: {exc}"), None)
        paths = tuple(FieldPath.compile(t) for t in policy.fields)
        return cls(cleaner, paths, excluded, form_names(paths, excluded))

    def clean(self, value: str) -> str:
        if INERT.fullmatch(value):
            return value
        return self.cleaner.clean(value)

    def clean_document(self, document: Any) -> int:
        """Rewrite the declared string fields in place; return how many changed."""
        changed = 0
        for path in self.paths:
            for location, container, key in list(path.find(document)):
                if any(ex.matches(location) for ex in self.excluded):
                    continue
                value = container[key]
                if isinstance(value, str):
                    cleaned = self.clean(value)
                    if cleaned != value:
                        container[key] = cleaned
                        changed += 1
        return changed

    def clean_fields(self, fields: MutableMapping[int, tuple[str, str]]) -> int:
        """Clean form fields (index -> (name, value)) whose names are declared; count changes."""
        names = self.form_fields
        changed = 0
        for index, (name, value) in list(fields.items()):
            if name in names:
                cleaned = self.clean(value)
                if cleaned != value:
                    fields[index] = (name, cleaned)
                    changed += 1
        return changed

"""Decode a JSON body strictly (UTF-8, no NaN, duplicate keys) and bound its shape."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import DuplicateJsonKey, InvalidJson, InvalidUtf8, JsonTooComplex, caused_by
from gateway.policy.validation import JsonLimits
from gateway.validation.paths import FieldPath, Location, pointer

# Brackets outside strings: enough to measure nesting before json.loads recurses into it.
_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_SURROGATE = re.compile(r"[\ud800-\udfff]")

DEFAULT_LIMITS = JsonLimits()


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _reject_constant(name: str) -> Any:
    raise InvalidJson(
        f"{name} is not a JSON number",
        extensions={"check": "json_syntax", "expected": "a finite number (RFC 8259)"},
    )


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        # 1e400 would become Infinity, which no JSON encoder may write back.
        raise InvalidJson(
            f"the number {text[:32]} is out of range",
            extensions={"check": "json_syntax", "expected": "a finite number (RFC 8259)"},
        )
    return value


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Duplicate(key)
        result[key] = value
    return result


@dataclass(frozen=True, slots=True)
class JsonChecker:
    """One route's JSON limits, with the fields exempted from per-field limits."""

    limits: JsonLimits = DEFAULT_LIMITS
    exempt_string: tuple[FieldPath, ...] = ()
    exempt_array: tuple[FieldPath, ...] = ()

    def parse(self, body: bytes) -> Any:
        """The decoded document, or a 400-class rejection naming the check and the place."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as undecodable:
            raise caused_by(
                InvalidUtf8(
                    f"byte {undecodable.start} is not valid UTF-8",
                    extensions={
                        "check": "utf8",
                        "offset": undecodable.start,
                        "expected": "UTF-8 text",
                    },
                ),
                None,
            )
        self._check_depth(text)
        hook: Callable[[list[tuple[str, Any]]], dict[str, Any]] | None = (
            _strict_object if self.limits.duplicate_keys == "reject" else None
        )
        try:
            document = json.loads(
                text,
                object_pairs_hook=hook,
                parse_constant=_reject_constant,
                parse_float=_finite_float,
            )
        except _Duplicate as duplicate:  # one name per exception type: mypyc types a name once
            raise caused_by(
                DuplicateJsonKey(
                    f"the key {duplicate.key[:64]!r} appears twice in one object",
                    extensions={
                        "check": "duplicate_keys",
                        "expected": "unique keys in each object",
                    },
                ),
                None,
            )
        except json.JSONDecodeError as syntax:
            raise caused_by(
                InvalidJson(
                    f"{syntax.msg} at line {syntax.lineno} column {syntax.colno}",
                    extensions={"check": "json_syntax", "offset": syntax.pos, "expected": "JSON"},
                ),
                None,
            )
        except (ValueError, RecursionError):
            # Integers beyond Python's digit limit and nesting deeper than the scan saw.
            raise caused_by(
                InvalidJson(
                    "a value cannot be decoded",
                    extensions={"check": "json_syntax", "expected": "JSON"},
                ),
                None,
            )
        self._check_shape(document, "\\u" in text)
        return document

    def _check_depth(self, text: str) -> None:
        limit = self.limits.max_depth
        if text.count("[") + text.count("{") <= limit:
            return  # cannot nest deeper than the number of openers
        depth = 0
        for match in _STRUCTURE.finditer(text):
            token = match.group()
            if token in "[{":
                depth += 1
                if depth > limit:
                    raise JsonTooComplex(
                        f"nesting deeper than {limit}",
                        extensions={"check": "max_depth", "expected": f"depth <= {limit}"},
                    )
            elif token in "]}":
                depth -= 1

    def _check_shape(self, document: Any, escapes: bool) -> None:
        # The common case passes a walk that builds no locations; only a document that
        # may break a limit is walked again with locations, to name the field (or find it exempt).
        if not self._may_exceed(document, escapes):
            return
        self._locate(document, escapes)

    def _may_exceed(self, document: Any, escapes: bool) -> bool:
        limits = self.limits
        max_string, max_array = limits.max_string, limits.max_array
        keys = 0
        stack = [document]
        while stack:
            node = stack.pop()
            kind = type(node)
            if kind is str:
                if len(node) > max_string or (escapes and _SURROGATE.search(node)):
                    return True
            elif kind is dict:
                keys += len(node)
                if keys > limits.max_keys:
                    return True
                if escapes and any(_SURROGATE.search(key) for key in node):
                    return True
                stack.extend(node.values())
            elif kind is list:
                if len(node) > max_array:
                    return True
                stack.extend(node)
        return False

    def _locate(self, document: Any, escapes: bool) -> None:
        limits = self.limits
        keys = 0
        stack: list[tuple[Any, Location]] = [(document, ())]
        while stack:
            node, location = stack.pop()
            if isinstance(node, dict):
                keys += len(node)
                if keys > limits.max_keys:
                    raise _too_complex(
                        "max_keys",
                        f"more than {limits.max_keys} object members",
                        location,
                        f"at most {limits.max_keys} members in the document",
                    )
                for key, value in node.items():
                    if escapes and _SURROGATE.search(key):
                        self._surrogate((*location, key))
                    stack.append((value, (*location, key)))
            elif isinstance(node, list):
                if len(node) > limits.max_array and not _exempt(self.exempt_array, location):
                    raise _too_complex(
                        "max_array",
                        f"an array has {len(node)} items",
                        location,
                        f"at most {limits.max_array} items",
                    )
                stack.extend((value, (*location, i)) for i, value in enumerate(node))
            elif isinstance(node, str):
                if len(node) > limits.max_string and not _exempt(self.exempt_string, location):
                    raise _too_complex(
                        "max_string",
                        f"a string has {len(node)} characters",
                        location,
                        f"at most {limits.max_string} characters",
                    )
                if escapes and _SURROGATE.search(node):
                    self._surrogate(location)

    @staticmethod
    def _surrogate(location: Location) -> None:
        # A lone \ud800 decodes to a str no UTF-8 encoder (nor the upstream) can represent.
        raise InvalidUtf8(
            "a string escapes a lone UTF-16 surrogate",
            extensions={
                "check": "utf8",
                "pointer": pointer(location),
                "expected": "paired surrogates (RFC 8259 §8.2)",
            },
        )


def _too_complex(check: str, detail: str, location: Location, expected: str) -> JsonTooComplex:
    return JsonTooComplex(
        detail, extensions={"check": check, "pointer": pointer(location), "expected": expected}
    )


def _exempt(paths: tuple[FieldPath, ...], location: Location) -> bool:
    return any(path.matches(location) for path in paths)

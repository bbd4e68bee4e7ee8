"""JSON Schemas compiled once, with fastjsonschema; a failure names the pointer and keyword.

fastjsonschema generates Python code per schema: about 20 µs for a 1 KB order against a realistic
schema, where jsonschema's Draft202012Validator takes 200-340 µs (bench/validation.py and the
validation issue note). It implements drafts 4, 6 and 7; 2020-12 documents are accepted as long
as they use no keyword draft 7 lacks, and such a keyword is refused at load rather than ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastjsonschema
import yaml

from gateway.errors import SchemaViolation, caused_by
from gateway.validation.paths import pointer

# Keywords of 2020-12 that draft 7 does not know; fastjsonschema would silently skip them.
_UNSUPPORTED = frozenset(
    {
        "prefixItems",
        "unevaluatedProperties",
        "unevaluatedItems",
        "dependentRequired",
        "dependentSchemas",
        "minContains",
        "maxContains",
        "$dynamicRef",
        "$dynamicAnchor",
        "$recursiveRef",
        "$vocabulary",
    }
)
# Keywords whose value maps names to subschemas: the names are data, not keywords.
_NAMED_SCHEMAS = frozenset({"properties", "patternProperties", "$defs", "definitions"})
# Where the detail would get long, `expected` carries only the keyword.
_MAX_EXPECTED = 200


class SchemaError(ValueError):
    """A schema that cannot be read or compiled; the runtime turns it into a PolicyError."""


def _refuse_remote(uri: str) -> Any:
    raise SchemaError(f"remote $ref {uri!r} is not fetched; inline it or use #/$defs")


def load_schema(spec: str | Mapping[str, Any], base_dir: Path) -> dict[str, Any]:
    """An inline schema as is, or the JSON/YAML file it names, relative to the policy file."""
    if not isinstance(spec, str):
        return dict(spec)
    path = Path(spec) if Path(spec).is_absolute() else base_dir / spec
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) if path.suffix in {".yaml", ".yml"} else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise caused_by(SchemaError(f"cannot read schema file {str(path)!r}: {exc}"), None)
    if not isinstance(data, dict):
        raise SchemaError(f"schema file {str(path)!r} must hold a JSON object")
    return data


def _check_keywords(node: Any, where: str) -> None:
    if isinstance(node, list):
        for index, item in enumerate(node):
            _check_keywords(item, f"{where}/{index}")
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in _UNSUPPORTED:
            raise SchemaError(
                f"keyword {key!r} at {where or '/'} is not supported (drafts 4-7 keywords, "
                "plus $defs, are)"
            )
        if key in _NAMED_SCHEMAS and isinstance(value, dict):
            for name, sub in value.items():
                _check_keywords(sub, f"{where}/{key}/{name}")
        elif key not in {"enum", "const", "default", "examples", "required"}:
            _check_keywords(value, f"{where}/{key}")


@dataclass(frozen=True, slots=True)
class CompiledSchema:
    """One compiled schema and where it applies: body, query or headers."""

    target: str
    validate: Any  # the function fastjsonschema generated

    @classmethod
    def compile(cls, target: str, schema: dict[str, Any]) -> CompiledSchema:
        _check_keywords(schema, "")
        definition = {k: v for k, v in schema.items() if k != "$schema"}
        handlers = {scheme: _refuse_remote for scheme in ("http", "https", "file", "urn")}
        try:
            function = fastjsonschema.compile(definition, handlers=handlers)
        except SchemaError:
            raise
        except Exception as exc:  # the generator raises several kinds for a bad schema
            raise caused_by(SchemaError(f"invalid JSON Schema: {exc}"), None)
        return cls(target, function)

    def check(self, document: Any) -> None:
        try:
            self.validate(document)
        except fastjsonschema.JsonSchemaValueException as exc:
            # fastjsonschema names the place as `data.a[0].b`; keys holding dots blur it.
            location = tuple(exc.path[1:]) if exc.path else ()
            where = pointer(location)
            expected: Any = {"keyword": exc.rule}
            rendered = json.dumps(exc.rule_definition, default=str)
            if len(rendered) <= _MAX_EXPECTED:
                expected["value"] = exc.rule_definition
            raise caused_by(
                SchemaViolation(
                    exc.message.replace(exc.name or "data", where or "(root)", 1),
                    extensions={
                        "check": f"schema.{self.target}",
                        "pointer": where,
                        "keyword": exc.rule,
                        "expected": expected,
                    },
                ),
                None,
            )

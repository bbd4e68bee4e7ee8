"""YAML text -> `Policy`, or every mistake at once as `FILE:LINE:COL: yaml.path: message`."""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from gateway.errors import PolicyError
from gateway.policy.model import Policy

YamlPath = tuple[str | int, ...]
"""A place in the document: mapping keys and sequence indexes from the root."""

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """A validated policy with where it came from and a hash of its text."""

    policy: Policy
    source: str
    sha256: str


def load_policy(path: str | Path) -> LoadedPolicy:
    """Read and validate a policy file; raise PolicyError listing every mistake."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([f"{source}: cannot read policy: {exc}"]) from exc
    return parse_policy(text, source)


def parse_policy(text: str, source: str = "<policy>") -> LoadedPolicy:
    """Validate policy text; raise PolicyError listing every mistake."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError([f"{where}: invalid YAML: {problem}"]) from exc
    if node is None:
        raise PolicyError([f"{source}:1:1: (root): the policy file is empty"])
    positions: dict[YamlPath, tuple[int, int]] = {}
    errors: list[str] = []
    data = _to_python(node, (), positions, errors, source)
    if errors:
        raise PolicyError(errors)
    if not isinstance(data, dict):
        raise PolicyError([f"{source}:1:1: (root): the policy must be a mapping of keys"])
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_in_file_order(_describe(exc, positions, source))) from exc
    problems = list(_cross_checks(policy))
    if problems:
        raise PolicyError(
            _in_file_order(_format(source, positions, path, message) for path, message in problems)
        )
    return LoadedPolicy(policy=policy, source=source, sha256=digest)


def _to_python(
    node: yaml.Node,
    path: YamlPath,
    positions: dict[YamlPath, tuple[int, int]],
    errors: list[str],
    source: str,
) -> Any:
    """Build plain Python data from the YAML tree, remembering where each value stood."""
    positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in result:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                errors.append(f"{source}:{line}:{col}: {_dotted((*path, key))}: duplicate key")
            # A key's position is where the key is written, which is what an editor jumps to.
            result[key] = _to_python(value_node, (*path, key), positions, errors, source)
            positions[(*path, key)] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _to_python(item, (*path, index), positions, errors, source)
            for index, item in enumerate(node.value)
        ]
    assert isinstance(node, yaml.ScalarNode)
    value = node.value
    if node.tag == "tag:yaml.org,2002:str" and "${" in value:
        # Substituted values are strings; pydantic then parses numbers, durations and sizes.
        return _substitute_env(value)
    constructor = yaml.SafeLoader.yaml_constructors.get(node.tag)
    if constructor is None or node.tag == "tag:yaml.org,2002:str":
        return value
    return constructor(yaml.SafeLoader(""), node)


def _substitute_env(value: str) -> str:
    """Expand ${VAR} and ${VAR:-default}; an unset VAR without default becomes ''."""

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found is None or (found == "" and default is not None):
            return default or ""
        return found

    return _ENV_REF.sub(replace, value)


def _in_file_order(messages: Iterator[str]) -> list[str]:
    def position(message: str) -> tuple[int, int]:
        parts = message.split(":", 3)
        try:
            return int(parts[1]), int(parts[2])
        except (IndexError, ValueError):
            return 0, 0

    return sorted(messages, key=position)


def _describe(
    exc: ValidationError, positions: dict[YamlPath, tuple[int, int]], source: str
) -> Iterator[str]:
    errors = exc.errors()
    failed = [tuple(error["loc"]) for error in errors]
    for error in errors:
        loc: YamlPath = tuple(error["loc"])
        if error["type"] == "too_short" and any(
            other[: len(loc)] == loc and other != loc for other in failed
        ):
            continue  # a list emptied by its own items' errors; those errors say it better
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = _unknown_key_message(loc)
        elif error["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        elif error["type"] == "missing":
            message = "required key is missing"
        yield _format(source, positions, loc, message)


def _unknown_key_message(loc: YamlPath) -> str:
    key = str(loc[-1])
    model = _model_at(loc[:-1])
    if model is None:
        return f"unknown key {key!r}"
    known = sorted(model.model_fields)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(known)})"
    return f"unknown key {key!r}{hint}"


def _model_at(loc: YamlPath) -> type[BaseModel] | None:
    """Follow a location down the model classes to the one that owns its keys."""
    model: type[BaseModel] | None = Policy
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return None
        model = _model_in(field.annotation)
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _cross_checks(policy: Policy) -> Iterator[tuple[YamlPath, str]]:
    """Mistakes that span several keys, which no single field can see."""
    seen: set[str] = set()
    for index, route in enumerate(policy.routes):
        if route.name in seen:
            yield ("routes", index, "name"), f"route name {route.name!r} is used twice"
        seen.add(route.name)
    ports: dict[str, str] = {}
    for name in ("proxy", "health", "metrics", "admin"):
        address = getattr(policy.listen, name)
        port = address.rpartition(":")[2]
        if port != "0" and port in ports:
            yield ("listen", name), f"port {port} is already used by listen.{ports[port]}"
        ports[port] = name


def _format(
    source: str, positions: dict[YamlPath, tuple[int, int]], loc: YamlPath, message: str
) -> str:
    # Pydantic may add a union-branch or validator name to the location; the closest
    # position we know is the longest prefix that was written in the file.
    probe = loc
    while probe and probe not in positions:
        probe = probe[:-1]
    line, col = positions.get(probe, (1, 1))
    return f"{source}:{line}:{col}: {_dotted(loc)}: {message}"


def _dotted(loc: YamlPath) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(root)"

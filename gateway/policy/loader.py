"""YAML text -> `Policy`, or every mistake at once as `FILE:LINE:COL: yaml.path: message`."""

from __future__ import annotations

import hashlib
import os
import re
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from gateway.errors import PolicyError
from gateway.policy.admin import is_loopback_host
from gateway.policy.model import Policy
from gateway.policy.types import suggest

YamlPath = tuple[str | int, ...]
"""A place in the document: mapping keys and sequence indexes from the root."""

Position = tuple[int, int]
"""Line and column, both from 1, as editors count them."""

Problem = tuple[Position, YamlPath, str]

# `$${` is a literal `${`, for the rare regex that needs one.
_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_STR_TAG = "tag:yaml.org,2002:str"
# Pydantic's wording for a wrong container names our classes; say what the file needs instead.
_SHAPE_MESSAGES = {
    "model_type": "should be a mapping of keys",
    "model_attributes_type": "should be a mapping of keys",
    "dict_type": "should be a mapping of keys",
    "tuple_type": "should be a list",
    "list_type": "should be a list",
}


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
    except OSError as exc:
        raise PolicyError(
            [f"{source}:1:1: (root): cannot read the policy: {exc.strerror}"]
        ) from exc
    except UnicodeDecodeError as exc:
        raise PolicyError([f"{source}:1:1: (root): the policy is not UTF-8 text"]) from exc
    return parse_policy(text, source)


def parse_policy(text: str, source: str = "<policy>") -> LoadedPolicy:
    """Validate policy text; raise PolicyError listing every mistake."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise PolicyError([_yaml_error(source, text, exc)]) from exc
    document = _Document()
    data = document.read(node) if node is not None else None
    problems = document.problems
    if data is None:
        problems.append(((1, 1), (), "the policy file is empty"))
    elif not isinstance(data, dict):
        problems.append((document.positions[()], (), "the policy must be a mapping of keys"))
    else:
        try:
            policy = Policy.model_validate(_without_extensions(data))
        except ValidationError as exc:
            problems.extend(document.describe(exc, data))
        else:
            problems.extend(
                (document.position(loc), loc, msg) for loc, msg in _cross_checks(policy)
            )
    if problems:
        raise PolicyError(_formatted(source, problems))
    digest = hashlib.sha256(text.encode()).hexdigest()
    return LoadedPolicy(policy=policy, source=source, sha256=digest)


EXTENSION_PREFIX = "x-"
"""Top-level keys starting with this are ignored: a place for `&anchors` to reuse with `<<:`."""


def _without_extensions(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if not key.startswith(EXTENSION_PREFIX)}


@dataclass
class _Document:
    """Plain Python data built from the YAML tree, with where each value was written."""

    positions: dict[YamlPath, Position] = field(default_factory=dict)
    substituted: dict[YamlPath, str] = field(default_factory=dict)
    reported: set[YamlPath] = field(default_factory=set)  # pydantic has nothing to add there
    problems: list[Problem] = field(default_factory=list)
    _constructor: yaml.SafeLoader = field(default_factory=lambda: yaml.SafeLoader(""))
    _open: list[yaml.Node] = field(default_factory=list)  # collections being read: alias loops

    def read(self, node: yaml.Node, path: YamlPath = (), at: Position | None = None) -> Any:
        # A key's position is where the key is written, which is what an editor jumps to.
        self.positions[path] = at or _position(node.start_mark)
        if isinstance(node, yaml.CollectionNode):
            if node in self._open:
                self.problems.append((self.positions[path], path, "an alias contains itself"))
                self.reported.add(path)
                return None
            self._open.append(node)
            try:
                return self._collection(node, path)
            finally:
                self._open.pop()
        if node.tag == _STR_TAG:
            return self._substitute(node.value, path) if "${" in node.value else node.value
        construct = yaml.SafeLoader.yaml_constructors.get(node.tag)
        return node.value if construct is None else construct(self._constructor, node)

    def _collection(self, node: yaml.CollectionNode, path: YamlPath) -> Any:
        if isinstance(node, yaml.MappingNode):
            # `<<: *defaults` merge keys, resolved by PyYAML's own rules.
            self._constructor.flatten_mapping(node)
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                where = _position(key_node.start_mark)
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problems.append((where, path, "a key must be a plain word"))
                    continue
                key = key_node.value
                if key in result:
                    first = self.positions[(*path, key)][0]
                    message = f"duplicate key {key!r} (first written on line {first})"
                    self.problems.append((where, (*path, key), message))
                result[key] = self.read(value_node, (*path, key), where)
            return result
        return [self.read(item, (*path, index)) for index, item in enumerate(node.value)]

    def _substitute(self, value: str, path: YamlPath) -> str:
        """Expand ${VAR} and ${VAR:-default} (the default also stands in for an empty VAR)."""
        self.substituted[path] = value

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name is None:
                return "${"
            found = os.environ.get(name)
            if found is None and default is None:
                message = f"environment variable {name} is not set (or write ${{{name}:-default}})"
                self.problems.append((self.positions[path], path, message))
                self.reported.add(path)
                return ""
            return default if default is not None and not found else found or ""

        # Substituted values stay strings; pydantic then parses numbers, durations and sizes.
        return _ENV_REF.sub(replace, value)

    def position(self, loc: YamlPath) -> Position:
        """Where `loc` was written, or its closest written parent (a missing key has none)."""
        while loc and loc not in self.positions:
            loc = loc[:-1]
        return self.positions.get(loc, (1, 1))

    def describe(self, exc: ValidationError, data: dict[str, Any]) -> Iterator[Problem]:
        errors = exc.errors()
        failed = [_in_file(tuple(error["loc"]), data, error["type"]) for error in errors]
        for error, loc in zip(errors, failed, strict=True):
            kind = error["type"]
            if kind == "too_short" and any(o[: len(loc)] == loc and o != loc for o in failed):
                continue  # a list emptied by its own items' errors; those errors say it better
            if loc in self.reported:
                continue  # e.g. an unset variable: the mistake, not what its absence left
            message = _message(error, loc)
            if loc in self.substituted:
                message += f" (the value came from {self.substituted[loc]!r})"
            yield self.position(loc), loc, message


def _message(error: ErrorDetails, loc: YamlPath) -> str:
    """Pydantic's error in the policy's words: keys, mappings and lists, not Python classes."""
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key {loc[-1]!r}{suggest(str(loc[-1]), _known_keys(loc[:-1]))}"
    if kind == "missing":
        return "required key is missing"
    if kind in ("too_short", "too_long"):
        ctx = error.get("ctx", {})
        bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        least = "at least" if kind == "too_short" else "at most"
        return f"needs {least} {bound} item{'' if bound == 1 else 's'}"
    if kind == "value_error":  # our own validators: their text is already the message
        return error["msg"].removeprefix("Value error, ")
    message = _SHAPE_MESSAGES.get(kind, error["msg"])
    if not isinstance(error["input"], dict | list):
        message += f", got {error['input']!r}"
    return message


def _in_file(loc: YamlPath, data: Any, kind: str) -> YamlPath:
    """Drop the union branch and validator names pydantic puts into a location."""
    path: list[str | int] = []
    for index, part in enumerate(loc):
        if _holds(data, part):
            data = data[part]
        elif not (index == len(loc) - 1 and kind == "missing"):
            continue
        path.append(part)
    return tuple(path)


def _holds(data: Any, part: str | int) -> bool:
    if isinstance(data, dict):
        return part in data
    return isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)


def _known_keys(loc: YamlPath) -> set[str]:
    """Every key allowed at `loc`: follows the annotations down through models, lists, unions."""
    annotations: list[Any] = [Policy]
    for part in loc:
        following: list[Any] = []
        for annotation in _leaves(annotations):
            origin = typing.get_origin(annotation)
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                if isinstance(part, str) and part in annotation.model_fields:
                    following.append(annotation.model_fields[part].annotation)
            elif origin in (tuple, list, set, frozenset) and isinstance(part, int):
                following.extend(a for a in typing.get_args(annotation) if a is not Ellipsis)
            elif origin is dict:
                following.append(typing.get_args(annotation)[1])
        annotations = following
    return {
        name
        for annotation in _leaves(annotations)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel)
        for name in annotation.model_fields
    }


def _leaves(annotations: list[Any]) -> Iterator[Any]:
    """Unwrap Annotated, Optional and unions to the types a value may have."""
    for annotation in annotations:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            yield from _leaves([typing.get_args(annotation)[0]])
        elif origin is typing.Union or type(annotation).__name__ == "UnionType":
            yield from _leaves(list(typing.get_args(annotation)))
        else:
            yield annotation


def _cross_checks(policy: Policy) -> Iterator[tuple[YamlPath, str]]:
    """Mistakes that span several keys, which no single field can see."""
    seen: dict[str, int] = {}
    for index, route in enumerate(policy.routes):
        if route.name in seen:
            yield (
                ("routes", index, "name"),
                f"route name {route.name!r} is already used by routes[{seen[route.name]}]",
            )
        seen.setdefault(route.name, index)
    ports: dict[str, str] = {}
    for name in ("proxy", "health", "metrics", "admin"):
        port = getattr(policy.listen, name).rpartition(":")[2]
        if port != "0" and port in ports:
            yield ("listen", name), f"port {port} is already used by listen.{ports[port]}"
        ports.setdefault(port, name)
    admin_host = policy.listen.admin.rpartition(":")[0]
    if policy.admin.token is None and not is_loopback_host(admin_host):
        yield (
            ("listen", "admin"),
            (
                f"the admin port listens on {admin_host!r}, beyond loopback: set admin.token "
                '(e.g. admin: {token: "${GATEWAY_ADMIN_TOKEN}"}) or listen on 127.0.0.1'
            ),
        )


def _yaml_error(source: str, text: str, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    line, col = _position(mark) if mark else (1, 1)
    message = f"invalid YAML: {getattr(exc, 'problem', None) or exc}"
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark:
        start = _position(context_mark)
        problem = getattr(exc, "problem", None) or ""
        if problem.startswith("but "):  # PyYAML's context is then the first half of a sentence
            message = f"invalid YAML: {context} (from {start[0]}:{start[1]}), {problem}"
        else:
            message += f" ({context} that starts at {start[0]}:{start[1]})"
    written = text.splitlines()
    if line <= len(written) and "${" in written[line - 1]:
        # `{` opens a mapping inside `{...}` and `[...]`: the commonest way to trip here.
        message += "; quote values that use ${VAR} inside { } or [ ]"
    return f"{source}:{line}:{col}: (document): {message}"


def _formatted(source: str, problems: list[Problem]) -> list[str]:
    ordered = sorted(problems, key=lambda problem: problem[0])
    lines = [f"{source}:{line}:{col}: {_dotted(loc)}: {msg}" for (line, col), loc, msg in ordered]
    return list(dict.fromkeys(lines))  # union branches can repeat one mistake


def _position(mark: yaml.Mark) -> Position:
    return mark.line + 1, mark.column + 1


def _dotted(loc: YamlPath) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(root)"

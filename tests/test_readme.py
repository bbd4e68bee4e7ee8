"""README.md tells the truth: its YAML loads, its metric names exist, its error table matches."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.capture.reasons import rejection_reasons
from gateway.errors import Rejection
from gateway.observability.families import Family
from gateway.observability.metrics import GatewayMetrics
from gateway.policy.loader import parse_policy
from gateway.runtime import check_policy

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

# A fenced yaml block, optionally preceded by `<!-- fragment: KIND -->` (blank lines allowed).
_BLOCK = re.compile(
    r"(?:<!-- fragment: (?P<kind>[a-z]+) -->\s*\n)?```yaml\n(?P<body>.*?)```", re.DOTALL
)
_KINDS = ("policy", "route")
_DEFAULT_ROUTE = {"name": "default", "match": {"path_prefix": "/"}}


def _blocks() -> list[Any]:
    params = []
    for match in _BLOCK.finditer(README):
        line = README.count("\n", 0, match.start("body"))
        kind = match.group("kind") or "whole"
        params.append(pytest.param(kind, match.group("body"), id=f"line{line}-{kind}"))
    return params


def _as_policy(kind: str, body: str) -> str:
    """A whole policy as is; a fragment wrapped into the smallest policy that holds it."""
    if kind == "whole":
        return body
    data = yaml.safe_load(body)
    if kind == "policy":
        data.setdefault("routes", [_DEFAULT_ROUTE])
    else:
        data = {"routes": [{"name": "docs", **data}, _DEFAULT_ROUTE]}
    return yaml.safe_dump(data, sort_keys=False)


BLOCKS = _blocks()


def test_readme_has_yaml_of_every_kind() -> None:
    """The README shows whole policies and both kinds of fragment, and marks no unknown kind."""
    kinds = {param.values[0] for param in BLOCKS}
    assert kinds == {"whole", *_KINDS}
    assert set(re.findall(r"<!-- fragment: ([a-z]+) -->", README)) <= set(_KINDS)


@pytest.mark.parametrize(("kind", "body"), BLOCKS)
def test_yaml_block_loads(
    kind: str, body: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every YAML example in the README is a policy (or a marked fragment of one) that loads."""
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", "a-token-of-sixteen-chars")
    if kind == "whole":
        assert "routes:" in body, "an unmarked block must be a whole policy; mark fragments"
    text = _as_policy(kind, body)
    parse_policy(text, "README.md")
    if "rules_dir" in text:
        return  # compiling needs an installed CRS; the model check above still ran
    # Compiled as `gateway check` does, beside the example schemas the README names.
    shutil.copytree(ROOT / "config" / "schemas", tmp_path / "schemas")
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    check_policy(str(path))


def _declared_metrics() -> dict[str, tuple[str, ...]]:
    """Every metric name a scrape can show (counters with _total), with its label names."""
    declared: dict[str, tuple[str, ...]] = {}
    metrics = GatewayMetrics()  # compiled by mypyc, it has no __dict__ for vars()
    for value in (getattr(metrics, name) for name in dir(metrics)):
        if isinstance(value, Family):
            name = value.name
            if value.kind == "counter":  # the exposition names every counter sample `_total`
                name = name.removesuffix("_total") + "_total"
            declared[name] = value.labelnames
    return declared


def _readme_metrics() -> list[Any]:
    """`gateway_name`, `gateway_name{label,...}`, `{label="value"}` or `gateway_prefix_*`."""
    found = {}
    for match in re.finditer(r"`(gateway_[a-z0-9_]+\*?)(\{[^}`]*\})?", README):
        name, labels = match.group(1), match.group(2) or ""
        if name in rejection_reasons():
            continue  # `gateway_exception` is a reason code, not a metric
        label_names = tuple(re.findall(r"([a-z_]+)(?:=\"[^\"]*\")?(?:,|\})", labels))
        found[(name, label_names)] = pytest.param(name, label_names, id=name + labels)
    return list(found.values())


@pytest.mark.parametrize(("name", "labels"), _readme_metrics())
def test_metric_names_are_declared(name: str, labels: tuple[str, ...]) -> None:
    """Every `gateway_...` metric the README names is declared, with the labels it shows."""
    declared = _declared_metrics()
    if name.endswith("*"):
        assert any(family.startswith(name[:-1]) for family in declared)
        return
    assert name in declared
    assert set(labels) <= set(declared[name])


def test_every_declared_metric_is_documented() -> None:
    """A metric family added to the code without a word in README.md fails here."""
    declared = _declared_metrics()
    assert len(declared) > 30  # the families were found at all
    undocumented = [name for name in declared if name not in README]
    assert undocumented == []


def _error_rows() -> list[Any]:
    section = README.split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    params = []
    for status, cell in re.findall(r"^\| (\d{3}) \| ([^|]+) \|", section, re.MULTILINE):
        for reason in re.findall(r"`([a-z_0-9]+)`", cell):
            params.append(pytest.param(reason, int(status), id=reason))
    return params


def _status_of(reason: str) -> int | None:
    pending: list[type[Rejection]] = [Rejection]
    while pending:
        cls = pending.pop()
        if cls.reason == reason:
            return cls.status
        pending.extend(cls.__subclasses__())
    return None


@pytest.mark.parametrize(("reason", "status"), _error_rows())
def test_error_table_matches_errors_module(reason: str, status: int) -> None:
    """Each reason code in the README's errors table exists in gateway.errors with that status."""
    assert _status_of(reason) == status


def test_error_table_lists_every_reason() -> None:
    """No rejection reason of gateway.errors is missing from the README's errors table."""
    listed = {param.values[0] for param in _error_rows()}
    assert rejection_reasons() <= listed

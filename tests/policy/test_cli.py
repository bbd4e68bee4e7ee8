"""`gateway check`, `gateway schema` and `gateway run` on a bad policy, as real subprocesses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gateway.errors import PolicyError
from gateway.policy.loader import load_policy
from tests.policy.conftest import BAD, CONFIG, ROOT, gateway_cli
from tests.policy.test_loader import EXPECTED


def relative(name: str) -> str:
    return str((BAD / f"{name}.yaml").relative_to(ROOT))


def test_check_prints_every_mistake_of_every_file_and_exits_2() -> None:
    """`gateway check` on all bad fixtures prints each expected line, file by file, exit 2."""
    names = sorted(EXPECTED)
    result = gateway_cli("check", *(relative(name) for name in names))
    assert result.returncode == 2, result.stderr
    expected = [f"{relative(name)}:{line}" for name in names for line in EXPECTED[name]]
    assert result.stdout.splitlines() == expected


def test_check_valid_files_exits_0() -> None:
    """`gateway check` on good files prints nothing on stdout, `PATH: ok` on stderr, exit 0."""
    paths = [str(path.relative_to(ROOT)) for path in sorted(CONFIG.glob("*.yaml"))]
    result = gateway_cli("check", *paths)
    assert result.returncode == 0, result.stdout
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"{path}: ok" for path in paths]


def test_check_one_bad_file_among_good_ones_exits_2() -> None:
    """One bad file fails the whole check; the good file is still reported ok."""
    result = gateway_cli("check", "config/example.yaml", relative("bad_duration"))
    assert result.returncode == 2
    assert result.stdout.splitlines() == [
        f"{relative('bad_duration')}:{EXPECTED['bad_duration'][0]}"
    ]
    assert "config/example.yaml: ok" in result.stderr


def test_run_with_bad_policy_exits_2_with_messages_on_stderr() -> None:
    """`gateway run` refuses a bad policy before binding any port: messages on stderr, exit 2."""
    result = gateway_cli("run", "--policy", relative("many_mistakes"))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{relative('many_mistakes')}:{line}" for line in EXPECTED["many_mistakes"]
    ]
    assert result.stdout == ""


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    result = gateway_cli("schema")
    assert result.returncode == 0, result.stderr
    printed: dict[str, Any] = json.loads(result.stdout)
    return printed


def test_schema_is_a_valid_2020_12_schema(schema: dict[str, Any]) -> None:
    """`gateway schema` prints a JSON Schema that declares and obeys draft 2020-12."""
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", sorted(CONFIG.glob("*.yaml")), ids=lambda p: p.name)
def test_schema_accepts_every_config_file(schema: dict[str, Any], path: Path) -> None:
    """Every example policy an editor opens passes the schema the CLI prints."""
    document = yaml.safe_load(path.read_text())
    errors = [
        error.message for error in jsonschema.Draft202012Validator(schema).iter_errors(document)
    ]
    assert errors == []


def test_schema_rejects_unknown_key(schema: dict[str, Any]) -> None:
    """A typo in a key fails the schema, as it fails the loader."""
    document = yaml.safe_load((CONFIG / "example.yaml").read_text())
    document["routes"][0]["match"]["path_prefx"] = "/api"
    validator = jsonschema.Draft202012Validator(schema)
    assert [e.message for e in validator.iter_errors(document)] == [
        "Additional properties are not allowed ('path_prefx' was unexpected)"
    ]


UNIT_VALUES = [
    ("upstream", "timeout", "10s", True),
    ("upstream", "timeout", "250ms", True),
    ("upstream", "timeout", "1.5m", True),
    ("upstream", "timeout", 3, True),
    ("upstream", "timeout", "fast", False),
    ("upstream", "timeout", "10", False),
    ("upstream", "timeout", -1, False),
    ("limits", "max_header_size", "16KiB", True),
    ("limits", "max_header_size", "10 MB", True),
    ("limits", "max_header_size", 512, True),
    ("limits", "max_header_size", "10mb", False),
    ("limits", "max_header_size", 1.5, False),
    ("access", "sample_rate", "50%", True),
    ("access", "sample_rate", "100%", True),
    ("access", "sample_rate", 0.5, True),
    ("access", "sample_rate", "150%", False),
    ("access", "sample_rate", 2, False),
    ("access", "sample_rate", "half", False),
]


@pytest.mark.parametrize(
    ("section", "key", "value", "valid"),
    UNIT_VALUES,
    ids=[f"{k}={v!r}" for _, k, v, _ in UNIT_VALUES],
)
def test_schema_and_loader_agree_on_units(
    schema: dict[str, Any], tmp_path: Path, section: str, key: str, value: object, valid: bool
) -> None:
    """Durations, sizes and percentages the schema accepts are exactly those the loader takes."""
    document: dict[str, Any] = {"routes": [{"name": "default"}]}
    if section == "access":
        document["logging"] = {"access": {key: value}}
    else:
        document[section] = {key: value}
    by_schema = jsonschema.Draft202012Validator(schema).is_valid(document)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(document))
    try:
        load_policy(path)
        by_loader = True
    except PolicyError:
        by_loader = False
    assert (by_schema, by_loader) == (valid, valid)

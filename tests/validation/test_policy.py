"""The validation block of the policy: accepted forms, and each mistake reported where it is."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.errors import PolicyError
from gateway.policy.loader import load_policy, parse_policy
from gateway.runtime import compile_policy

CONFIG = Path(__file__).resolve().parents[2] / "config"


def compiled(text: str, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("routes:\n  - name: r\n    validation:\n" + textwrap.indent(text, "      "))
    compile_policy(load_policy(path), generation=1, default_upstream_url="http://127.0.0.1:1")


BAD = [
    pytest.param("max_body: lots\n", "validation.max_body: invalid size 'lots'", id="size"),
    pytest.param("mode: strict\n", "validation.mode", id="mode"),
    pytest.param("methods: [FETCH]\n", "unknown HTTP method", id="method"),
    pytest.param("content_types: [json]\n", "invalid media type 'json'", id="media-type"),
    pytest.param(
        "sanitize_html: {fields: [comment]}\n", "invalid field path 'comment'", id="field-path"
    ),
    pytest.param("ssrf: {fields: []}\n", "validation.ssrf.fields", id="ssrf-empty"),
    pytest.param("jsn: {}\n", "unknown key 'jsn'", id="unknown-key"),
    pytest.param("json: {max_depth: 0}\n", "validation.json.max_depth", id="depth-zero"),
    pytest.param(
        "exclusions: [{fields: [$.a], checks: [schema]}]\n",
        "validation.exclusions[0].checks[0]",
        id="exclusion-check",
    ),
    pytest.param(
        "schema: {body: missing.json}\n",
        "routes[0].validation: cannot read schema file",
        id="missing-schema-file",
    ),
    pytest.param(
        "schema: {body: {type: array, prefixItems: []}}\n",
        "keyword 'prefixItems' at / is not supported",
        id="unsupported-keyword",
    ),
    pytest.param(
        "schema: {query: {type: object, properties: {a: {pattern: '('}}}}\n",
        "invalid JSON Schema",
        id="bad-pattern",
    ),
]


@pytest.mark.parametrize(("block", "message"), BAD)
def test_mistakes_are_reported_with_their_place(block: str, message: str, tmp_path: Path) -> None:
    """A wrong validation block is refused with the file, the key and what is expected."""
    with pytest.raises(PolicyError) as caught:
        compiled(block, tmp_path)
    text = "\n".join(caught.value.messages)
    assert message in text
    assert str(tmp_path / "policy.yaml") in text


def test_example_policy_compiles_its_schema_file() -> None:
    """config/validation.yaml loads, and its schema file beside it compiles."""
    loaded = load_policy(CONFIG / "validation.yaml")
    routes = compile_policy(loaded, generation=1, default_upstream_url="http://127.0.0.1:1").routes
    orders = routes[0].validator
    assert orders is not None and set(orders.schemas) == {"body", "query", "headers"}
    assert routes[1].validator is not None and routes[1].validator.shadow
    assert routes[2].validator is None


def test_mode_off_builds_no_validator() -> None:
    """mode: off switches the whole step off for the route (a per-route exclusion)."""
    loaded = parse_policy(
        "routes:\n  - name: r\n    validation: {mode: off, schema: {body: {type: object}}}\n"
    )
    route = compile_policy(loaded, generation=1, default_upstream_url="http://x:1").routes[0]
    assert route.validator is None

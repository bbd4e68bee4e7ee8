"""`${VAR}` and `${VAR:-default}` in the policy file."""

from __future__ import annotations

import pytest

from gateway.errors import PolicyError
from gateway.policy.loader import parse_policy
from gateway.policy.model import Policy

ROUTES = "routes: [{name: default}]\n"


def load(text: str) -> Policy:
    return parse_policy(text + ROUTES, "p.yaml").policy


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_HOST", "10.1.2.3")
    monkeypatch.setenv("GW_PORT", "8000")
    monkeypatch.setenv("GW_EMPTY", "")
    monkeypatch.setenv("GW_TIMEOUT", "250ms")
    monkeypatch.setenv("GW_CONNECTIONS", "64")
    monkeypatch.setenv("GW_RATE", "25%")
    monkeypatch.delenv("GW_UNSET", raising=False)


@pytest.mark.parametrize(
    ("written", "url"),
    [
        ('"http://${GW_HOST}:3000"', "http://10.1.2.3:3000"),
        ('"http://${GW_UNSET:-127.0.0.1}:3000"', "http://127.0.0.1:3000"),
        ('"http://${GW_EMPTY:-127.0.0.1}:3000"', "http://127.0.0.1:3000"),
        ('"http://${GW_HOST:-127.0.0.1}:3000"', "http://10.1.2.3:3000"),
        ("'http://${GW_HOST}:${GW_PORT}/base'", "http://10.1.2.3:8000/base"),
        ('"${GW_EMPTY}"', None),
        ('"${GW_UNSET:-}"', None),
    ],
    ids=[
        "set",
        "unset-default",
        "empty-default",
        "set-ignores-default",
        "twice-in-string",
        "empty-no-default",
        "unset-empty-default",
    ],
)
def test_substitution_in_strings(written: str, url: str | None) -> None:
    """A variable's value, or its default when unset or empty, takes the place of the reference."""
    assert load(f"upstream: {{url: {written}}}\n").upstream.url == url


def test_substituted_values_become_numbers_durations_and_percentages() -> None:
    """A substituted value is parsed like a written one: 64, 250ms and 25% become numbers."""
    policy = load(
        "upstream:\n  timeout: ${GW_TIMEOUT}\n  connect_timeout: ${GW_UNSET:-2s}\n"
        "  max_connections: '${GW_CONNECTIONS}'\n"
        "logging: {access: {mode: sampled, sample_rate: '${GW_RATE}'}}\n"
        "limits: {max_header_size: '${GW_UNSET:-16KiB}'}\n"
    )
    assert policy.upstream.timeout == 0.25
    assert policy.upstream.connect_timeout == 2.0
    assert policy.upstream.max_connections == 64
    assert policy.logging.access.sample_rate == 0.25
    assert policy.limits.max_header_size == 16384


def test_unset_variable_without_default_is_a_mistake() -> None:
    """`${VAR}` with VAR unset is refused at its place, not silently made empty."""
    with pytest.raises(PolicyError) as refused:
        load("upstream:\n  url: ${GW_UNSET}\n")
    assert refused.value.messages == [
        "p.yaml:2:3: upstream.url: environment variable GW_UNSET is not set"
        " (or write ${GW_UNSET:-default})"
    ]


def test_bad_substituted_value_names_its_reference() -> None:
    """A value that came from the environment says which reference produced it."""
    with pytest.raises(PolicyError) as refused:
        load("upstream:\n  max_connections: ${GW_HOST}\n")
    assert refused.value.messages == [
        "p.yaml:2:3: upstream.max_connections: Input should be a valid integer, unable to parse"
        " string as an integer, got '10.1.2.3' (the value came from '${GW_HOST}')"
    ]


def test_double_dollar_is_a_literal_reference() -> None:
    """`$${` writes a literal `${`, and the variable is not looked up."""
    policy = load("routes: [{name: a, match: {path_prefix: '/lit/$${GW_HOST}'}}]\n# ")
    assert policy.routes[0].match.path_prefix == "/lit/${GW_HOST}"


def test_unquoted_reference_in_flow_mapping_gets_a_hint() -> None:
    """`{url: ${X}}` is a YAML syntax error; the message says to quote the reference."""
    with pytest.raises(PolicyError) as refused:
        load("upstream: {url: ${GW_HOST}}\n")
    assert refused.value.messages == [
        "p.yaml:1:18: (document): invalid YAML: expected ',' or '}', but got '{'"
        " (while parsing a flow mapping that starts at 1:11);"
        " quote values that use ${VAR} inside { } or [ ]"
    ]


def test_keys_and_comments_are_not_substituted() -> None:
    """Only values are expanded: a reference in a comment needs no variable."""
    assert load("# ${GW_UNSET}\nupstream: {url: 'http://a:1'}\n").upstream.url == "http://a:1"

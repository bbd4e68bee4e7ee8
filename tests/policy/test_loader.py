"""The policy loader: one bad file per kind of mistake, each with its exact message and place."""

from __future__ import annotations

import textwrap

import pytest

from gateway.errors import PolicyError
from gateway.policy.loader import load_policy, parse_policy
from gateway.policy.model import Route
from tests.policy.conftest import BAD

# file name -> every line `gateway check` prints for it, without the leading "PATH:".
EXPECTED: dict[str, list[str]] = {
    "invalid_yaml": [
        "4:1: (document): invalid YAML: expected ',' or '}', but got '<stream end>'"
        " (while parsing a flow mapping that starts at 3:12)"
    ],
    "empty": ["1:1: (root): the policy file is empty"],
    "not_a_mapping": ["1:1: (root): the policy must be a mapping of keys"],
    "unknown_top_key": [
        "1:1: upstreams: unknown key 'upstreams' (did you mean 'upstream'?)",
    ],
    "unknown_nested_key": [
        "4:7: routes[0].match.path_prefx: unknown key 'path_prefx' (did you mean 'path_prefix'?)",
    ],
    "flow_unknown_key": [
        "2:44: routes[0].match.method: unknown key 'method' (did you mean 'methods'?)",
    ],
    "bad_duration": [
        "3:3: upstream.timeout: invalid duration 'fast' (use 250ms, 10s, 1m, 1h)",
    ],
    "bad_size": [
        "2:3: limits.max_header_size: invalid size '8 kilobytes' (use 512, 16KiB, 10MB)",
    ],
    "bad_percent": [
        "2:27: logging.access.sample_rate: invalid percentage '150%' (use 50% or 0.5)",
    ],
    "bad_listen": [
        "2:3: listen.proxy: invalid listen address '0.0.0.0' (use HOST:PORT, e.g. 0.0.0.0:8080)",
    ],
    "duplicate_key": [
        "4:3: upstream.timeout: duplicate key 'timeout' (first written on line 3)",
    ],
    "duplicate_route": [
        "4:5: routes[1].name: route name 'api' is already used by routes[0]",
    ],
    "port_twice": [
        "3:3: listen.health: port 8080 is already used by listen.proxy",
    ],
    "invalid_regex": [
        "3:13: routes[0].match.path_regex: invalid regular expression '^/users/(\\\\d+$':"
        " missing ), unterminated subpattern at position 8",
    ],
    "unknown_method": [
        "3:47: routes[0].match.methods[1]: unknown HTTP method 'FETCH' (did you mean 'PATCH'?)",
    ],
    "missing_routes": ["1:1: routes: required key is missing"],
    "wrong_type": [
        "2:3: upstream.max_connections: Input should be a valid integer,"
        " unable to parse string as an integer, got 'many'",
    ],
    "wrong_shape": [
        "1:1: upstream: should be a mapping of keys, got 'http://127.0.0.1:3000'",
        "2:1: routes: should be a list",
    ],
    "env_bad_value": [
        "2:3: upstream.timeout: invalid duration 'soon' (use 250ms, 10s, 1m, 1h)"
        " (the value came from '${GATEWAY_TEST_TIMEOUT}')",
    ],
    "env_unset": [
        "2:3: upstream.url: environment variable GATEWAY_TEST_UNSET_HOST is not set"
        " (or write ${GATEWAY_TEST_UNSET_HOST:-default})",
    ],
    "many_mistakes": [
        "3:13: routes[0].match.path_prefix: path 'api' must start with '/'",
        "6:3: listen.proxy: invalid listen address '8080' (use HOST:PORT, e.g. 0.0.0.0:8080)",
        "9:3: upstream.timeout: duplicate key 'timeout' (first written on line 8)",
        "9:3: upstream.timeout: invalid duration 'fast' (use 250ms, 10s, 1m, 1h)",
        "10:3: upstream.connect_timout: unknown key 'connect_timout'"
        " (did you mean 'connect_timeout'?)",
    ],
}


def expected_lines(name: str) -> list[str]:
    return [f"{BAD / name}.yaml:{line}" for line in EXPECTED[name]]


def test_every_fixture_has_its_expected_messages() -> None:
    """No bad fixture sits in tests/policy/bad without the messages it must produce."""
    assert sorted(path.stem for path in BAD.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.usefixtures("fixture_env")
@pytest.mark.parametrize("name", sorted(EXPECTED), ids=sorted(EXPECTED))
def test_bad_policy_is_refused_with_exact_messages(name: str) -> None:
    """Each kind of mistake is named with its file, line, column, YAML path and a plain reason."""
    with pytest.raises(PolicyError) as refused:
        load_policy(BAD / f"{name}.yaml")
    assert refused.value.messages == expected_lines(name)


@pytest.mark.usefixtures("fixture_env")
def test_mistakes_are_listed_in_file_order() -> None:
    """Mistakes come sorted by line whatever order the model's fields are checked in."""
    with pytest.raises(PolicyError) as refused:
        load_policy(BAD / "many_mistakes.yaml")
    places = [
        tuple(int(n) for n in m.split(".yaml:")[1].split(":")[:2]) for m in refused.value.messages
    ]
    assert places == sorted(places)
    assert len(places) == 5


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("routes:\n  - name: a\n    match: {path: /a, bogus: 1}\n", "3:23: routes[0].match.bogus"),
        (
            "routes:\n  - name: a\n    match:\n      path: /a\n      bogus: 1\n",
            "5:7: routes[0].match.bogus",
        ),
        ("routes: [{name: a}, {name: b, bogus: 1}]\n", "1:31: routes[1].bogus"),
        ("routes:\n- name: a\n-   name: b\n    bogus: 1\n", "4:5: routes[1].bogus"),
        ("# a comment\n\nbogus: 1\nroutes: [{name: a}]\n", "3:1: bogus"),
    ],
    ids=["flow-in-block", "block", "flow-list", "block-list-indented", "after-comments"],
)
def test_unknown_key_points_at_the_key(text: str, where: str) -> None:
    """An unknown key is reported at the line and column where the key itself is written."""
    with pytest.raises(PolicyError) as refused:
        parse_policy(text, "p.yaml")
    assert refused.value.messages[0].startswith(f"p.yaml:{where}: unknown key 'bogus'")


def test_unreadable_file_is_one_message() -> None:
    """A missing policy file is reported as one line in the same format, not a traceback."""
    with pytest.raises(PolicyError) as refused:
        load_policy(BAD / "no_such_file.yaml")
    assert refused.value.messages == [
        f"{BAD}/no_such_file.yaml:1:1: (root): cannot read the policy: No such file or directory"
    ]


def test_good_policy_loads_with_defaults_and_hash() -> None:
    """A minimal policy loads; durations and sizes are numbers; the hash names the text."""
    text = textwrap.dedent(
        """
        upstream: {url: "http://127.0.0.1:3000/", timeout: 1.5m}
        limits: {max_header_size: 16KiB}
        routes:
          - name: api
            match: {path_prefix: /api, methods: [get, post]}
        """
    )
    loaded = parse_policy(text, "p.yaml")
    policy = loaded.policy
    assert policy.upstream.url == "http://127.0.0.1:3000"
    assert policy.upstream.timeout == 90.0
    assert policy.upstream.connect_timeout == 1.0
    assert policy.limits.max_header_size == 16384
    assert policy.routes[0].match.methods == ("GET", "POST")
    assert len(loaded.sha256) == 64
    assert parse_policy(text + "\n# changed\n").sha256 != loaded.sha256


def test_anchors_merge_keys_and_extension_keys() -> None:
    """`x-` keys hold anchors, `<<:` merges them, and mistakes point where they are written."""
    text = textwrap.dedent(
        """\
        x-defaults: &defaults
          match: {path_prefix: /api}
          bogus: 1
        routes:
          - <<: *defaults
            name: api
        """
    )
    with pytest.raises(PolicyError) as refused:
        parse_policy(text, "p.yaml")
    assert refused.value.messages == [
        "p.yaml:3:3: routes[0].bogus: unknown key 'bogus' (use one of: "
        + ", ".join(sorted(Route.model_fields))
        + ")"
    ]
    good = parse_policy(text.replace("  bogus: 1\n", ""), "p.yaml").policy
    assert good.routes[0].match.path_prefix == "/api"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("routes: &x [*x]\n", ["p.yaml:1:9: routes[0]: an alias contains itself"]),
        (
            "? [a, b]\n: 1\nroutes: [{name: a}]\n",
            ["p.yaml:1:3: (root): a key must be a plain word"],
        ),
        (
            "routes: [{name: a}]\n---\nroutes: [{name: b}]\n",
            [
                "p.yaml:2:1: (document): invalid YAML: expected a single document in the stream"
                " (from 1:1), but found another document"
            ],
        ),
        ("routes: []\n", ["p.yaml:1:1: routes: needs at least 1 item"]),
        ("routes: [{name: a}]\nversion: 2\n", ["p.yaml:2:1: version: Input should be 1, got 2"]),
    ],
    ids=["recursive-alias", "complex-key", "two-documents", "no-routes", "wrong-version"],
)
def test_odd_yaml_gets_a_clear_message(text: str, expected: list[str]) -> None:
    """YAML constructs the policy cannot use are named, never a traceback."""
    with pytest.raises(PolicyError) as refused:
        parse_policy(text, "p.yaml")
    assert refused.value.messages == expected

"""Fuzzing the policy loader and the header handling: no input raises anything unplanned."""

from __future__ import annotations

import contextlib
import copy
import ipaddress
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from gateway.errors import PolicyError
from gateway.policy.loader import parse_policy
from gateway.policy.model import Policy
from gateway.ratelimit.identity import group_ip, group_ipv4, jwt_claim
from gateway.ratelimit.keys import compose
from gateway.runtime import compile_policy
from gateway.upstream.headers import HOP_BY_HOP, client_address, downstream_fields, upstream_fields

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,  # keep the working tree clean; a failure prints its example anyway
    suppress_health_check=[HealthCheck.too_slow],
)

BASE: dict[str, Any] = {
    "upstream": {"url": "http://127.0.0.1:3000", "timeout": "5s"},
    "store": {"url": "memory://", "on_error": "local"},
    "forwarding": {"trusted_proxies": ["10.0.0.0/8"]},
    "limits": {"max_header_size": "8KiB", "header_timeout": "10s"},
    "errors": {"sinks": [{"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/h"}]},
    "routes": [
        {
            "name": "api",
            "match": {"path_prefix": "/api", "methods": ["GET", "POST"]},
            "rate_limit": [{"name": "per-ip", "limit": 10, "window": "1m"}],
            "circuit_breaker": {"min_calls": 5, "open_for": "10s"},
            "retry": {"attempts": 2},
            "timeout": {"per_try": "1s"},
            "validation": {"max_body": "1KiB", "json": {"max_depth": 8}},
        },
        {"name": "default", "match": {"path_prefix": "/"}},
    ],
}


def _vocabulary() -> list[str]:
    """Every key the policy's JSON Schema names (attack detection left out: not in the pipeline)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "properties" and isinstance(value, dict):
                    found.update(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(Policy.model_json_schema())
    return sorted(found - {"attacks"})


KEYS = _vocabulary()
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(
        ["0s", "250ms", "1e9h", "-1s", "50%", "101%", "1KiB", "10EB", "${NOPE}", "${X:-5s}",
         "*", "redis://127.0.0.1:1/0", "http://[::1]:0", "GET", "rate(5xx) > 1/min", "(", "$.a"]
    )
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner),
    max_leaves=8,
)


@st.composite
def mutated_policies(draw: st.DrawFn) -> str:
    """The base policy with a few places replaced, removed or added to."""
    document = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        node: Any = document
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            child = node[key]
            if isinstance(child, dict | list) and child and draw(st.booleans()):
                node = child
                continue
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "delete":
                del node[key]
            elif action == "add" and isinstance(node, dict):
                node[draw(st.sampled_from(KEYS))] = draw(VALUES)
            else:
                node[key] = draw(VALUES)
            break
    return yaml.safe_dump(document)


def load_and_compile(text: str) -> None:
    try:
        loaded = parse_policy(text, "fuzz.yaml")
    except PolicyError as exc:
        assert exc.messages and all(m.startswith("fuzz.yaml:") for m in exc.messages)
        return
    with contextlib.suppress(PolicyError):  # what only compiling finds (e.g. a schema file)
        compile_policy(loaded, generation=1, default_upstream_url="http://127.0.0.1:9")


@SETTINGS
@given(mutated_policies())
def test_mutated_policy_is_loaded_or_refused_with_messages(text: str) -> None:
    """Any variation of a real policy either loads and compiles, or is refused with file:line
    messages: never another exception."""
    load_and_compile(text)


@SETTINGS
@given(st.text(max_size=300))
def test_any_text_is_loaded_or_refused_with_messages(text: str) -> None:
    """Arbitrary text as a policy file is refused with messages, never with a crash."""
    load_and_compile(text)


YAML_BITS = st.sampled_from(
    ["routes:", "- name: a", "  match: {path_prefix: /}", "&a", "*a", "<<: *a", "!!python/name:os",
     "? [a]", ": b", "---", "...", "%YAML 1.1", "{", "[", "'", '"', "\t", "x-anchor: &b {}",
     "listen: {proxy: '1:1'}", "routes: [{name: a}]", "routes: *b", "!!binary aGk="]
)  # fmt: skip


@SETTINGS
@given(st.lists(YAML_BITS, max_size=12))
def test_yaml_shaped_garbage_is_refused_with_messages(lines: list[str]) -> None:
    """Anchors, aliases, tags, merge keys and broken flow collections never crash the loader."""
    load_and_compile("\n".join(lines))


HEADER_NAMES = st.sampled_from(
    ["Connection", "Keep-Alive", "TE", "Transfer-Encoding", "Upgrade", "Host", "Content-Length",
     "X-Forwarded-For", "X-Forwarded-Proto", "Authorization", "Cookie", "X-Custom", "Expect"]
) | st.from_regex(r"\A[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}\Z")  # fmt: skip
AT = {"request_id": "rid", "host": "app:80"}
FORWARDING = ["X-Forwarded-For", "x-forwarded-proto", "X-Forwarded-Host", "X-Request-Id", "host"]
HEADER_VALUES = st.text(max_size=60) | st.sampled_from(
    [
        "close, X-Custom",
        "keep-alive, Upgrade, te",
        ",,, ,",
        "Bearer a.b.c",
        "\udcff\udcfe",
        "\ud800 x",
    ]
)


# The forwarding rules written over a header map, as the proxy once applied them: the model
# that the one-pass functions over field lists are held to.
def end_to_end(headers: CIMultiDict[str], *, downstream: bool) -> CIMultiDict[str]:
    dropped = set(HOP_BY_HOP) | {"content-length"} | (set() if downstream else {"expect", "host"})
    for value in headers.getall("Connection", ()):
        dropped |= {t.strip().lower() for t in value.split(",") if t.strip()}
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        if name.lower() not in dropped:
            out.add(name, value)
    return out


def add_forwarded(
    headers: CIMultiDict[str], *, peer: str | None, scheme: str, host: str | None, trusted: bool
) -> None:
    prior = ", ".join(headers.getall("X-Forwarded-For", ()))
    if peer:
        headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    if not (trusted and "X-Forwarded-Proto" in headers):
        headers["X-Forwarded-Proto"] = scheme
    if host and not (trusted and "X-Forwarded-Host" in headers):
        headers["X-Forwarded-Host"] = host


@SETTINGS
@given(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=12), st.booleans())
def test_end_to_end_headers_never_carry_hop_by_hop_fields(
    headers: list[tuple[str, str]], downstream: bool
) -> None:
    """Whatever headers arrive, none of the hop-by-hop ones (nor those Connection names) travel."""
    given_headers = CIMultiDict(headers)
    named = {
        token.strip().lower()
        for value in given_headers.getall("Connection", ())
        for token in value.split(",")
    }
    out = end_to_end(given_headers, downstream=downstream)
    assert not {name.lower() for name in out} & (HOP_BY_HOP | named)


@SETTINGS
@given(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=12))
def test_a_response_keeps_the_fields_the_header_map_would_keep(
    fields: list[tuple[str, str]],
) -> None:
    """The proxy forwards a response's fields from their list (downstream_fields): the same
    fields, in the same order, as the header map end_to_end keeps, and the first length."""
    kept, names, length = downstream_fields(list(fields))
    given_headers = CIMultiDict(fields)
    assert kept == list(end_to_end(given_headers, downstream=True).items())
    assert names == {name.lower() for name, _ in kept}
    assert length == given_headers.get("Content-Length")


@SETTINGS
@given(
    st.lists(st.tuples(HEADER_NAMES | st.sampled_from(FORWARDING), HEADER_VALUES), max_size=12),
    st.none() | st.sampled_from(["10.1.2.3", "::1"]),
    st.booleans(),
)
def test_a_request_goes_upstream_with_the_fields_the_header_map_would_give(
    fields: list[tuple[str, str]], peer: str | None, trusted: bool
) -> None:
    """The proxy builds the upstream request's fields in one pass (upstream_fields): the same
    fields as end_to_end, add_forwarded and our X-Request-ID and Host set in a header map, and
    those it keeps in the order they came."""
    given_headers = CIMultiDict(fields)
    mapped = end_to_end(given_headers, downstream=False)
    add_forwarded(mapped, peer=peer, scheme="http", host=given_headers.get("Host"), trusted=trusted)
    mapped["X-Request-ID"] = AT["request_id"]
    mapped["Host"] = AT["host"]
    out = upstream_fields(fields, peer=peer, scheme="http", peer_trusted=trusted, **AT)
    assert sorted(out) == sorted(mapped.items())
    ours = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id", "host"}
    assert [f for f in out if f[0].lower() not in ours] == [
        f for f in mapped.items() if f[0].lower() not in ours
    ]


ADDRESSES = st.text(max_size=40) | st.ip_addresses().map(str) | st.sampled_from(
    ["[::1]:80", "1.2.3.4:5", "::ffff:10.0.0.1", "10.0.0.1, 10.0.0.2", "unknown", "[zz]", ":"]
)  # fmt: skip
NETWORKS = st.lists(
    st.sampled_from(["10.0.0.0/8", "127.0.0.0/8", "::1/128", "::ffff:0:0/96", "0.0.0.0/0"]),
    max_size=3,
).map(lambda nets: tuple(ipaddress.ip_network(n) for n in nets))


@SETTINGS
@given(st.none() | ADDRESSES, st.none() | ADDRESSES, NETWORKS)
def test_client_address_always_names_someone(
    peer: str | None, forwarded_for: str | None, trusted: tuple[Any, ...]
) -> None:
    """Any peer and X-Forwarded-For yield a client address string; a forged header from an
    untrusted peer is never believed."""
    client = client_address(peer, forwarded_for, trusted)
    assert isinstance(client, str) and client
    if not trusted and peer is not None and forwarded_for:
        assert forwarded_for.strip() == client or client != forwarded_for.split(",")[-1].strip()
    fields = [("X-Forwarded-For", forwarded_for)] if forwarded_for is not None else []
    sent = dict(upstream_fields(fields, peer=peer, scheme="http", peer_trusted=False, **AT))
    assert sent["X-Forwarded-Proto"] == "http"


@SETTINGS
@given(HEADER_VALUES, st.text(max_size=10), st.none() | st.binary(max_size=8))
def test_jwt_claim_of_any_authorization_is_a_string_or_none(
    authorization: str, claim: str, secret: bytes | None
) -> None:
    """Garbled bearer tokens give no claim instead of an error."""
    value = jwt_claim({"Authorization": authorization}, claim, secret)
    assert value is None or isinstance(value, str)


@SETTINGS
@given(st.lists(st.none() | HEADER_VALUES | ADDRESSES, min_size=1, max_size=3))
def test_rate_limit_keys_are_short_printable_utf8(values: list[str | None]) -> None:
    """Any client-supplied key part (a header, an address) gives a short key Redis can store."""
    key = compose("gw", values)
    assert len(key) < 64 + 90 * len(values)
    key.encode("utf-8")  # redis-py encodes keys strictly
    assert all(group_ip(v) is not None for v in values if v is not None)
    assert all(group_ipv4(v, 24) is not None for v in values if v is not None)

"""The one key composer: every counter key in every store is `compose`'s text."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence

from gateway.ratelimit.identity import RequestFacts, group_ip, group_ipv4, jwt_claim

ANONYMOUS = "(anonymous)"
"""The bucket of requests that lack a key part: they are counted together, never skipped."""

# Client-supplied values may be long or contain our separators, or Redis Cluster's hash-tag
# braces; those are replaced by a digest so a key stays short and unambiguous. Header bytes
# that are not UTF-8 arrive as lone surrogates, which no store can encode: digested too.
_PLAIN = re.compile(r"^[^|{}\s\ud800-\udfff]{1,64}$")

KNOWN_KEYS = 4096
"""How many single-part keys a rule remembers (their text is the same each time)."""

Part = Callable[[RequestFacts], str | None]
KeyFunction = Callable[[RequestFacts], str]


_plain = _PLAIN.match


def _safe(value: str | None) -> str:
    if not value:
        return ANONYMOUS
    if _plain(value):
        return value
    # Lone surrogates (undecodable header bytes, a JWT claim's "\ud800") are kept as such.
    raw = value.encode("utf-8", "surrogatepass")
    return "#" + hashlib.blake2b(raw, digest_size=12).hexdigest()


def compose(namespace: str, values: Sequence[str | None]) -> str:
    """`rl:{namespace|v1|v2}`; the braces keep a rule's window keys in one cluster slot."""
    return "rl:{" + namespace + "|" + "|".join(_safe(v) for v in values) + "}"


def rule_prefix(namespace: str) -> str:
    """The prefix shared by every key of one rule (admin resets)."""
    return "rl:{" + namespace + "|"


def _part(spec: str, jwt_secret: bytes | None) -> Part:
    if spec == "client_ip":
        return lambda facts: group_ip(facts.client_ip)
    if spec.startswith("client_ip/"):
        prefix = int(spec.partition("/")[2])
        return lambda facts: group_ipv4(group_ip(facts.client_ip, min(prefix, 128)), prefix)
    if spec == "route":
        return lambda facts: facts.route
    if spec == "method":
        return lambda facts: facts.method
    if spec == "path":
        return lambda facts: facts.path
    kind, _, name = spec.partition(":")
    if kind == "header":
        return lambda facts: facts.headers.get(name)
    if kind == "jwt":
        return lambda facts: jwt_claim(facts.headers, name, jwt_secret)
    raise ValueError(f"unknown key part {spec!r}")  # the policy model refuses these first


def reads_headers(spec: Sequence[str]) -> bool:
    """Whether a key of these parts reads the request's header fields (a header, a JWT claim)."""
    return any(part.partition(":")[0] in ("header", "jwt") for part in spec)


def compile_key(
    namespace: str, spec: Sequence[str], jwt_secret: bytes | None = None
) -> KeyFunction:
    """Bind the key's parts once; per request only the values are read."""
    parts = tuple(_part(s, jwt_secret) for s in spec)
    # The same text as `compose`, with the constant head joined once rather than per request.
    head = rule_prefix(namespace)
    if len(parts) == 1:
        only = parts[0]
        # The same few clients come again and again: their keys are remembered, up to a bound
        # (a flood of new clients empties the memory rather than growing it).
        known: dict[str | None, str] = {}

        def single(facts: RequestFacts) -> str:
            value = only(facts)
            key = known.get(value)
            if key is None:
                if len(known) >= KNOWN_KEYS:
                    known.clear()
                key = known[value] = head + _safe(value) + "}"
            return key

        return single
    return lambda facts: head + "|".join([_safe(part(facts)) for part in parts]) + "}"

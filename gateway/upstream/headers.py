"""Header rewriting between client and upstream: hop-by-hop removal and X-Forwarded-*."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from typing import Final

# RFC 9110 §7.6.1, plus Proxy-Connection (a legacy non-standard spelling that must never travel).
# Expect is answered by our own server (it sends 100 Continue), so it must not travel either.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade"}
)
_NOT_FORWARDED_UPSTREAM: Final = HOP_BY_HOP | {"expect", "host", "content-length"}
_NOT_FORWARDED_DOWNSTREAM: Final = HOP_BY_HOP | {"content-length"}

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def field_text(raw: bytes) -> str:
    """A field's name or value as text, as aiohttp's parser makes it: UTF-8, undecodable bytes
    kept as surrogates. The strict decode first: compiled, it is a direct call, where one with
    an error handler looks the codec up by name each time."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "surrogateescape")


_TOKENS: Final[dict[str, frozenset[str]]] = {}
"""Connection values met so far, expanded: a peer sends the same one on every message."""


def _connection_tokens(value: str) -> frozenset[str]:
    """The field names a Connection value lists, lower-cased.

    Remembered in a plain dict, up to a bound (a flood of new values empties it rather than
    growing it): compiled, its lookup is a direct call, where lru_cache's cost 700 instructions."""
    tokens = _TOKENS.get(value)
    if tokens is None:
        if len(_TOKENS) >= 256:
            _TOKENS.clear()
        tokens = _TOKENS[value] = frozenset(
            t.strip().lower() for t in value.split(",") if t.strip()
        )
    return tokens


Fields = list[tuple[str, str]]
"""Header fields as they travel: (name, value) pairs in order, names as sent."""


def upstream_fields(
    fields: Fields,
    *,
    peer: str | None,
    scheme: str,
    peer_trusted: bool,
    request_id: str,
    host: str,
) -> Fields:
    """The request's fields as they go upstream, in one pass over them as they came: the
    end-to-end ones (hop-by-hop fields and those Connection names dropped, Host and
    Content-Length too: each side's HTTP layer sets its own), X-Forwarded-For with the peer
    appended, X-Forwarded-Proto and -Host as nginx sets them (kept as sent only from a trusted
    peer), our X-Request-ID, and `host` as Host. tests/chaos/test_fuzz.py holds it to the same
    rules written over a header map."""
    dropped = _NOT_FORWARDED_UPSTREAM
    lowered: list[str] = []
    client_host: str | None = None  # for X-Forwarded-Host: the first Host the client sent
    for field in fields:
        lower = field[0].lower()
        lowered.append(lower)
        if lower == "connection":
            tokens = _connection_tokens(field[1])
            if not tokens <= dropped:  # keep-alive and close are dropped anyway
                dropped = dropped | tokens
        elif lower == "host" and client_host is None:
            client_host = field[1]
    kept: Fields = []
    prior: list[str] = []  # X-Forwarded-For hops so far
    has_proto = has_host = False
    for index, field in enumerate(fields):
        lower = lowered[index]
        if lower in dropped or lower == "x-request-id":
            continue
        if lower == "x-forwarded-for" and peer:
            prior.append(field[1])
            continue
        if lower == "x-forwarded-proto":
            if not peer_trusted:
                continue  # ours replaces what an untrusted peer claims
            has_proto = True
        elif lower == "x-forwarded-host":
            if client_host and not peer_trusted:
                continue
            has_host = True
        kept.append(field)
    if peer:
        hops = ", ".join(prior)
        kept.append(("X-Forwarded-For", f"{hops}, {peer}" if hops else peer))
    if not has_proto:
        kept.append(("X-Forwarded-Proto", scheme))
    if client_host and not has_host:
        kept.append(("X-Forwarded-Host", client_host))
    kept.append(("X-Request-ID", request_id))
    kept.append(("Host", host))
    return kept


def set_field(fields: Fields, name: str, value: str) -> None:
    """Set `name` to `value` alone, in place of any field of that name (any case)."""
    lower = name.lower()
    fields[:] = [field for field in fields if field[0].lower() != lower]
    fields.append((name, value))


def downstream_fields(fields: Fields) -> tuple[Fields, set[str], str | None]:
    """The end-to-end fields of a response (hop-by-hop ones, those Connection names and
    Content-Length dropped), as a list in their order; their lower-case names; and the
    Content-Length the upstream gave (None without one).

    One pass over the fields as they came, where building a header map of them and copying
    it into another cost a map and a folded name per field twice over."""
    kept: Fields = []
    names: set[str] = set()
    length: str | None = None
    listed: frozenset[str] | None = None  # names a Connection field lists beyond the usual
    for field in fields:
        lower = field[0].lower()
        if lower in _NOT_FORWARDED_DOWNSTREAM:
            if lower == "content-length":
                if length is None:
                    length = field[1]
            elif lower == "connection":
                tokens = _connection_tokens(field[1])
                if not tokens <= _NOT_FORWARDED_DOWNSTREAM:
                    listed = tokens if listed is None else listed | tokens
            continue
        kept.append(field)
        names.add(lower)
    if listed is not None and not names.isdisjoint(listed):
        kept = [field for field in kept if field[0].lower() not in listed]
        names -= listed
    return kept, names, length


def parse_networks(networks: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in networks)


# Parsing costs microseconds and runs twice a request; peers repeat (a sidecar sees one).
@functools.lru_cache(maxsize=4096)
def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    # A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d; IPv4 trusted ranges must match them.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: tuple[IPNetwork, ...]
) -> str:
    """The client's address: the right-most X-Forwarded-For hop not added by a trusted proxy.

    X-Forwarded-For is only believed when the direct peer is itself trusted; anyone can send
    the header, so from an untrusted peer it is ignored.
    """
    peer_ip = _parse_ip(peer) if peer else None
    if peer_ip is None:
        return peer or "unknown"
    if not forwarded_for or not _is_trusted(peer_ip, trusted):
        return str(peer_ip)
    client = peer_ip
    for hop in reversed(forwarded_for.split(",")):
        hop_ip = _parse_ip(hop)
        if hop_ip is None:
            break  # a garbled hop: stop believing what is left of it
        client = hop_ip
        if not _is_trusted(hop_ip, trusted):
            break
    return str(client)


def _is_trusted(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted: tuple[IPNetwork, ...]
) -> bool:
    return any(ip in network for network in trusted)


def peer_facts(peer: str | None, trusted: tuple[IPNetwork, ...]) -> tuple[str, bool]:
    """The peer's address as `client_address` names it, and whether it is a trusted proxy."""
    peer_ip = _parse_ip(peer) if peer else None
    if peer_ip is None:
        return peer or "unknown", False
    return str(peer_ip), _is_trusted(peer_ip, trusted)

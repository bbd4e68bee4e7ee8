"""Header rewriting between client and upstream: hop-by-hop removal and X-Forwarded-*."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from multidict import CIMultiDict, CIMultiDictProxy

# RFC 9110 §7.6.1, plus Proxy-Connection (a legacy non-standard spelling that must never travel).
# Expect is answered by our own server (it sends 100 Continue), so it must not travel either.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade"}
)
_NOT_FORWARDED_UPSTREAM = HOP_BY_HOP | {"expect", "host", "content-length"}
_NOT_FORWARDED_DOWNSTREAM = HOP_BY_HOP | {"content-length"}

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# A peer sends the same Connection value on every message ("keep-alive", mostly).
@functools.lru_cache(maxsize=256)
def _connection_tokens(value: str) -> frozenset[str]:
    """The field names a Connection value lists, lower-cased."""
    return frozenset(t.strip().lower() for t in value.split(",") if t.strip())


def end_to_end(
    headers: CIMultiDictProxy[str] | CIMultiDict[str], *, downstream: bool
) -> CIMultiDict[str]:
    """Copy the headers that travel end to end, dropping hop-by-hop ones and those Connection names.

    Content-Length and Host are dropped too: the HTTP layer on each side recomputes them.
    """
    dropped = _NOT_FORWARDED_DOWNSTREAM if downstream else _NOT_FORWARDED_UPSTREAM
    for value in headers.getall("Connection", ()):
        tokens = _connection_tokens(value)
        if not tokens <= dropped:  # keep-alive and close are dropped anyway
            dropped = dropped | tokens
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        if name.lower() not in dropped:
            out.add(name, value)
    return out


def downstream_fields(
    fields: list[tuple[str, str]],
) -> tuple[list[tuple[str, str]], set[str], str | None]:
    """What `end_to_end(..., downstream=True)` keeps of a response's fields, as a list in their
    order; their lower-case names; and the Content-Length the upstream gave (None without one).

    One pass over the fields as they came, where building a header map of them and copying
    it into another cost a map and a folded name per field twice over."""
    kept: list[tuple[str, str]] = []
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


def add_forwarded(
    headers: CIMultiDict[str],
    *,
    peer: str | None,
    scheme: str,
    host: str | None,
    peer_trusted: bool,
) -> None:
    """Append the peer to X-Forwarded-For and set X-Forwarded-Proto/Host, as nginx does."""
    prior = ", ".join(headers.getall("X-Forwarded-For", ()))
    if peer:
        headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    if not (peer_trusted and "X-Forwarded-Proto" in headers):
        headers["X-Forwarded-Proto"] = scheme
    if host and not (peer_trusted and "X-Forwarded-Host" in headers):
        headers["X-Forwarded-Host"] = host


def peer_facts(peer: str | None, trusted: tuple[IPNetwork, ...]) -> tuple[str, bool]:
    """The peer's address as `client_address` names it, and whether it is a trusted proxy."""
    peer_ip = _parse_ip(peer) if peer else None
    if peer_ip is None:
        return peer or "unknown", False
    return str(peer_ip), _is_trusted(peer_ip, trusted)

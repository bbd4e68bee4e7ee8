"""The SSRF guard: URL fields must name a public host over an allowed scheme.

Only the URL text is judged; names are not resolved (the upstream resolves them later, so a
check here could be raced by DNS rebinding anyway). Names that are internal by convention are
refused, and every spelling of an IP literal that inet_aton accepts (127.1, 0x7f000001,
2130706433) is normalised first.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.errors import UnsafeUrl
from gateway.policy.validation import Ssrf
from gateway.validation.paths import FieldPath, Location, form_names, pointer

_INTERNAL_NAMES = frozenset({"localhost", "metadata", "instance-data", "metadata.google.internal"})
_INTERNAL_SUFFIXES = (".localhost", ".internal", ".local", ".localdomain")
_LEGACY_IPV4 = re.compile(r"^[0-9a-fx.]+$")
# WHATWG parsers read `\` as `/` and drop tabs and newlines; urlsplit does not: refuse them.
_AMBIGUOUS = re.compile(r"[\\\s\x00-\x1f\x7f]")


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LEGACY_IPV4.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def unsafe_reason(url: str, schemes: frozenset[str], allow_hosts: frozenset[str]) -> str | None:
    """Why this URL must not be fetched by the upstream, or None when it may."""
    if _AMBIGUOUS.search(url):
        return "the URL holds a backslash, whitespace or a control character"
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "the URL cannot be parsed"
    if parts.scheme.lower() not in schemes:
        return f"the scheme must be one of {', '.join(sorted(schemes))}"
    if not host:
        return "the URL names no host"
    host = host.rstrip(".")
    if host in allow_hosts:
        return None
    if host in _INTERNAL_NAMES or host.endswith(_INTERNAL_SUFFIXES):
        return "the host name is internal"
    address = _address(host.partition("%")[0])
    if address is None:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not address.is_global or address.is_multicast:
        return "the address is loopback, private, link-local, metadata or otherwise not public"
    return None


@dataclass(frozen=True, slots=True)
class SsrfGuard:
    """The declared URL fields of one route and what they may point at."""

    paths: tuple[FieldPath, ...]
    schemes: frozenset[str]
    allow_hosts: frozenset[str]
    excluded: tuple[FieldPath, ...] = ()
    form_fields: frozenset[str] = frozenset()

    @classmethod
    def build(cls, policy: Ssrf, excluded: tuple[FieldPath, ...]) -> SsrfGuard:
        paths = tuple(FieldPath.compile(text) for text in policy.fields)
        return cls(
            paths=paths,
            schemes=frozenset(s.lower() for s in policy.schemes),
            allow_hosts=frozenset(h.lower().rstrip(".") for h in policy.allow_hosts),
            excluded=excluded,
            form_fields=form_names(paths, excluded),
        )

    def check_document(self, document: object) -> None:
        for path in self.paths:
            for location, container, key in path.find(document):
                if any(ex.matches(location) for ex in self.excluded):
                    continue
                value = container[key]
                if isinstance(value, str):
                    self.check_value(value, location)

    def check_value(self, value: str, location: Location) -> None:
        reason = unsafe_reason(value, self.schemes, self.allow_hosts)
        if reason is not None:
            raise UnsafeUrl(
                f"{pointer(location)}: {reason}",
                extensions={
                    "check": "ssrf",
                    "pointer": pointer(location),
                    "expected": "an absolute URL to a public host",
                },
            )

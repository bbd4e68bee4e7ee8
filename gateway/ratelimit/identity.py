"""Who a request comes from, as key parts: the client address, a header, a JWT claim.

JWT claims are read WITHOUT verifying the signature unless the rule sets `jwt_hs256_secret`:
the gateway only uses them to choose a counter, never to grant access, but an unverified claim
lets a client spread itself over many buckets by forging it. With a secret, only HS256 tokens
whose signature verifies give their claim; any other token counts as anonymous. Expiry is not
checked: a genuinely signed token still names its holder.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
from collections.abc import Mapping
from typing import NamedTuple


class RequestFacts(NamedTuple):
    """What a key may be made of; the middleware fills it from the request."""

    route: str
    client_ip: str
    method: str
    path: str
    headers: Mapping[str, str]


def group_ip(address: str, ipv6_prefix: int = 64) -> str:
    """IPv4 as is; IPv6 folded to its network, because one client owns a whole /64."""
    if ":" not in address:
        return address
    try:
        network = ipaddress.IPv6Network(f"{address}/{ipv6_prefix}", strict=False)
    except ValueError:
        return address
    return str(network)


def group_ipv4(address: str, prefix: int) -> str:
    if ":" in address or prefix >= 32:
        return address
    try:
        return str(ipaddress.IPv4Network(f"{address}/{prefix}", strict=False))
    except ValueError:
        return address


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _verified(header: str, payload: str, signature: str, secret: bytes) -> bool:
    try:
        if json.loads(_b64(header)).get("alg") != "HS256":
            return False
        expected = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return hmac.compare_digest(expected, _b64(signature))
    except (binascii.Error, ValueError, AttributeError):
        return False


def jwt_claim(headers: Mapping[str, str], claim: str, secret: bytes | None = None) -> str | None:
    """The claim of the bearer token's payload; None when absent, garbled or (with a secret)
    not signed with it."""
    authorization = headers.get("Authorization")
    if not authorization or authorization[:7].lower() != "bearer ":
        return None
    parts = authorization[7:].strip().split(".")
    if len(parts) != 3:
        return None
    payload = parts[1]
    if secret is not None and not _verified(parts[0], payload, parts[2], secret):
        return None
    try:
        data = json.loads(_b64(payload))
    except (binascii.Error, ValueError):
        return None
    value = data.get(claim) if isinstance(data, dict) else None
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)

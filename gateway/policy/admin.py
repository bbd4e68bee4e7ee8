"""The policy's `admin:` block: who may use the admin port when it listens beyond loopback."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator

from gateway.policy.types import Model

MIN_TOKEN_LENGTH = 16


def is_loopback_host(host: str) -> bool:
    """`localhost`, 127.0.0.0/8 and ::1; anything else (0.0.0.0 included) reaches the network."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a host name may resolve anywhere
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


class Admin(Model):
    """The admin port's access control."""

    token: str | None = Field(
        default=None,
        description="Bearer token the admin port requires (write it as "
        '"${GATEWAY_ADMIN_TOKEN}"); required when listen.admin is not a loopback address.',
    )

    @field_validator("token", mode="before")
    @classmethod
    def _strong_enough(cls, value: object) -> object:
        if value == "":
            return None  # `token: "${GATEWAY_ADMIN_TOKEN:-}"` with the variable unset
        if isinstance(value, str) and len(value) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the admin token must have at least {MIN_TOKEN_LENGTH} characters")
        return value

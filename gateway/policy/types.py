"""Annotated field types shared by every policy model: durations, sizes, percentages, addresses."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema

from gateway.units import parse_duration, parse_percent, parse_size

Seconds = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h|d)$"},
                {"type": "number", "minimum": 0},
            ],
            "description": "A duration: 250ms, 10s, 1m, 1h, 1d, or seconds as a number.",
        }
    ),
]
"""A duration in seconds, written in the policy as 250ms, 10s, 1m, 1h or 1d."""

Bytes = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\d+(\.\d+)?(B|KB|MB|GB|KiB|MiB|GiB)?$"},
                {"type": "integer", "minimum": 0},
            ],
            "description": "A size in bytes: 512, 16KiB, 10MB.",
        }
    ),
]
"""A size in bytes, written in the policy as 512, 16KiB or 10MB."""

Fraction = Annotated[
    float,
    BeforeValidator(parse_percent),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\d+(\.\d+)?%$"},
                {"type": "number", "minimum": 0, "maximum": 1},
            ],
            "description": "A percentage: 50% or 0.5.",
        }
    ),
]
"""A fraction in [0, 1], written in the policy as 50% or 0.5."""


def _parse_network(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"invalid network {value!r} (use 10.0.0.0/8 or 127.0.0.1)")
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise ValueError(f"invalid network {value!r} (use 10.0.0.0/8 or 127.0.0.1)") from None


Network = Annotated[str, BeforeValidator(_parse_network)]
"""An IP network in CIDR notation; a bare address means a /32 or /128."""


class Model(BaseModel):
    """Base of every policy model: immutable, and unknown keys are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

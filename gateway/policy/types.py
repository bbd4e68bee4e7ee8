"""Annotated field types shared by every policy model: durations, sizes, percentages, addresses."""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Iterable
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema

from gateway.units import (
    DURATION_PATTERN,
    PERCENT_PATTERN,
    SIZE_PATTERN,
    parse_duration,
    parse_percent,
    parse_size,
)

HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"}
)


def suggest(word: str, known: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for a near miss, else the list of what is allowed."""
    choices = sorted(known)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (use one of: {', '.join(choices)})" if choices else ""


Seconds = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": DURATION_PATTERN},
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
                {"type": "string", "pattern": SIZE_PATTERN},
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
                {"type": "string", "pattern": PERCENT_PATTERN},
                {"type": "number", "minimum": 0, "maximum": 1},
            ],
            "description": "A percentage: 50% or 0.5.",
        }
    ),
]
"""A fraction in [0, 1], written in the policy as 50% or 0.5."""


def _parse_method(value: object) -> str:
    method = value.upper() if isinstance(value, str) else ""
    if method not in HTTP_METHODS:
        raise ValueError(f"unknown HTTP method {value!r}{suggest(method, HTTP_METHODS)}")
    return method


HttpMethod = Annotated[
    str,
    BeforeValidator(_parse_method),
    WithJsonSchema({"type": "string", "description": "An HTTP method: GET, POST, ..."}),
]
"""An HTTP method, upper-cased; a method HTTP does not define is refused where it is written."""


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

"""Parsing of the human units the policy file speaks: durations and byte sizes."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$")
_SIZE_BYTES = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
}


def parse_duration(value: object) -> float:
    """Return seconds for `250ms`, `10s`, `1m`, `1h`, `1d`, or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r} (use 250ms, 10s, 1m, 1h)")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"invalid duration {value!r}: must not be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _DURATION_SECONDS[match.group(2)]
    raise ValueError(f"invalid duration {value!r} (use 250ms, 10s, 1m, 1h)")


def parse_size(value: object) -> int:
    """Return bytes for `512`, `16KiB`, `10MB`, `1GiB`."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r} (use 512, 16KiB, 10MB)")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid size {value!r}: must not be negative")
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            return int(float(match.group(1)) * _SIZE_BYTES[match.group(2)])
    raise ValueError(f"invalid size {value!r} (use 512, 16KiB, 10MB)")


def parse_percent(value: object) -> float:
    """Return a fraction in [0, 1] for `50%`, or a bare fraction such as 0.5."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            fraction = float(value.strip()[:-1]) / 100.0
        except ValueError:
            fraction = -1.0
    elif isinstance(value, int | float) and not isinstance(value, bool):
        fraction = float(value)
    else:
        fraction = -1.0
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"invalid percentage {value!r} (use 50% or 0.5)")
    return fraction

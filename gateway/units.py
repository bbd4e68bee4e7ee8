"""Parsing of the human units the policy file speaks: durations, byte sizes and percentages.

Each regular expression here is also the pattern of the JSON Schema that `gateway schema`
prints, so an editor accepts exactly what the loader accepts.
"""

from __future__ import annotations

import math
import re

DURATION_PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$"
SIZE_PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$"
PERCENT_PATTERN = r"^\s*(100(?:\.0+)?|\d{1,2}(?:\.\d+)?)\s*%\s*$"  # 0% to 100%

_DURATION = re.compile(DURATION_PATTERN)
_SIZE = re.compile(SIZE_PATTERN)
_PERCENT = re.compile(PERCENT_PATTERN)
_DURATION_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
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
    # bool is an int to Python, but `timeout: yes` is a mistake, not one second.
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0 or not math.isfinite(value):
            raise ValueError(f"invalid duration {value!r}: must be a finite number >= 0")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _DURATION_SECONDS[match.group(2)]
    raise ValueError(f"invalid duration {value!r} (use 250ms, 10s, 1m, 1h)")


def parse_size(value: object) -> int:
    """Return bytes for `512`, `16KiB`, `10MB`, `1GiB`."""
    if isinstance(value, int) and not isinstance(value, bool):
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
    fraction = -1.0
    if isinstance(value, str):
        match = _PERCENT.match(value)
        if match:
            fraction = float(match.group(1)) / 100.0
    elif isinstance(value, int | float) and not isinstance(value, bool):
        fraction = float(value)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"invalid percentage {value!r} (use 50% or 0.5)")
    return fraction

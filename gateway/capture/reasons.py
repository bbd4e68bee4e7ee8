"""The capture vocabulary: categories, and the mapping of every rejection reason onto one."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Final

from gateway.errors import BadRequest, Rejection

CATEGORIES = (
    "upstream_5xx",
    "upstream_timeout",
    "upstream_connect_error",
    "circuit_open",
    "gateway_exception",
    "rate_limited",
    "validation_rejected",
    "attack_detected",
)
"""What `errors.capture` lists by default; an upstream 5xx passing through is `upstream_5xx`."""

UPSTREAM_5XX: Final = "upstream_5xx"

EXTRA_DEFAULTS = ("store_unavailable", "bulkhead_full", "retry_budget_exhausted")
"""Other 5xx answers of the gateway's own, captured by default too."""

# A reason not listed here, and not a BadRequest, is its own category (no_route, ...).
_CATEGORY_OF_REASON = {
    "payload_too_large": "validation_rejected",
    "unsupported_media_type": "validation_rejected",
    "uri_too_long": "validation_rejected",
    "header_fields_too_large": "validation_rejected",
    "method_not_allowed": "validation_rejected",
}


@functools.cache
def _category_table() -> dict[str, str]:
    # Built on first use, when gateway.errors is fully imported: every BadRequest subclass
    # (invalid_json, schema_violation, ...) is a validation rejection.
    table = dict(_CATEGORY_OF_REASON)
    table.update((cls.reason, "validation_rejected") for cls in _tree(BadRequest))
    return table


def category_of(reason: str) -> str:
    """The capture category of a rejection reason (the reason itself when it names one)."""
    return _category_table().get(reason, reason)


def rejection_reasons() -> frozenset[str]:
    """Every reason code of the Rejection tree in gateway.errors, walked at call time."""
    return frozenset(cls.reason for cls in _tree(Rejection))


def _tree(root: type[Rejection]) -> Iterator[type[Rejection]]:
    """`root` and every subclass of it, at any depth."""
    pending: list[type[Rejection]] = [root]
    while pending:
        cls = pending.pop()
        yield cls
        pending.extend(cls.__subclasses__())


def known_names() -> frozenset[str]:
    """What `errors.capture`, `sample` keys, drop rules and alert selectors may name."""
    return frozenset(CATEGORIES) | rejection_reasons()

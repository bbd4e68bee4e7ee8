"""What each request gives the logs: its id, and whether it gets an access line.

Apart from the logging set-up (gateway/observability/logs.py) because these run on every
request and are compiled (gateway/native.py); the set-up is not.
"""

from __future__ import annotations

import contextvars
import random
from collections.abc import Callable
from typing import Final, Literal

LOGGED_REQUEST_ID: Final[contextvars.ContextVar[str | None]] = contextvars.ContextVar(
    "gateway_request_id", default=None
)
"""The request being served, set by the request_id step: one ContextVar.set per request,
where structlog's bind_contextvars costs a microsecond."""

_random_bits: Final = random.getrandbits


def mint_request_id() -> str:
    """128 random bits as 32 hex digits, as uuid4().hex. An id names, it guards nothing: the
    process's generator (reseeded in forked workers) spares a getrandom() syscall per request."""
    return _random_bits(128).to_bytes(16, "big").hex()  # a third of what f"{n:032x}" costs


AccessMode = Literal["on", "off", "errors", "sampled"]


def access_wanted(
    mode: AccessMode,
    sample_rate: float,
    status: int,
    draw: Callable[[], float] = random.random,
) -> bool:
    """Whether this response gets an access line: on, off, errors (status >= 400) or sampled.

    A JSON line costs tens of microseconds (../shared/notes/perf.md): hot routes sample.
    """
    if mode == "on":
        return True
    if mode == "errors":
        return status >= 400
    return mode == "sampled" and draw() < sample_rate

"""Retry decisions: which tries may be repeated, after how long, and within which budget.

Pure: no I/O, an injected clock and an injected random source, so tests pin every delay.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from gateway.resilience.breaker import Clock

Outcome = int | str
"""What a try ended with: the upstream's status, or `connect_error` / `timeout`."""

# Only these statuses ask the client to come back later (RFC 9110 §10.2.3).
_RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A route's retry rules, compiled once."""

    attempts: int
    on: frozenset[Outcome]
    methods: frozenset[str]
    base: float
    max_backoff: float
    jitter: bool
    respect_retry_after: bool
    max_retry_after: float
    buffer_body: int
    random: Callable[[], float] = field(default=random.random)

    def allows_method(self, method: str) -> bool:
        # A POST that timed out may have been applied: sending it again could apply it twice.
        return method in self.methods

    def triggered_by(self, outcome: Outcome) -> bool:
        return outcome in self.on

    def backoff(self, retry: int) -> float:
        """Delay before retry number `retry` (1 = the first retry): AWS's "full jitter"."""
        ceiling = min(self.max_backoff, self.base * 2.0 ** (retry - 1))
        return self.random() * ceiling if self.jitter else ceiling

    def delay(self, retry: int, status: int | None, retry_after: str | None) -> float | None:
        """How long to wait before retry number `retry`, or None when the upstream asked
        for a pause longer than we may hold the client (its answer then goes back as is)."""
        backoff = self.backoff(retry)
        if not self.respect_retry_after or retry_after is None:
            return backoff
        if status not in _RETRY_AFTER_STATUSES:
            return backoff
        asked = parse_retry_after(retry_after)
        if asked is None:
            return backoff
        if asked > self.max_retry_after:
            return None
        return max(backoff, asked)


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """Seconds from a Retry-After value: delay-seconds or an HTTP-date; None if unreadable."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class RetryBudget:
    """Retries may be at most `ratio` of requests, plus `min_per_second`, over a sliding window.

    Without a budget, retries multiply load exactly when the upstream is struggling (a retry
    storm); the floor keeps retries possible on a quiet route (Finagle's and Linkerd's design).
    """

    def __init__(
        self, ratio: float, min_per_second: float, window: float, clock: Clock = time.monotonic
    ) -> None:
        self.ratio = ratio
        self.floor = min_per_second * window
        self._window = max(1, math.ceil(window))
        self.clock = clock
        self._buckets: deque[list[int]] = deque()  # [second, requests, retries]
        self._requests = 0
        self._retries = 0

    def _bucket(self) -> list[int]:
        second = math.floor(self.clock())
        buckets = self._buckets
        if buckets and buckets[-1][0] == second:
            return buckets[-1]  # made this second: what had expired went when it was made
        while self._buckets and self._buckets[0][0] <= second - self._window:
            _, requests, retries = self._buckets.popleft()
            self._requests -= requests
            self._retries -= retries
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0])
        return self._buckets[-1]

    def record_request(self) -> None:
        self._bucket()[1] += 1
        self._requests += 1

    def try_spend(self) -> bool:
        """Take one retry from the budget; False when it is spent."""
        bucket = self._bucket()
        if self._retries + 1 > self.ratio * self._requests + self.floor:
            return False
        bucket[2] += 1
        self._retries += 1
        return True

"""The circuit breaker: an explicit state machine over a sliding window, with an injected clock.

    closed ──(failure or slow-call rate over threshold, once min_calls are in)──► open
    open ──(open_for elapsed, on the next call)──► half_open
    half_open ──(every one of half_open_calls probes succeeded)──► closed
    half_open ──(a probe failed or was slow)──► open
    any ──force_open()──► forced_open      any ──disable()──► disabled      any ──reset()──► closed

Every transition is a `Transition` event handed to each listener (logs, metrics). Semantics follow
Resilience4j, except that half-open closes only when *all* probes succeed (the issue asks so).
A permit carries the epoch it was issued in: an outcome that arrives after the state moved on
describes an upstream that no longer exists, so it is dropped.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal, NamedTuple

Clock = Callable[[], float]
"""Monotonic seconds; tests pass a fake one and move it."""

_new: Final = tuple.__new__  # a NamedTuple without its Python-level constructor


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change; `reason` says what caused it."""

    breaker: str
    from_state: State
    to_state: State
    at: float
    reason: str  # failure_rate | slow_call_rate | open_for_elapsed | probe_failed | probes_passed
    # | forced_open | disabled | reset


Listener = Callable[[Transition], None]


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """The breaker's thresholds, compiled from the policy."""

    window: Literal["count", "time"] = "count"
    window_size: float = 100
    min_calls: int = 20
    failure_rate: float = 0.5
    slow_call_duration: float | None = None
    slow_call_rate: float = 1.0
    open_for: float = 30.0
    half_open_calls: int = 5


class Permit(NamedTuple):
    """Leave to make one call; hand it back with `record` or `release` (a tuple: one is made
    per upstream call, and a frozen dataclass's __init__ costs a setattr per field)."""

    epoch: int
    started: float
    probe: bool


class Window:
    """The calls a breaker judges by. A base class rather than a Protocol: compiled, its
    methods are called directly, where a Protocol's are looked up by name on every call."""

    def add(self, now: float, failure: bool, slow: bool) -> None:
        raise NotImplementedError

    def totals(self, now: float) -> tuple[int, int, int]:
        """(calls, failures, slow calls) in the window."""
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError


class CountWindow(Window):
    """The last `size` calls."""

    def __init__(self, size: int) -> None:
        self._outcomes: deque[tuple[bool, bool]] = deque(maxlen=size)
        self._failures = 0
        self._slow = 0

    def add(self, now: float, failure: bool, slow: bool) -> None:
        if len(self._outcomes) == self._outcomes.maxlen:
            old_failure, old_slow = self._outcomes[0]
            self._failures -= old_failure
            self._slow -= old_slow
        self._outcomes.append((failure, slow))
        self._failures += failure
        self._slow += slow

    def totals(self, now: float) -> tuple[int, int, int]:
        return len(self._outcomes), self._failures, self._slow

    def clear(self) -> None:
        self._outcomes.clear()
        self._failures = self._slow = 0


class TimeWindow(Window):
    """The calls of the last `size` seconds, aggregated in one-second buckets (as Resilience4j)."""

    def __init__(self, size: float) -> None:
        self._size = max(1, math.ceil(size))
        self._buckets: deque[list[int]] = deque()  # [second, calls, failures, slow]
        self._calls = self._failures = self._slow = 0

    def _evict(self, now: float) -> None:
        oldest = math.floor(now) - self._size
        while self._buckets and self._buckets[0][0] <= oldest:
            _, calls, failures, slow = self._buckets.popleft()
            self._calls -= calls
            self._failures -= failures
            self._slow -= slow

    def add(self, now: float, failure: bool, slow: bool) -> None:
        self._evict(now)
        second = math.floor(now)
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0, 0])
        bucket = self._buckets[-1]
        bucket[1] += 1
        bucket[2] += failure
        bucket[3] += slow
        self._calls += 1
        self._failures += failure
        self._slow += slow

    def totals(self, now: float) -> tuple[int, int, int]:
        self._evict(now)
        return self._calls, self._failures, self._slow

    def clear(self) -> None:
        self._buckets.clear()
        self._calls = self._failures = self._slow = 0


class Breaker:
    """One circuit breaker. Not thread-safe: it lives on one event loop."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig,
        *,
        clock: Clock = time.monotonic,
        listeners: tuple[Listener, ...] = (),
    ) -> None:
        self.name = name
        self.config = config
        self.clock = clock
        self.listeners: list[Listener] = list(listeners)
        self._window: Window = (
            CountWindow(int(config.window_size))
            if config.window == "count"
            else TimeWindow(config.window_size)
        )
        self._state = State.CLOSED
        self._epoch = 0
        self._opened_at = 0.0
        self._probes_out = 0
        self._probes_passed = 0

    @property
    def state(self) -> State:
        return self._state

    def acquire(self) -> Permit | None:
        """A permit to call the upstream, or None: the call must not be made."""
        now = self.clock()
        state = self._state
        if state is State.OPEN and now - self._opened_at >= self.config.open_for:
            self._move(State.HALF_OPEN, "open_for_elapsed", now)
            state = State.HALF_OPEN
        if state is State.CLOSED or state is State.DISABLED:
            return _new(Permit, (self._epoch, now, False))
        if state is State.HALF_OPEN and self._probes_out < self.config.half_open_calls:
            self._probes_out += 1
            return Permit(self._epoch, now, probe=True)
        return None

    def record(self, permit: Permit, *, failure: bool) -> None:
        """The outcome of a permitted call; its duration is measured on the breaker's clock."""
        if permit.epoch != self._epoch or self._state is State.DISABLED:
            return
        now = self.clock()
        limit = self.config.slow_call_duration
        slow = limit is not None and now - permit.started > limit
        if self._state is State.HALF_OPEN:
            if failure or slow:
                self._open(now, "probe_failed")
                return
            self._probes_passed += 1
            if self._probes_passed >= self.config.half_open_calls:
                self._move(State.CLOSED, "probes_passed", now)
            return
        self._window.add(now, failure, slow)
        calls, failures, slow_calls = self._window.totals(now)
        if calls < self.config.min_calls:
            return
        if failures / calls >= self.config.failure_rate:
            self._open(now, "failure_rate")
        elif limit is not None and slow_calls / calls >= self.config.slow_call_rate:
            self._open(now, "slow_call_rate")

    def release(self, permit: Permit) -> None:
        """Give back a permit whose call ended without an outcome (the client went away)."""
        if permit.probe and permit.epoch == self._epoch and self._state is State.HALF_OPEN:
            self._probes_out -= 1

    def retry_after(self) -> float:
        """Seconds until a call may pass again (what a rejected client is told)."""
        if self._state is State.OPEN:
            return max(0.0, self._opened_at + self.config.open_for - self.clock())
        if self._state is State.FORCED_OPEN:
            return self.config.open_for
        return 0.0

    def force_open(self) -> None:
        """Reject every call until reset (admin)."""
        self._move(State.FORCED_OPEN, "forced_open", self.clock())

    def disable(self) -> None:
        """Let every call through and record nothing until reset (admin)."""
        self._move(State.DISABLED, "disabled", self.clock())

    def reset(self) -> None:
        """Back to closed with an empty window (admin)."""
        self._move(State.CLOSED, "reset", self.clock())

    def snapshot(self) -> dict[str, object]:
        """The state and the window's numbers, for the admin port."""
        calls, failures, slow = self._window.totals(self.clock())
        return {
            "name": self.name,
            "state": self._state.value,
            "calls": calls,
            "failures": failures,
            "slow_calls": slow,
            "failure_rate": failures / calls if calls else 0.0,
            "retry_after_s": round(self.retry_after(), 3),
            "half_open_probes_out": self._probes_out,
        }

    def _open(self, now: float, reason: str) -> None:
        self._opened_at = now
        self._move(State.OPEN, reason, now)

    def _move(self, to: State, reason: str, now: float) -> None:
        if to is self._state and to is not State.OPEN:
            self._window.clear()  # reset while closed, or forcing twice: nothing to announce
            return
        event = Transition(self.name, self._state, to, now, reason)
        self._state = to
        self._epoch += 1
        self._probes_out = self._probes_passed = 0
        # Each state starts from a clean window: old outcomes described the previous state.
        self._window.clear()
        for listener in self.listeners:
            listener(event)

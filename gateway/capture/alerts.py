"""Alert rules: `when` conditions parsed once, sliding-window counts, and a firing state machine.

    rate(SELECTOR) > N/UNIT [over DURATION]     e.g. rate(upstream_5xx) > 5/min
    ratio(SELECTOR) > P% [over DURATION]        e.g. ratio(5xx) > 10% over 5m

A selector is a capture category, a rejection reason, or a status class such as 5xx. A ratio is
the share of all requests in the window. Each rule moves OK -> FIRING when its condition holds
(with at least `min_requests` requests in the window and its cooldown elapsed since it last
fired) and FIRING -> OK when it clears; each transition is one notice. While a rule stays
FIRING nothing is repeated: one incident, one alert.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from gateway.units import parse_duration

Clock = Callable[[], float]
"""Seconds from an arbitrary origin; tests pass their own and move it."""

_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
_WHEN = re.compile(
    r"^\s*(?P<kind>rate|ratio)\(\s*(?P<selector>[A-Za-z0-9_]+)\s*\)\s*(?P<op>>=|>)\s*"
    r"(?P<number>\d+(?:\.\d+)?)\s*(?:(?P<percent>%)|/\s*(?P<unit>[a-z]+))?"
    r"(?:\s+over\s+(?P<over>\S+))?\s*$"
)
_STATUS_CLASS = re.compile(r"^[1-5]xx$")
_USAGE = '(use "rate(upstream_5xx) > 5/min" or "ratio(5xx) > 10% over 5m")'
DEFAULT_RATIO_WINDOW = 300.0


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed `when`: threshold in events per second (rate) or as a fraction (ratio)."""

    kind: Literal["rate", "ratio"]
    selector: str
    op: Literal[">", ">="]
    threshold: float
    window: float
    unit_seconds: float
    unit: str
    text: str

    def selects(self, status: int, reason: str | None, category: str | None) -> bool:
        if _STATUS_CLASS.match(self.selector):
            return status // 100 == int(self.selector[0])
        return self.selector in (reason, category)

    def holds(self, value: float) -> bool:
        return value >= self.threshold if self.op == ">=" else value > self.threshold

    def describe(self, value: float) -> str:
        """The measured value in the condition's own unit, for notices."""
        if self.kind == "ratio":
            return f"{value * 100:.1f}%"
        return f"{value * self.unit_seconds:.2f}/{self.unit}"


def parse_condition(text: object, known: Iterable[str] = ()) -> Condition:
    """Parse a `when` expression; raise ValueError naming the mistake."""
    if isinstance(text, Condition):
        return text
    if not isinstance(text, str):
        raise ValueError(f"invalid alert condition {text!r} {_USAGE}")
    match = _WHEN.match(text)
    if match is None:
        raise ValueError(f"invalid alert condition {text!r} {_USAGE}")
    kind, selector = match["kind"], match["selector"]
    names = frozenset(known)
    if names and selector not in names and not _STATUS_CLASS.match(selector):
        raise ValueError(
            f"unknown selector {selector!r} in {text!r} (use a status class like 5xx, "
            f"or one of: {', '.join(sorted(names))})"
        )
    number = float(match["number"])
    if kind == "rate":
        if match["percent"] or not match["unit"]:
            raise ValueError(f"a rate needs a unit, as in 'rate({selector}) > 5/min': {text!r}")
        if match["unit"] not in _UNITS:
            raise ValueError(f"unknown rate unit {match['unit']!r} in {text!r} (use s, min, h)")
        unit_seconds, unit = _UNITS[match["unit"]], match["unit"]
        threshold = number / unit_seconds
        window = unit_seconds
    else:
        if not match["percent"]:
            raise ValueError(f"a ratio needs a percentage, as in 'ratio(5xx) > 10%': {text!r}")
        if number > 100:
            raise ValueError(f"a ratio above 100% can never hold: {text!r}")
        unit_seconds, unit = 1.0, "%"
        threshold = number / 100.0
        window = DEFAULT_RATIO_WINDOW
    if match["over"]:
        window = parse_duration(match["over"])
        if window <= 0:
            raise ValueError(f"the window of {text!r} must be longer than 0s")
    op: Literal[">", ">="] = ">=" if match["op"] == ">=" else ">"
    shape: Literal["rate", "ratio"] = "rate" if kind == "rate" else "ratio"
    return Condition(shape, selector, op, threshold, window, unit_seconds, unit, text.strip())


class SlidingCounter:
    """Hits and totals in time buckets covering the last `window` seconds."""

    __slots__ = ("_buckets", "_count", "_width")

    def __init__(self, window: float, buckets: int = 60) -> None:
        self._width = max(window / buckets, 0.001)
        self._count = buckets
        # [bucket index, hits, total]; appended in time order, old ones popped from the left.
        self._buckets: deque[list[int]] = deque()

    def add(self, now: float, hit: bool) -> None:
        index = int(now // self._width)
        if self._buckets and self._buckets[-1][0] == index:
            bucket = self._buckets[-1]
        else:
            bucket = [index, 0, 0]
            self._buckets.append(bucket)
            self._expire(index)
        bucket[1] += hit
        bucket[2] += 1

    def sums(self, now: float) -> tuple[int, int]:
        """(hits, total) over the window ending now."""
        self._expire(int(now // self._width))
        return sum(b[1] for b in self._buckets), sum(b[2] for b in self._buckets)

    def _expire(self, index: int) -> None:
        while self._buckets and self._buckets[0][0] <= index - self._count:
            self._buckets.popleft()


@dataclass(frozen=True, slots=True)
class AlertRuleSpec:
    """A rule as the engine needs it; equal specs keep their state across reloads."""

    name: str
    condition: Condition
    min_requests: int
    cooldown: float
    sinks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AlertNotice:
    """One transition of one rule: it fired, or it recovered."""

    rule: str
    state: Literal["fired", "resolved"]
    condition: str
    value: str
    requests: int
    window: float
    sinks: tuple[str, ...]
    at: float
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def summary(self) -> str:
        verb = "FIRING" if self.state == "fired" else "RESOLVED"
        return (
            f"[{verb}] {self.rule}: {self.condition} (now {self.value} over "
            f"{self.window:g}s, {self.requests} requests)"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": "alert",
            "id": self.id,
            "rule": self.rule,
            "state": self.state,
            "condition": self.condition,
            "value": self.value,
            "requests": self.requests,
            "window_s": self.window,
            "at": self.at,
            "summary": self.summary,
        }


@dataclass(slots=True)
class _RuleState:
    spec: AlertRuleSpec
    counter: SlidingCounter
    firing: bool = False
    last_fired: float | None = None
    suppressed: bool = False


class AlertEngine:
    """Feeds every response into each rule's window and reports the rules' transitions."""

    def __init__(
        self,
        rules: Iterable[AlertRuleSpec] = (),
        *,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        self._clock = clock
        self._wall = wall
        self._rules: list[_RuleState] = []
        self.replace(rules)

    def replace(self, rules: Iterable[AlertRuleSpec]) -> None:
        """Install new rules; a rule whose spec did not change keeps its window and state."""
        old = {state.spec: state for state in self._rules}
        self._rules = [
            old.get(spec) or _RuleState(spec, SlidingCounter(spec.condition.window))
            for spec in rules
        ]

    @property
    def rules(self) -> tuple[AlertRuleSpec, ...]:
        return tuple(state.spec for state in self._rules)

    def record(self, status: int, reason: str | None, category: str | None) -> None:
        """Count one response; called on the request path, so O(rules) and nothing more."""
        if not self._rules:
            return
        now = self._clock()
        for state in self._rules:
            state.counter.add(now, state.spec.condition.selects(status, reason, category))

    def evaluate(self) -> tuple[list[AlertNotice], list[str]]:
        """The notices due now, and the names of rules that held but were held back by cooldown."""
        now = self._clock()
        notices: list[AlertNotice] = []
        suppressed: list[str] = []
        for state in self._rules:
            spec, condition = state.spec, state.spec.condition
            hits, total = state.counter.sums(now)
            if condition.kind == "rate":
                value = hits / condition.window
            else:
                value = hits / total if total else 0.0
            active = total >= max(spec.min_requests, 1) and condition.holds(value)
            if active and not state.firing:
                cooling = state.last_fired is not None and now - state.last_fired < spec.cooldown
                if cooling:
                    if not state.suppressed:
                        state.suppressed = True
                        suppressed.append(spec.name)
                    continue
                state.firing, state.last_fired, state.suppressed = True, now, False
                notices.append(self._notice(spec, "fired", value, total))
            elif not active:
                state.suppressed = False
                if state.firing:
                    state.firing = False
                    notices.append(self._notice(spec, "resolved", value, total))
        return notices, suppressed

    def status(self) -> list[dict[str, object]]:
        """Each rule and whether it is firing, for the admin port."""
        return [
            {"rule": s.spec.name, "when": s.spec.condition.text, "firing": s.firing}
            for s in self._rules
        ]

    def _notice(
        self, spec: AlertRuleSpec, state: Literal["fired", "resolved"], value: float, total: int
    ) -> AlertNotice:
        return AlertNotice(
            rule=spec.name,
            state=state,
            condition=spec.condition.text,
            value=spec.condition.describe(value),
            requests=total,
            window=spec.condition.window,
            sinks=spec.sinks,
            at=self._wall(),
        )

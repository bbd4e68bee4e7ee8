"""A route's compiled rules and the decision over all of them: every rule must admit.

Each rule charges its own counter when it admits (as Envoy's descriptors do); a rule that
refuses takes nothing. The refusal with the longest wait answers the client, because no
earlier retry could pass.

`check` decides on any store; `decide_now` is the same decision on an in-process store, which
answers without suspending: no coroutine per level, no event-loop round.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, NamedTuple

from gateway.errors import StoreUnavailable
from gateway.policy.ratelimit import RateLimitRule
from gateway.ratelimit.adaptive import AdaptiveFactor
from gateway.ratelimit.identity import RequestFacts
from gateway.ratelimit.keys import KeyFunction, compile_key, reads_headers, rule_prefix
from gateway.ratelimit.strategies import (
    Calendar,
    Concurrency,
    Decision,
    Fixed,
    FixedWindow,
    SlidingWindow,
    Strategy,
    TokenBucket,
    scaled,
)
from gateway.stores.base import LimitStore
from gateway.stores.memory import MemoryStore

if TYPE_CHECKING:  # the step binds a limiter's meters; it imports this module
    from gateway.middleware.ratelimit import Meters

# A NamedTuple's own constructor is a Python-level call; tuple.__new__ builds the same object
# at a third of the cost, on a path taken by every request.
_new: Final = tuple.__new__

QUEUE_POLL = 0.05
"""While queued for a concurrency slot, how often the store is asked again (other replicas)."""

Outcome = Literal["allowed", "limited", "shadow_limited", "store_error"]


def fingerprint(rule: RateLimitRule) -> str:
    """Changes when the counting changes; mode, cost and headers may change and keep counters."""
    counting = rule.model_dump_json(
        include={"key", "limit", "window", "calendar", "timezone", "algorithm", "burst"}
    )
    return hashlib.sha256(counting.encode()).hexdigest()[:10]


def build_strategy(rule: RateLimitRule) -> Strategy:
    if rule.algorithm == "concurrency":
        return Concurrency(rule.limit, rule.window or 300.0)
    if rule.calendar is not None:
        return FixedWindow(rule.limit, Calendar(rule.calendar, zoneinfo.ZoneInfo(rule.timezone)))
    assert rule.window is not None  # the model requires window or calendar
    if rule.algorithm == "fixed_window":
        return FixedWindow(rule.limit, Fixed(rule.window))
    if rule.algorithm == "token_bucket":
        return TokenBucket(rule.limit, rule.window, rule.burst)
    return SlidingWindow(rule.limit, rule.window)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    namespace: str
    """name:fingerprint — routes sharing an identical rule share its counters."""
    enforce: bool
    cost: int
    strategy: Strategy
    key: KeyFunction
    max_wait: float
    draft_headers: bool
    legacy_headers: bool
    policy: RateLimitRule
    adaptive: AdaptiveFactor | None
    draft_item: str
    """`"name";r=`: the constant head of this rule's item in the RateLimit field."""
    draft_line: str
    """`RateLimit: "name";r=`: the same, when the item is the field's only one."""
    advertised: bool
    """An enforced rule with some header family on: it may be the legacy headers' headline."""
    limit: int
    """The limit its decisions report when not scaled (the burst, for a token bucket)."""

    @classmethod
    def compile(cls, rule: RateLimitRule) -> CompiledRule:
        namespace = f"{rule.name}:{fingerprint(rule)}"
        # A concurrency limit is no rate: the RateLimit fields have nothing to say about it.
        rate = rule.algorithm != "concurrency"
        strategy = build_strategy(rule)
        limit = strategy.burst if isinstance(strategy, TokenBucket) else strategy.limit
        return cls(
            name=rule.name,
            namespace=namespace,
            enforce=rule.mode == "enforce",
            cost=rule.cost,
            strategy=strategy,
            key=compile_key(
                namespace,
                rule.key,
                rule.jwt_hs256_secret.encode() if rule.jwt_hs256_secret else None,
            ),
            max_wait=rule.max_wait,
            draft_headers=rate and rule.headers in ("both", "draft"),
            legacy_headers=rate and rule.headers in ("both", "legacy"),
            policy=rule,
            adaptive=AdaptiveFactor(
                rule.adaptive.cpu_above, rule.adaptive.min_factor, rule.adaptive.source
            )
            if rule.adaptive is not None
            else None,
            draft_item=f'"{rule.name}";r=',
            draft_line=f'RateLimit: "{rule.name}";r=',
            advertised=rule.mode == "enforce" and rate and rule.headers != "none",
            limit=limit,
        )

    @property
    def prefix(self) -> str:
        return rule_prefix(self.namespace)


class RuleResult(NamedTuple):
    rule: CompiledRule
    outcome: Outcome
    decision: Decision | None
    """None when the store failed and on_error is open."""
    key: str


class Verdict(NamedTuple):
    results: tuple[RuleResult, ...]
    denied: RuleResult | None
    """The enforced refusal with the longest wait, if any rule refused."""
    headline: RuleResult | None
    """The enforced rule the legacy headers describe: the refusal, else the least remaining."""


class RouteLimiter:
    def __init__(
        self,
        rules: Sequence[RateLimitRule],
        *,
        on_error: Literal["open", "closed", "local"] = "local",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.all_rules = tuple(CompiledRule.compile(rule) for rule in rules)
        self.rules = tuple(rule for rule in self.all_rules if rule.policy.mode != "off")
        self.on_error = on_error
        self.clock = clock
        self.holds_slots = any(isinstance(r.strategy, Concurrency) for r in self.rules)
        """True when some rule's slots must be given back once the response is done."""
        self._released = asyncio.Event()
        """Set (and replaced) on each release, waking the requests queued for a slot."""
        self.reads_headers = any(reads_headers(r.policy.key) for r in self.rules)
        """True when some rule's key is made of header fields: the request's map is built."""
        self.queues = any(r.max_wait > 0 and r.enforce for r in self.rules)
        """True when a refusal may wait for a slot: such a limiter always takes `check`."""
        self._advertised = tuple(r for r in self.rules if r.enforce and r.draft_headers)
        self._adaptive = any(r.adaptive is not None for r in self._advertised)
        self._policy_line = self._render_policy()
        self.one_rule_fields = self._one_rule_fields()
        self.meters: Meters | None = None
        """Its metric children, bound by the rate-limit step at its first request."""
        """What the middleware binds for this limiter at its first request (metric children):
        kept here because the limiter lives exactly as long as the route it serves."""

    def _render_policy(self) -> str:
        items = []
        for r in self._advertised:
            limit = r.strategy.limit
            if r.adaptive is not None:
                limit = scaled(limit, r.adaptive.factor)
            items.append(f'"{r.name}";q={limit};w={max(1, round(r.strategy.window))}')
        return f"RateLimit-Policy: {', '.join(items)}\r\n" if items else ""

    def _one_rule_fields(self) -> tuple[tuple[str, str, str], ...] | None:
        """For one enforced rule at a fixed limit, its fields as text around the two numbers
        they carry, per field family: (before the remaining count, between it and the
        seconds to the reset, after them). Joined per answer, where a %-template took longer
        to parse than all the rest of the fields."""
        if len(self.rules) != 1 or self._adaptive:
            return None
        rule = self.rules[0]
        if not rule.advertised:
            return None
        pieces: list[tuple[str, str, str]] = []
        if rule.draft_headers:
            pieces.append((self._policy_line + rule.draft_line, ";t=", "\r\n"))
        if rule.legacy_headers:
            pieces.append(
                (
                    f"X-RateLimit-Limit: {rule.limit}\r\nX-RateLimit-Remaining: ",
                    "\r\nX-RateLimit-Reset: ",
                    "\r\n",
                )
            )
        return tuple(pieces)

    @property
    def policy_line(self) -> str:
        """The RateLimit-Policy head line ("" when no rule advertises one): rendered once,
        unless adaptive throttling is moving a limit."""
        return self._render_policy() if self._adaptive else self._policy_line

    def rule(self, name: str) -> CompiledRule | None:
        return next((rule for rule in self.all_rules if rule.name == name), None)

    async def check(self, store: LimitStore, facts: RequestFacts) -> Verdict:
        now = self.clock()
        rules = self.rules
        if len(rules) == 1:  # the common case, without the machinery for several rules
            return verdict((await self._decide(store, rules[0], facts, now),))
        if store.kind != "memory":
            # Decided together, a request's rules share one pipeline: one round trip for all.
            gathered = await asyncio.gather(*(self._decide(store, r, facts, now) for r in rules))
            return verdict(tuple(gathered))
        results = []
        for rule in rules:
            results.append(await self._decide(store, rule, facts, now))
        return verdict(tuple(results))

    def decide_now(self, store: MemoryStore, facts: RequestFacts) -> Verdict:
        """`check` on an in-process store (never raises StoreUnavailable, never queues)."""
        now = self.clock()
        rules = self.rules
        if len(rules) == 1:
            rule = rules[0]
            key = rule.key(facts)
            adaptive = rule.adaptive
            decision = rule.strategy.decide(
                store, key, rule.cost, now, 1.0 if adaptive is None else adaptive.factor
            )
            if decision.allowed:
                result = _new(RuleResult, (rule, "allowed", decision, key))
                return _new(Verdict, ((result,), None, result if rule.advertised else None))
            if rule.enforce:
                result = _new(RuleResult, (rule, "limited", decision, key))
                return _new(Verdict, ((result,), result, result))
            result = _new(RuleResult, (rule, "shadow_limited", decision, key))
            return _new(Verdict, ((result,), None, None))
        results = []
        for rule in rules:
            key = rule.key(facts)
            adaptive = rule.adaptive
            decision = rule.strategy.decide(
                store, key, rule.cost, now, 1.0 if adaptive is None else adaptive.factor
            )
            if decision.allowed:
                outcome: Outcome = "allowed"
            else:
                outcome = "limited" if rule.enforce else "shadow_limited"
            results.append(_new(RuleResult, (rule, outcome, decision, key)))
        return verdict(tuple(results))

    async def _decide(
        self, store: LimitStore, rule: CompiledRule, facts: RequestFacts, now: float
    ) -> RuleResult:
        key = rule.key(facts)
        adaptive = rule.adaptive
        try:
            scale = 1.0 if adaptive is None else adaptive.factor
            decision = await rule.strategy.hit(store, key, rule.cost, now, scale)
            if not decision.allowed and rule.max_wait > 0 and rule.enforce:
                decision = await self._queue(store, rule, key, scale, decision)
        except StoreUnavailable:
            if self.on_error == "closed":
                raise
            return RuleResult(rule, "store_error", None, key)
        if decision.allowed:
            return _new(RuleResult, (rule, "allowed", decision, key))
        outcome = "limited" if rule.enforce else "shadow_limited"
        return _new(RuleResult, (rule, outcome, decision, key))

    async def _queue(
        self, store: LimitStore, rule: CompiledRule, key: str, scale: float, refused: Decision
    ) -> Decision:
        """Wait up to max_wait for a concurrency slot: woken by this process's releases, and
        polling for those of other replicas."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + rule.max_wait
        decision = refused
        while not decision.allowed and (left := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), min(left, QUEUE_POLL))
            decision = await rule.strategy.hit(store, key, rule.cost, self.clock(), scale)
        return decision

    async def release(self, store: LimitStore, verdict: Verdict) -> None:
        """Give back the concurrency slots this request took."""
        for result in verdict.results:
            strategy = result.rule.strategy
            if isinstance(strategy, Concurrency) and result.outcome == "allowed":
                # On a store failure the slot's lease runs out on its own.
                with contextlib.suppress(StoreUnavailable):
                    await strategy.release(store, result.key, result.rule.cost)
                # Wake every queued request of this route; one of them gets the slot.
                self._released.set()
                self._released = asyncio.Event()

    async def usage(self, store: LimitStore, rule: CompiledRule, key: str) -> Decision:
        """The rule's state for one key, read without taking anything (cost 0)."""
        return await rule.strategy.hit(store, key, 0, self.clock())


def verdict(results: tuple[RuleResult, ...]) -> Verdict:
    denied: RuleResult | None = None
    longest_wait = -1.0
    headline: RuleResult | None = None
    least_remaining = -1
    for result in results:
        decision = result.decision
        if decision is None or not result.rule.enforce:
            continue
        if result.outcome == "limited":
            if decision.retry_after > longest_wait:
                denied, longest_wait = result, decision.retry_after
        elif result.rule.advertised and (headline is None or decision.remaining < least_remaining):
            headline, least_remaining = result, decision.remaining
    return _new(Verdict, (results, denied, denied or headline))

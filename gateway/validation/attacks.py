"""A route's attack detector: the compiled CRS engine it shares, and what a match does."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.errors import PolicyError, caused_by
from gateway.policy.attacks import Attacks
from gateway.policy.model import Route
from gateway.validation.crs.engine import CrsEngine, CrsLoadError, load_from_policy
from gateway.validation.crs.evaluation import Verdict
from gateway.validation.crs.request import RequestView

EngineCache = dict[str, CrsEngine]
"""Compiled rulesets by the JSON of their `attacks` block: routes naming the same ruleset share
one engine, and a reload that leaves the block alone reuses it instead of compiling again."""


@dataclass(frozen=True, slots=True)
class AttackDetector:
    engine: CrsEngine
    ruleset_key: str
    blocking: bool
    max_body: int
    """The route's validation.max_body: the scan reads no more, even with validation mode off."""
    """block: a verdict over the threshold is a 403; detect: it is logged and counted only."""

    def evaluate(self, view: RequestView, route: str) -> Verdict:
        return self.engine.evaluate(view, route=route)


def compile_attacks(
    route: Route, index: int, source: str, engines: EngineCache
) -> AttackDetector | None:
    """The route's detector, or None when it has no `validation.attacks` (or it is off)."""
    attacks: Attacks | None = route.validation.attacks if route.validation else None
    if attacks is None or attacks.mode == "off":
        return None
    key = attacks.model_dump_json()
    engine = engines.get(key)
    if engine is None:
        base_dir = Path(source).parent if not source.startswith("<") else Path.cwd()
        try:
            engine = load_from_policy(attacks, base_dir)
        except CrsLoadError as exc:
            raise caused_by(
                PolicyError([f"{source}: routes[{index}].validation.attacks.crs.rules_dir: {exc}"]),
                exc,
            )
        engines[key] = engine
    assert route.validation is not None  # attacks live in the validation block
    return AttackDetector(
        engine=engine,
        ruleset_key=key,
        blocking=attacks.mode == "block",
        max_body=route.validation.max_body,
    )

"""The CRS engine: compile a SecLang ruleset once, evaluate request phases 1 and 2 to a Verdict."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from gateway.errors import caused_by
from gateway.policy.attacks import Attacks
from gateway.validation.crs import plan
from gateway.validation.crs.compiled import CrsLoadError, LoadReport, Step
from gateway.validation.crs.compiler import Compiler, rule_files
from gateway.validation.crs.evaluation import Evaluation, EvaluationTimeout, Verdict
from gateway.validation.crs.exclusions import Exclusion, Runtime, parse_field
from gateway.validation.crs.parser import (
    Directive,
    SecLangSyntaxError,
    parse_file,
    parse_text,
)
from gateway.validation.crs.request import RequestView
from gateway.validation.crs.sets import Bucket
from gateway.validation.crs.texts import JoinedKey

__all__ = ["CrsEngine", "CrsLoadError", "Exclusion", "LoadReport", "Verdict", "load_from_policy"]


Clock = Callable[[], float]


@dataclasses.dataclass(frozen=True, slots=True)
class _Settings:
    """The options `load` and `from_text` share; the engine reads everything else from them."""

    paranoia_level: int
    anomaly_threshold: int
    exclusions: Sequence[Exclusion]
    tx: Mapping[str, str] | None
    time_budget: float
    fail_mode: str
    clock: Clock
    prefilter: bool


class CrsEngine:
    """A compiled ruleset. Each `evaluate` keeps its state in its own Evaluation; between
    requests the engine shares only bounded caches (transformed short values, RE2-set results
    per target) and the state after phase 1's constant start, which each request copies."""

    def __init__(
        self,
        phases: dict[int, list[Step]],
        sets: dict[int, tuple[Bucket, ...]],
        report: LoadReport,
        settings: _Settings,
    ) -> None:
        self._sets = sets
        self._programs = {phase: plan.program(steps) for phase, steps in phases.items()}
        self.report = report
        self._setup = _crs_setup(settings)
        self.threshold = settings.anomaly_threshold
        self._route_exclusions = _route_exclusions(settings.exclusions)
        self._budget = settings.time_budget
        self._fail_blocks = settings.fail_mode == "block"
        self._clock = settings.clock
        self._ids = itertools.count()
        self._transformed: dict[tuple[int, str], str] = {}
        self._joined: dict[JoinedKey, str] = {}
        self._atom_hits: dict[tuple[int, int, int, str, int], tuple[int, ...] | None] = {}
        self._start: plan.Start | None = None
        self._start = self._constant_start()

    # ------------------------------------------------------------------ load

    @classmethod
    def load(
        cls,
        rules: Path | str | Sequence[Path | str],
        paranoia_level: int = 1,
        anomaly_threshold: int = 5,
        *,
        exclusions: Sequence[Exclusion] = (),
        tx: Mapping[str, str] | None = None,
        time_budget: float = 0.05,
        fail_mode: str = "block",
        clock: Clock = time.perf_counter,
        prefilter: bool = True,
    ) -> CrsEngine:
        """Parse and compile every `*.conf` of a directory (sorted, as CRS expects) or given files.

        `tx` overrides CRS setup variables (allowed_methods, ...), as crs-setup.conf would.
        `prefilter=False` evaluates every rule on every value (no RE2-set or joined-text pass
        ahead of the rules): slower, same verdicts; the tests compare the two.
        """
        settings = _Settings(
            paranoia_level,
            anomaly_threshold,
            exclusions,
            tx,
            time_budget,
            fail_mode,
            clock,
            prefilter,
        )
        started = time.perf_counter()
        paths = rule_files(rules)
        directives: list[Directive] = []
        try:
            for path in paths:
                directives.extend(parse_file(path).directives)
        # One name per except clause: mypyc gives a reused name the first clause's type and
        # raises TypeError when the second one binds (mypyc/mypyc#620).
        except SecLangSyntaxError as syntax:
            raise caused_by(CrsLoadError(str(syntax)), None)
        except OSError as unreadable:
            raise caused_by(CrsLoadError(f"{unreadable.filename}: {unreadable.strerror}"), None)
        return cls._build(directives, paths, started, settings)

    @classmethod
    def from_text(
        cls,
        text: str,
        paranoia_level: int = 1,
        anomaly_threshold: int = 5,
        *,
        exclusions: Sequence[Exclusion] = (),
        tx: Mapping[str, str] | None = None,
        time_budget: float = 0.05,
        fail_mode: str = "block",
        clock: Clock = time.perf_counter,
        prefilter: bool = True,
    ) -> CrsEngine:
        """Compile rules given as text (tests, examples) with the same compiler as `load`."""
        settings = _Settings(
            paranoia_level,
            anomaly_threshold,
            exclusions,
            tx,
            time_budget,
            fail_mode,
            clock,
            prefilter,
        )
        started = time.perf_counter()
        try:
            directives = parse_text(text, "<text>").directives
        except SecLangSyntaxError as exc:
            raise caused_by(CrsLoadError(str(exc)), None)
        return cls._build(directives, [], started, settings)

    @classmethod
    def _build(
        cls, directives: list[Directive], paths: list[Path], started: float, settings: _Settings
    ) -> CrsEngine:
        if settings.fail_mode not in ("block", "pass"):
            raise CrsLoadError(f"fail_mode must be 'block' or 'pass', not {settings.fail_mode!r}")
        compiler = Compiler(settings.paranoia_level, settings.exclusions, settings.prefilter)
        phases = compiler.compile(directives)
        if not compiler.reads_matched_across:
            phases = {phase: plan.without_inert(steps) for phase, steps in phases.items()}
        engine = cls(phases, compiler.build_sets(), compiler.report(paths, 0.0), settings)
        engine.warm_up()
        engine.report = dataclasses.replace(engine.report, seconds=time.perf_counter() - started)
        return engine

    def _constant_start(self) -> plan.Start | None:
        """Phase 1's constant start run once (see plan.py); None when there is none."""
        rules, _ = self._programs.get(1, ([], {}))
        length = plan.constant_length(rules)
        if not length:
            return None
        evaluation = Evaluation(self, RequestView("GET", "/"), None, self._clock())
        evaluation.deadline = float("inf")
        try:
            evaluation.run_phase(1, 0, stop=length)
        except Exception:  # each request runs these rules then, and fails as it would have
            return None
        state = evaluation.state
        return plan.Start(
            evaluation.next_rule,
            dict(state.tx),
            state.matched_var,
            state.matched_var_name,
            list(state.matched_vars),
            tuple(evaluation.matched),
            tuple(evaluation.fields),
            evaluation.blocked_by,
            evaluation.stopped,
        )

    def warm_up(self) -> None:
        """RE2 builds its DFAs lazily: pay that once at load, not on the first real request."""
        view = RequestView(
            "POST",
            "/warm/up.php?a=1&b=%3Cx%3E",
            headers=(
                ("Host", "localhost"),
                ("User-Agent", "warm-up"),
                ("Content-Type", "application/json"),
                ("Cookie", "c=1"),
            ),
            body=b'{"a": "select 1 from t where x = \'y\'", "b": [1, "<b>x</b>", "../../a"]}',
        )
        evaluation = Evaluation(self, view, None, self._clock())
        evaluation.deadline = float("inf")
        evaluation.run()

    # -------------------------------------------------------------- evaluate

    def evaluate(self, view: RequestView, route: str | None = None) -> Verdict:
        """Run phases 1 and 2; never raises: an internal failure or timeout is the fail mode."""
        started = self._clock()
        state: Evaluation | None = None
        try:
            state = Evaluation(self, view, route, started)
            state.run()
        except EvaluationTimeout:
            assert state is not None
            return state.verdict(failure="timeout", elapsed=self._clock() - started)
        except Exception:  # fail safe on any bug in the rules or the engine
            if state is None:
                return Verdict(
                    self._fail_blocks,
                    0,
                    self.threshold,
                    failure="error",
                    elapsed=self._clock() - started,
                )
            return state.verdict(failure="error", elapsed=self._clock() - started)
        return state.verdict(failure=None, elapsed=self._clock() - started)


def _crs_setup(settings: _Settings) -> dict[str, str]:
    """What crs-setup.conf would set; the CRS's own 901 rules fill in every other default."""
    level = str(settings.paranoia_level)
    setup = {
        "crs_setup_version": "400",
        "blocking_paranoia_level": level,
        "detection_paranoia_level": level,
        "paranoia_level": level,
        "executing_paranoia_level": level,
        "inbound_anomaly_score_threshold": str(settings.anomaly_threshold),
    }
    setup.update({k.lower(): v for k, v in (settings.tx or {}).items()})
    return setup


def _route_exclusions(exclusions: Sequence[Exclusion]) -> dict[str, Runtime]:
    """Each route's exclusions, seeded into its requests' Runtime (the rest are compiled in)."""
    routes: dict[str, Runtime] = {}
    for exclusion in exclusions:
        for route in exclusion.routes:
            runtime = routes.setdefault(route, Runtime())
            if exclusion.fields:
                for text in exclusion.fields:
                    collection, test = parse_field(text)
                    runtime.targets.append((exclusion.rule_ids, None, collection, test))
            else:
                runtime.removed.extend(exclusion.rule_ids)
    return routes


def load_from_policy(attacks: Attacks, base_dir: Path | None = None) -> CrsEngine:
    """Compile the ruleset a policy names; a relative rules_dir is taken from `base_dir`."""
    rules_dir = Path(attacks.crs.rules_dir)
    if base_dir is not None and not rules_dir.is_absolute():
        rules_dir = base_dir / rules_dir
    return CrsEngine.load(
        rules_dir,
        attacks.crs.paranoia_level,
        attacks.crs.anomaly_threshold,
        exclusions=tuple(
            Exclusion(e.ranges, tuple(e.fields), tuple(e.routes)) for e in attacks.exclusions
        ),
        tx=attacks.crs.setup,
        time_budget=attacks.crs.time_budget,
        fail_mode=attacks.crs.on_timeout,
    )

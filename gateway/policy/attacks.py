"""The `validation.attacks:` block: CRS detection mode, ruleset, paranoia level, exclusions."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from gateway.policy.types import Model, Seconds

AttackMode = Literal["block", "detect", "off"]
"""block: 403 at the anomaly threshold; detect: forward, log and count the same; off."""

RuleRange = tuple[int, int]


def parse_rule_ids(values: tuple[int | str, ...]) -> tuple[RuleRange, ...]:
    """942100 or "932000-932999" -> inclusive ranges; anything else is a policy error."""
    ranges: list[RuleRange] = []
    for value in values:
        text = str(value).strip()
        low, dash, high = text.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"invalid rule id or range {value!r} (use 942100 or '932000-932999')")
        first, last = int(low), int(high) if dash else int(low)
        if first > last:
            raise ValueError(f"invalid rule range {value!r}: {first} is above {last}")
        ranges.append((first, last))
    return tuple(ranges)


class CrsSettings(Model):
    """Where the Core Rule Set lives and how strict it is."""

    rules_dir: str = Field(
        min_length=1, description="A CRS `rules/` directory; its *.conf files load in name order."
    )
    paranoia_level: int = Field(default=1, ge=1, le=4)
    anomaly_threshold: int = Field(
        default=5, ge=1, description="Inbound anomaly score at which a request is blocked."
    )
    time_budget: Seconds = Field(
        default=0.05, description="Evaluation time per request before `on_timeout` applies."
    )
    on_timeout: Literal["block", "pass"] = Field(
        default="block", description="What an evaluation over its budget (or failing) decides."
    )
    setup: dict[str, str] = Field(
        default_factory=dict,
        description="TX variables crs-setup.conf would set, e.g. allowed_methods: 'GET POST'.",
    )


class AttackExclusion(Model):
    """Switch rules off (optionally for some fields only, optionally on some routes only)."""

    rule_ids: tuple[int | str, ...] = Field(min_length=1)
    fields: tuple[str, ...] = Field(
        default=(),
        description="ARGS names (json.comment, q) or COLLECTION:name (REQUEST_HEADERS:Referer).",
    )
    routes: tuple[str, ...] = ()

    @field_validator("rule_ids")
    @classmethod
    def _ranges(cls, value: tuple[int | str, ...]) -> tuple[int | str, ...]:
        parse_rule_ids(value)
        return value

    @property
    def ranges(self) -> tuple[RuleRange, ...]:
        return parse_rule_ids(self.rule_ids)


class Attacks(Model):
    """Attack detection with the OWASP Core Rule Set."""

    mode: AttackMode = "block"
    crs: CrsSettings
    exclusions: tuple[AttackExclusion, ...] = ()

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        # YAML 1.1 reads a bare `off` as false; `mode: off` should still mean off.
        return "off" if value is False else value

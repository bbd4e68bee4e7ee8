"""The attacks policy block: defaults, rule ranges, and the errors a policy author sees."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.policy.attacks import Attacks
from gateway.validation.crs import load_from_policy
from tests.crs.conftest import request


def test_issue_example_parses_with_defaults() -> None:
    """The block from the issue parses; ranges become inclusive id ranges."""
    attacks = Attacks.model_validate(
        {
            "mode": "block",
            "crs": {
                "rules_dir": "/etc/gateway/crs/rules",
                "paranoia_level": 1,
                "anomaly_threshold": 5,
            },
            "exclusions": [
                {"rule_ids": [942100], "fields": ["json.comment"]},
                {"rule_ids": ["932000-932999"], "routes": ["docs"]},
            ],
        }
    )
    assert attacks.crs.time_budget == 0.05 and attacks.crs.on_timeout == "block"
    assert [e.ranges for e in attacks.exclusions] == [((942100, 942100),), ((932000, 932999),)]


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"crs": {"rules_dir": "r", "paranoia_level": 5}}, "less than or equal to 4"),
        ({"crs": {"rules_dir": "r"}, "mode": "warn"}, "'block', 'detect' or 'off'"),
        (
            {"crs": {"rules_dir": "r"}, "exclusions": [{"rule_ids": ["9x"]}]},
            "invalid rule id or range '9x'",
        ),
        ({"crs": {"rules_dir": "r"}, "exclusions": [{"rule_ids": ["9-1"]}]}, "9 is above 1"),
        ({"crs": {"rules_dir": "r", "paranoia": 2}}, "Extra inputs are not permitted"),
    ],
    ids=["paranoia-range", "mode", "bad-id", "reversed-range", "unknown-key"],
)
def test_policy_errors_are_explained(block: dict[str, object], message: str) -> None:
    """A wrong value is refused with a message naming what to write instead."""
    with pytest.raises(ValidationError, match=message):
        Attacks.model_validate(block)


def test_yaml_off_means_off() -> None:
    """`mode: off` (a YAML boolean) still means off."""
    assert Attacks.model_validate({"mode": False, "crs": {"rules_dir": "r"}}).mode == "off"


def test_policy_builds_an_engine_relative_to_the_policy_file(tmp_path: Path) -> None:
    """A relative rules_dir is read beside the policy; exclusions and setup TX apply."""
    (tmp_path / "crs").mkdir()
    (tmp_path / "crs" / "a.conf").write_text(
        'SecRule REQUEST_METHOD "!@within %{tx.allowed_methods}" '
        '"id:911100,phase:1,block,setvar:tx.anomaly_score=+5"\n'
    )
    attacks = Attacks.model_validate(
        {"crs": {"rules_dir": "crs", "setup": {"allowed_methods": "GET POST"}}}
    )
    engine = load_from_policy(attacks, base_dir=tmp_path)
    assert engine.evaluate(request(method="DELETE")).blocked
    assert not engine.evaluate(request(method="GET")).blocked

"""Fixtures of the deployment tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import CRS_DIR


@pytest.fixture
def crs_rules(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CRS rules the image installs, here from the shared copy (the policies name it by env)."""
    rules = CRS_DIR / "rules"
    if not rules.is_dir():
        pytest.skip(f"CRS not found at {rules}: the deployment policies enable attack detection")
    monkeypatch.setenv("GATEWAY_CRS_RULES", str(rules))
    return rules

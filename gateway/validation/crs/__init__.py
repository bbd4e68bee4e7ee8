"""OWASP CRS support: a SecLang-subset engine that compiles a ruleset once and scores requests."""

from __future__ import annotations

from gateway.validation.crs.engine import (
    CrsEngine,
    CrsLoadError,
    Exclusion,
    LoadReport,
    Verdict,
    load_from_policy,
)
from gateway.validation.crs.request import RequestView

__all__ = [
    "CrsEngine",
    "CrsLoadError",
    "Exclusion",
    "LoadReport",
    "RequestView",
    "Verdict",
    "load_from_policy",
]

"""Helpers for the CRS engine tests: requests as the middleware would describe them, rule text."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from gateway.validation.crs import CrsEngine, RequestView
from tests.conftest import CRS_DIR

NO_BUDGET = 30.0
"""Tests check decisions, not speed: a loaded CI machine must not turn them into timeouts."""

BROWSER = (
    ("Host", "shop.example.com"),
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Accept-Language", "en-GB,en;q=0.5"),
    ("Accept-Encoding", "gzip, deflate, br"),
)


def request(
    uri: str = "/",
    method: str = "GET",
    *,
    headers: tuple[tuple[str, str], ...] = BROWSER,
    body: bytes | str = b"",
    content_type: str | None = None,
    json_body: object = None,
) -> RequestView:
    """A RequestView with browser-like headers; a body brings its Content-Type and length."""
    if json_body is not None:
        body, content_type = json.dumps(json_body), "application/json"
    raw = body.encode() if isinstance(body, str) else body
    extra: tuple[tuple[str, str], ...] = ()
    if content_type is not None:
        extra = (("Content-Type", content_type), ("Content-Length", str(len(raw))))
    return RequestView(method, uri, "HTTP/1.1", headers + extra, raw, "192.0.2.10")


def rules(text: str, **options: object) -> CrsEngine:
    """An engine compiled from rule text written in the test."""
    return CrsEngine.from_text(textwrap.dedent(text), **options)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def crs_dir() -> Path:
    rules_dir = CRS_DIR / "rules"
    if not rules_dir.is_dir():
        pytest.skip(f"CRS not found at {rules_dir}")
    return rules_dir


@pytest.fixture(scope="session")
def crs(crs_dir: Path) -> CrsEngine:
    """The real CRS 4.28 at paranoia level 1, compiled once for the session."""
    return CrsEngine.load(crs_dir, paranoia_level=1, anomaly_threshold=5, time_budget=NO_BUDGET)

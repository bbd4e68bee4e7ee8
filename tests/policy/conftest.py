"""Helpers for the policy tests: the bad-policy fixtures and a policy CLI run in a subprocess."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.observability.logs import configure_logging

HERE = Path(__file__).resolve().parent
BAD = HERE / "bad"
ROOT = HERE.parents[1]
CONFIG = ROOT / "config"

ENV = {"GATEWAY_TEST_TIMEOUT": "soon"}
"""What the bad fixtures that read the environment expect to find there."""


def gateway_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m gateway ARGS` in a real subprocess, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT,
        env={**os.environ, **ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def fixture_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment the bad fixtures were written against."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GATEWAY_TEST_UNSET_HOST", raising=False)


class LogLines:
    """The JSON log lines written by gateways started after `attach()`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.stream = io.StringIO()
        self._monkeypatch = monkeypatch

    def attach(self) -> None:
        # Called in the test body: pytest swaps sys.stdout itself between setup and call.
        self._monkeypatch.setattr(sys, "stdout", self.stream)

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = self.stream.getvalue().splitlines()
        events = [json.loads(line) for line in lines if line.startswith("{")]
        return [event for event in events if event.get("event") == name]


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[LogLines]:
    """Log lines of gateways started after `logs.attach()`; request it before `make_gateway`.

    The gateway binds its log stream to sys.stdout when it starts. A stream of our own, never
    closed, lets the gateway still log while it stops, after pytest's capture is gone.
    """
    yield LogLines(monkeypatch)
    configure_logging(stream=sys.__stdout__)

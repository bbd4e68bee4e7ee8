"""Fixtures of the admin tests: the store kinds explain must leave untouched."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["memory", "redis"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The policy's store.url for each store kind."""
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("redis").url
    return url

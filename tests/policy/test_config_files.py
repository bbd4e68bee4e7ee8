"""Every policy in config/ loads and compiles; config/full.yaml shows every foundation key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway.policy.loader import load_policy
from gateway.policy.model import (
    AccessLog,
    DependencyCheck,
    Forwarding,
    Health,
    Limits,
    Listen,
    Logging,
    Match,
    Policy,
    Shutdown,
    Store,
    Upstream,
)
from gateway.runtime import compile_policy
from tests.policy.conftest import CONFIG

CONFIG_FILES = sorted(CONFIG.glob("*.yaml"))


def test_config_folder_has_the_examples() -> None:
    """The example policy and the full reference policy are both shipped."""
    assert {"example.yaml", "full.yaml"} <= {path.name for path in CONFIG_FILES}


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda path: path.name)
def test_config_file_loads_and_compiles(path: Path) -> None:
    """A policy in config/ is accepted by the loader and compiles to a route table."""
    loaded = load_policy(path)
    compiled = compile_policy(loaded, generation=1, default_upstream_url="http://127.0.0.1:3000")
    assert [route.name for route in compiled.routes] == [r.name for r in loaded.policy.routes]


FOUNDATION_KEYS: dict[type[BaseModel], set[str]] = {
    Policy: {"version", "listen", "upstream", "store", "forwarding", "logging", "health"}
    | {"shutdown", "limits", "routes"},
    Listen: {"proxy", "health", "metrics", "admin"},
    Upstream: {"url", "connect_timeout", "timeout", "max_connections", "host_header"},
    Store: {"url"},
    Forwarding: {"trusted_proxies"},
    Logging: {"level", "access"},
    AccessLog: {"mode", "sample_rate"},
    Health: {"checks", "max_event_loop_lag"},
    DependencyCheck: {"name", "type", "target", "timeout", "interval", "required"},
    Shutdown: {"drain", "grace"},
    Limits: {"max_header_line", "max_header_size"},
    Match: {"path", "path_prefix", "path_regex", "host", "methods"},
}


def _written(model: BaseModel, found: dict[type[BaseModel], set[str]]) -> None:
    """Collect, per model class, the keys the file wrote explicitly."""
    found.setdefault(type(model), set()).update(model.model_fields_set)
    for name in model.model_fields_set:
        value = getattr(model, name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, BaseModel):
                _written(item, found)


def test_full_policy_writes_every_foundation_key() -> None:
    """config/full.yaml sets every key of the foundation, so a reader sees each one in use."""
    found: dict[type[BaseModel], set[str]] = {}
    _written(load_policy(CONFIG / "full.yaml").policy, found)
    missing = {
        cls.__name__: sorted(keys - found.get(cls, set()))
        for cls, keys in FOUNDATION_KEYS.items()
        if keys - found.get(cls, set())
    }
    assert missing == {}
    route_keys = set().union(
        *(r.model_fields_set for r in load_policy(CONFIG / "full.yaml").policy.routes)
    )
    assert {"name", "match", "upstream"} <= route_keys

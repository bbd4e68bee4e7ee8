"""The modules compiled to C by mypyc, and whether this process runs them compiled.

mypyc turns these type-checked modules into C extensions that Python imports in place of the
.py files (an extension module wins over a source file in the same directory). They are the
request path and the attack detector: interpreting them costs more than the rest of the
gateway together. Nothing else changes: the .py files are the source, and without a build (or
with GATEWAY_PURE_PYTHON=1 at build time) the same modules run interpreted.

Read by setup.py without importing the package, so this module imports only the standard
library.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
from pathlib import Path

NATIVE_MODULES = (
    "gateway.capture.alerts",
    "gateway.capture.reasons",
    "gateway.errors",
    "gateway.middleware.attacks",
    "gateway.middleware.capture",
    "gateway.middleware.metrics",
    "gateway.middleware.ratelimit",
    "gateway.middleware.request_id",
    "gateway.middleware.route",
    "gateway.middleware.validation",
    "gateway.observability.families",
    "gateway.observability.metrics",
    "gateway.observability.request_log",
    "gateway.problem",
    "gateway.ratelimit.adaptive",
    "gateway.ratelimit.headers",
    "gateway.ratelimit.identity",
    "gateway.ratelimit.keys",
    "gateway.ratelimit.limiter",
    "gateway.ratelimit.strategies",
    "gateway.resilience.breaker",
    "gateway.resilience.bulkhead",
    "gateway.resilience.call",
    "gateway.resilience.compile",
    "gateway.resilience.retry",
    "gateway.runtime",
    "gateway.server.body",
    "gateway.server.connection",
    "gateway.server.listener",
    "gateway.server.request",
    "gateway.state",
    "gateway.stores.base",
    "gateway.stores.failover",
    "gateway.stores.memory",
    "gateway.stores.redis",
    "gateway.upstream.headers",
    "gateway.upstream.lean",
    "gateway.upstream.proxy",
    "gateway.validation.attacks",
    "gateway.validation.body",
    "gateway.validation.crs",
    "gateway.validation.crs.actions",
    "gateway.validation.crs.compiled",
    "gateway.validation.crs.compiler",
    "gateway.validation.crs.engine",
    "gateway.validation.crs.evaluation",
    "gateway.validation.crs.exclusions",
    "gateway.validation.crs.operators",
    "gateway.validation.crs.parser",
    "gateway.validation.crs.plan",
    "gateway.validation.crs.prefilter",
    "gateway.validation.crs.request",
    "gateway.validation.crs.sets",
    "gateway.validation.crs.texts",
    "gateway.validation.crs.transforms",
    "gateway.validation.crs.variables",
    "gateway.validation.forms",
    "gateway.validation.jsonlimits",
    "gateway.validation.limits",
    "gateway.validation.paths",
    "gateway.validation.sanitize",
    "gateway.validation.schema",
    "gateway.validation.ssrf",
    "gateway.validation.validator",
)
ROOT = Path(__file__).resolve().parent.parent
DIGEST_FILE = ROOT / "build" / "native-digest"
"""Written by scripts/bootstrap after a build: the `source_digest()` the extensions came from."""


def source_files() -> list[str]:
    """The .py files of NATIVE_MODULES, relative to the project root (what mypyc is given)."""
    paths = [name.replace(".", "/") for name in NATIVE_MODULES]
    return [f"{path}/__init__.py" if (ROOT / path).is_dir() else f"{path}.py" for path in paths]


def source_digest() -> str:
    """A digest of every source the extensions depend on: all of the package's .py files (the
    compiled code bakes in the types of what it calls) and the build's own files."""
    digest = hashlib.sha256()
    for path in [*sorted((ROOT / "gateway").rglob("*.py")), ROOT / "setup.py"]:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def built_digest() -> str | None:
    """The digest of the sources of the extensions in place; None when none were built here."""
    try:
        return DIGEST_FILE.read_text().strip()
    except FileNotFoundError:
        return None


def native_state() -> tuple[list[str], bool]:
    """(the NATIVE_MODULES this process runs compiled, whether those are stale); imports them.

    Stale: built from other sources than those in the tree (edited since the last
    scripts/bootstrap), so the process does not run the code that is read."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    compiled = [
        name
        for name in NATIVE_MODULES
        if str(importlib.import_module(name).__file__).endswith(suffixes)
    ]
    built = built_digest() if compiled else None
    return compiled, built is not None and built != source_digest()


if __name__ == "__main__":  # scripts/bootstrap: `python gateway/native.py digest`
    print(source_digest())

"""`pytest -p tests.pure_python`: the suite on the interpreted modules, even where the compiled
ones are built (gateway/native.py).

The .py files are the source either way; a build only adds extensions that Python prefers.
This finder hands out the source instead, so that the fallback a GATEWAY_PURE_PYTHON=1 build
runs is tested on every CI run too (scripts/test). Loaded with -p, it is in place before
any conftest imports the package.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType


class SourceFirst(importlib.abc.MetaPathFinder):
    """Finds gateway's modules as the path finder does, but from .py where it found a .so."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != "gateway" and not name.startswith("gateway."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            return spec
        assert spec.origin is not None
        compiled = Path(spec.origin)  # name.cpython-311-....so, or __init__.cpython-...so
        source = compiled.with_name(compiled.name.partition(".")[0] + ".py")
        return importlib.util.spec_from_file_location(
            name, source, submodule_search_locations=spec.submodule_search_locations
        )


PURE = SourceFirst()
sys.meta_path.insert(0, PURE)

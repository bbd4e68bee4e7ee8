"""The gateway's build: pyproject.toml holds the metadata; this adds the mypyc extensions.

The modules listed in gateway/native.py are compiled by mypyc when mypy (and the gateway's
dependencies, which mypyc type-checks against) are importable in the build environment:
`pip install --no-build-isolation .` in an environment that has them, as scripts/bootstrap and
the Dockerfile do. Otherwise, or with GATEWAY_PURE_PYTHON=1, the package is pure Python.
"""

import os
import runpy

from setuptools import setup


def native_extensions() -> list[object]:
    if os.environ.get("GATEWAY_PURE_PYTHON") == "1":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    native = runpy.run_path("gateway/native.py")
    # One C file per module (multi_file), so that `build_ext -j` compiles them in parallel.
    extensions = mypycify(
        native["source_files"](), opt_level="3", group_name="gateway", multi_file=True
    )
    return list(extensions)


setup(ext_modules=native_extensions())

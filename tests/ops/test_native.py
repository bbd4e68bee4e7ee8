"""The modules mypyc compiles (gateway/native.py): built, in use, and written within what mypyc
compiles faithfully."""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.errors import caused_by
from gateway.native import NATIVE_MODULES, ROOT, built_digest, source_digest, source_files


def _trees() -> list[tuple[str, ast.Module]]:
    return [(path, ast.parse((ROOT / path).read_text(), path)) for path in source_files()]


def test_every_native_module_runs_compiled_once_built() -> None:
    """After scripts/bootstrap, each listed module is imported from its extension, and from
    the sources in the tree (a module missing from the build would run interpreted, unseen)."""
    if built_digest() is None:
        pytest.skip("the native modules are not built here (GATEWAY_PURE_PYTHON=1)")
    if "tests.pure_python" in sys.modules:
        pytest.skip("this run takes the interpreted modules (-p tests.pure_python)")
    assert built_digest() == source_digest()
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    interpreted = [
        name
        for name in NATIVE_MODULES
        if not str(importlib.import_module(name).__file__).endswith(suffixes)
    ]
    assert interpreted == []


def test_no_compiled_coroutine_awaits_while_handling_an_exception() -> None:
    """Compiled, a coroutine that suspends in a `finally` block, or (in some cases) in an
    `except` block, leaves the exception it was handling as the thread's current one: every
    later exception on the event loop gets it as its __context__ (captured events then chain
    unrelated errors, and httptools' own context, which the server reads to answer a refused
    head, is overwritten). Await after the block instead."""
    found = [
        f"{path}:{node.lineno}"
        for path, tree in _trees()
        for block in ast.walk(tree)
        if isinstance(block, ast.Try)
        for statement in [*block.finalbody, *(s for h in block.handlers for s in h.body)]
        for node in ast.walk(statement)
        if isinstance(node, ast.Await | ast.AsyncFor | ast.AsyncWith)
    ]
    assert found == []


def test_no_compiled_function_gives_one_name_two_exception_types() -> None:
    """mypyc gives a variable one type per function: `except A as exc` and `except B as exc`
    in one function make binding a B a TypeError at run time."""
    found = []
    for path, tree in _trees():
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            types: dict[str, set[str]] = {}
            for node in ast.walk(function):
                if isinstance(node, ast.ExceptHandler) and node.name and node.type is not None:
                    types.setdefault(node.name, set()).add(ast.unparse(node.type))
            found += [f"{path}:{function.lineno} {name}" for name, t in types.items() if len(t) > 1]
    assert found == []


def test_no_compiled_module_raises_from() -> None:
    """mypyc 2.4 compiles `raise X from cause` as `raise X`: the cause (a store's or an
    upstream's own error, which logs and error events show) is lost. Compiled modules chain
    with `raise caused_by(X, cause)` (gateway/errors.py), which holds in both modes."""
    found = [
        f"{path}:{node.lineno}"
        for path, tree in _trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.Raise) and node.cause is not None
    ]
    assert found == []


def test_caused_by_chains_as_raise_from_does() -> None:
    def raise_chained(cause: BaseException | None) -> None:
        try:
            raise OSError("the store is down")
        except OSError:
            raise caused_by(RuntimeError("unavailable"), cause)  # noqa: B904

    cause = OSError("the store is down")
    with pytest.raises(RuntimeError) as chained:
        raise_chained(cause)
    assert chained.value.__cause__ is cause and chained.value.__suppress_context__
    with pytest.raises(RuntimeError) as bare:
        raise_chained(None)
    assert bare.value.__cause__ is None and bare.value.__suppress_context__


def test_the_installed_command_runs_from_anywhere(tmp_path: Path) -> None:
    """`.venv/bin/gateway`, started outside the project directory, finds the compiled modules'
    shared library (a top-level module beside gateway/): scripts/run starts it this way."""
    command = Path(sys.executable).with_name("gateway")
    if not command.exists():
        pytest.skip("the gateway command is not installed in this environment")
    policy = ROOT / "config" / "example.yaml"
    result = subprocess.run(
        [str(command), "check", str(policy)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert result.returncode == 0, result.stderr[-2000:]

"""The command line: `gateway run`, `gateway check`, `gateway schema`, `gateway explain`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from gateway.admin.cli import add_explain_command
from gateway.errors import PolicyError
from gateway.policy.loader import EXTENSION_PREFIX
from gateway.policy.model import Policy
from gateway.runtime import check_policy

DEFAULT_POLICY = "config/example.yaml"


def _run(args: argparse.Namespace) -> int:
    from gateway.serve import run

    # Checked before any loop or port exists, so a bad policy is a message and exit 2 either way.
    try:
        loaded = check_policy(args.policy)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 2
    serve: Coroutine[Any, Any, int]
    runner: Callable[[Coroutine[Any, Any, int]], int] = asyncio.run
    if args.worker_index is None and loaded.policy.workers > 1:
        from gateway.workers import supervise

        # Plain asyncio: it only waits on its workers, and uvloop cannot start a process group.
        serve = supervise(args.policy, loaded.policy)
    else:
        serve = run(args.policy, worker=args.worker_index, proxy_port=args.proxy_port)
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
            pass
        else:
            runner = uvloop.run
    try:
        return runner(serve)
    except OSError as exc:  # a port already taken, an address not on this host
        print(f"gateway: cannot start: {exc}", file=sys.stderr)
        return 1


def _check(args: argparse.Namespace) -> int:
    failed = False
    for path in args.paths:
        try:
            check_policy(path)
        except PolicyError as exc:
            failed = True
            for message in exc.messages:
                print(message)
        else:
            print(f"{path}: ok", file=sys.stderr)
    return 2 if failed else 0


def _schema(_: argparse.Namespace) -> int:
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "gateway policy"
    schema["patternProperties"] = {f"^{EXTENSION_PREFIX}": {}}
    try:
        print(json.dumps(schema, indent=2), flush=True)
    except BrokenPipeError:
        # `gateway schema | head` closes the pipe early: that is the reader's choice, not an error.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces stdout for the exit flush
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve the proxy, health, metrics and admin ports")
    run.add_argument("--policy", default=DEFAULT_POLICY, help="the policy file (YAML)")
    # Set by the supervisor of `workers: N` on each worker it starts (gateway/workers.py).
    run.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    run.add_argument("--proxy-port", type=int, default=None, help=argparse.SUPPRESS)
    run.set_defaults(func=_run)
    check = commands.add_parser("check", help="validate policy files; exit 2 on any mistake")
    check.add_argument("paths", nargs="+", metavar="PATH")
    check.set_defaults(func=_check)
    schema = commands.add_parser("schema", help="print the JSON Schema of the policy file")
    schema.set_defaults(func=_schema)
    add_explain_command(commands)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

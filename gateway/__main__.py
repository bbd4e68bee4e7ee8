"""The command line: `gateway run`, `gateway check`, `gateway schema`, `gateway explain`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

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
        check_policy(args.policy)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        return runner(run(args.policy))
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
    print(json.dumps(schema, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve the proxy, health, metrics and admin ports")
    run.add_argument("--policy", default=DEFAULT_POLICY, help="the policy file (YAML)")
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

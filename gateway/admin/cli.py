"""`gateway explain`: ask a running gateway's admin port what it would do with a request."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"invalid header {text!r} (use 'Name: value')")
    return name.strip(), value.strip()


def add_explain_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    explain = commands.add_parser(
        "explain", help="show what a running gateway would do with a request (nothing is spent)"
    )
    explain.add_argument("--admin", default="http://127.0.0.1:8082", help="the admin port's URL")
    explain.add_argument(
        "--token",
        default=os.environ.get("GATEWAY_ADMIN_TOKEN"),
        help="the admin token (default: $GATEWAY_ADMIN_TOKEN)",
    )
    explain.add_argument("method")
    explain.add_argument("path", help="the request target, e.g. /api/orders?id=7")
    explain.add_argument(
        "-H", "--header", action="append", default=[], type=_header, metavar="'NAME: VALUE'"
    )
    explain.add_argument("--data", help="the request body")
    explain.add_argument("--client-ip", help="the client address (default: as the proxy sees it)")
    explain.set_defaults(func=explain_command)


def explain_command(args: argparse.Namespace) -> int:
    """Print the admin port's answer as JSON; exit 0 on an answer, 1 when there is none."""
    payload: dict[str, object] = {
        "method": args.method,
        "path": args.path,
        "headers": [list(pair) for pair in args.header],
    }
    if args.data is not None:
        payload["body"] = args.data
    if args.client_ip:
        payload["client_ip"] = args.client_ip
    request = urllib.request.Request(
        args.admin.rstrip("/") + "/admin/explain",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    if args.token:
        request.add_header("Authorization", f"Bearer {args.token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as exc:
        print(f"gateway explain: {exc.code} {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"gateway explain: cannot reach {args.admin}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 0

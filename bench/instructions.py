"""Instructions per request, counted by valgrind's callgrind: nginx and the gateway side by side.

Requests/s on a shared two-core machine move by 10% from run to run; an instruction count does
not: the same code, policy and requests give the same number whatever else the machine is
doing. So this bench is the A/B tool for a change to the request path, beside bench/run.py's
requests/s (which it does not replace: it counts user-space instructions only, not the kernel's
work for each socket call, not cache misses, not waiting).

Each target runs under callgrind with collection switched off; after a warm-up, collection is
switched on for `--requests` sequential keep-alive GETs from a client outside valgrind, then
off again. The origin is the same nginx as in bench/run.py. A sequential client is the worst
case for the Redis store (no two decisions share a round trip), which the ratios note.

    .venv/bin/python bench/instructions.py                 # every target, 2,000 requests each
    .venv/bin/python bench/instructions.py --requests 500  # quicker, same numbers within ~1%
    .venv/bin/python bench/instructions.py --smoke         # nginx, plain, memory limiter
    .venv/bin/python bench/instructions.py --keep /tmp/ir  # and keep the profiles
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (
    NGINX_COMMON,
    NGINX_PROXY,
    ORIGIN,
    PATH,
    ROOT,
    Stack,
    free_port,
    native_note,
    start_redis,
)

PLAIN = "gateway, no policies"
LIMITER = "gateway + memory limiter"
REDIS_LIMITER = "gateway + redis limiter"
ALL_MEMORY = "gateway, all policies, memory store"
ALL_REDIS = "gateway, all policies, redis store"
RULE = {"name": "bench", "key": ["client_ip"], "limit": 1_000_000_000, "window": "1m"}
WARM_UP = 300


def gateway_policy(
    origin: str, *, store: str | None, rule: bool, all_on: bool
) -> dict[str, object]:
    if all_on:
        policy = yaml.safe_load((ROOT / "bench" / "all_policies.yaml").read_text())
    else:
        route: dict[str, object] = {"name": "api", "match": {"path_prefix": "/"}}
        if rule:
            route["rate_limit"] = [RULE]
        policy = {"routes": [route]}
    policy["listen"] = {k: "127.0.0.1:0" for k in ("proxy", "health", "metrics", "admin")}
    policy.setdefault("upstream", {})["url"] = origin
    policy["store"] = {"url": store or "memory://"}
    policy["logging"] = {"access": {"mode": "off"}}
    policy["shutdown"] = {"drain": "0s", "grace": "1s"}
    return policy


def counted(
    argv: list[str], workdir: Path, name: str, ready: Callable[[Path], str | None], requests: int
) -> float:
    """Run argv under callgrind; once `ready` names its address, count `requests` GETs."""
    out = workdir / f"{name}.out"
    data = workdir / f"{name}.callgrind"
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    process = subprocess.Popen(
        [*valgrind, f"--callgrind-out-file={data}", *argv],
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 120  # a Python program starts slowly under valgrind
        while (address := ready(out)) is None:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: {name} did not start; see {out}")
            time.sleep(0.2)
        host, port = address.rsplit(":", 1)
        client = http.client.HTTPConnection(host, int(port), timeout=60)
        _get(client, WARM_UP)
        _control(process.pid, "on")
        _get(client, requests)
        _control(process.pid, "off")
        client.close()
    finally:
        process.terminate()
        process.wait(60)
    return _total(data) / requests


def gateway_ready(out: Path) -> str | None:
    for line in out.read_text(errors="replace").splitlines():
        if '"gateway_started"' in line:
            return str(json.loads(line)["proxy_url"]).removeprefix("http://")
    return None


def port_ready(port: int) -> Callable[[Path], str | None]:
    """nginx says nothing when it is ready: its port answers."""

    def ready(_: Path) -> str | None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return f"127.0.0.1:{port}"
        return None

    return ready


def _get(client: http.client.HTTPConnection, n: int) -> None:
    for _ in range(n):
        client.request("GET", PATH)
        response = client.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"bench: {PATH} answered {response.status}")


def _control(pid: int, switch: str) -> None:
    subprocess.run(
        ["callgrind_control", "--instr=" + switch, str(pid)], check=True, capture_output=True
    )


def _total(data: Path) -> int:
    """The instructions counted while collection was on, over every dump of the run."""
    total = 0
    for dump in data.parent.glob(data.name + "*"):
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--smoke", action="store_true", help="100 requests; no all-policies rows")
    parser.add_argument(
        "--keep", type=Path, help="copy callgrind's data files here, for callgrind_annotate"
    )
    args = parser.parse_args()
    if args.smoke:
        args.requests = 100
    for tool in ("valgrind", "callgrind_control", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: {tool} is missing")
    counts: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="gateway-bench-ir-") as tmp, Stack(Path(tmp)) as stack:
        workdir = Path(tmp)
        origin_port = free_port()
        stack.nginx("origin", ORIGIN.format(port=origin_port), None)
        origin = f"http://127.0.0.1:{origin_port}"
        redis = start_redis(stack, None)

        proxy_port = free_port()
        conf = workdir / "proxy.conf"
        body = NGINX_PROXY.format(origin=origin_port, port=proxy_port)
        conf.write_text(NGINX_COMMON.format(dir=workdir, name="proxy", body=body))
        # No master process: the process under valgrind is the one that serves.
        nginx = ["nginx", "-p", str(workdir), "-c", str(conf), "-g", "master_process off;"]
        counts["nginx proxy"] = counted(
            nginx, workdir, "nginx-proxy", port_ready(proxy_port), args.requests
        )

        targets = [
            (PLAIN, None, False, False),
            (LIMITER, None, True, False),
            (ALL_MEMORY, None, True, True),
        ]
        if redis is not None:
            targets += [(REDIS_LIMITER, redis, True, False), (ALL_REDIS, redis, True, True)]
        if args.smoke:
            targets = targets[:2]
        for name, store, rule, all_on in targets:
            path = workdir / f"{len(counts)}.yaml"
            policy = gateway_policy(origin, store=store, rule=rule, all_on=all_on)
            path.write_text(yaml.safe_dump(policy))
            argv = [sys.executable, "-m", "gateway", "run", "--policy", str(path)]
            counts[name] = counted(
                argv, workdir, f"target{len(counts)}", gateway_ready, args.requests
            )
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            for data in workdir.glob("*.callgrind"):
                shutil.copy(data, args.keep / data.name)
    print(report(counts, args.requests))
    return 0


def report(counts: dict[str, float], requests: int) -> str:
    nginx = counts["nginx proxy"]
    plain = counts[PLAIN]
    lines = [
        f"callgrind, {requests:,} sequential keep-alive GET {PATH} per target "
        f"(user-space instructions; the kernel's share is not counted); {native_note()}",
        "",
        "| target | instructions/request | vs nginx | vs gateway, no policies |",
        "|---|---:|---:|---:|",
    ]
    for name, count in counts.items():
        lines.append(f"| {name} | {count:,.0f} | {count / nginx:.1f}x | {count / plain:.2f}x |")
    lines.append("")
    for name in (LIMITER, REDIS_LIMITER):
        if name in counts:
            lines.append(
                f"{name}: the limiter costs {counts[name] - plain:,.0f} instructions a request; "
                f"by instructions the gateway keeps {plain / counts[name]:.2f}x of its rate "
                "without it" + (" (no batching at concurrency 1)" if name == REDIS_LIMITER else "")
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

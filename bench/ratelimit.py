"""The gateway with and without a rate limiter (memory, Redis), beside the bare aiohttp proxy.

Same set-up as bench/run.py (nginx origin, proxies on CPU 1, origin + wrk + redis on CPU 0),
interleaved rounds, medians. The rule's limit is never reached: this measures the decision's
cost, not refusals. Beside requests/s it prints each gateway's CPU time per request and the
limiter's own share (the difference from the gateway without it), which stays comparable while
the rest of the request path changes and is less skewed by other work on a shared machine.

    .venv/bin/python bench/ratelimit.py            # 5 rounds x 4 s per target
    .venv/bin/python bench/ratelimit.py --smoke    # 1 round x 1 s
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ORIGIN, ROOT, Result, Stack, free_port, pinned, wait_ok, wrk

PLAIN = "gateway, no limiter"
LIMITED = ("gateway + memory limiter", "gateway + redis limiter")

RULE = {"name": "bench", "key": ["client_ip"], "limit": 1_000_000_000, "window": "1m"}


def start_gateway(stack: Stack, name: str, origin: str, store: str | None, cpu: int | None) -> str:
    route: dict[str, object] = {"name": "api", "match": {"path_prefix": "/"}}
    if store is not None:
        route["rate_limit"] = [RULE]
    policy = {
        "listen": {k: "127.0.0.1:0" for k in ("proxy", "health", "metrics", "admin")},
        "upstream": {"url": origin},
        "store": {"url": store or "memory://"},
        "logging": {"access": {"mode": "off"}},
        "shutdown": {"drain": "0s", "grace": "1s"},
        "routes": [route],
    }
    path = stack.workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(policy))
    argv = [sys.executable, "-m", "gateway", "run", "--policy", str(path)]
    stack.spawn(name, pinned(cpu, argv), cwd=ROOT)
    out = stack.workdir / f"{name}.out"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for line in out.read_text().splitlines():
            if '"gateway_started"' in line:
                return str(json.loads(line)["proxy_url"]) + "/bench"
        time.sleep(0.1)
    raise SystemExit(f"bench: {name} did not start; see {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.seconds = 1, 1.0
    for tool in ("wrk", "nginx", "redis-server"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: {tool} is missing")
    pinned_cpus = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    side, proxies = (0, 1) if pinned_cpus else (None, None)
    with tempfile.TemporaryDirectory(prefix="gateway-bench-rl-") as tmp, Stack(Path(tmp)) as stack:
        origin_port, redis_port, bare_port = free_port(), free_port(), free_port()
        stack.nginx("origin", ORIGIN.format(port=origin_port), side)
        redis = ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"]
        stack.spawn("redis", pinned(side, redis))
        origin = f"http://127.0.0.1:{origin_port}"
        bare = [sys.executable, str(ROOT / "bench" / "bare_proxy.py"), str(bare_port), origin]
        stack.spawn("bare", pinned(proxies, bare))
        urls = {
            "bare aiohttp proxy": f"http://127.0.0.1:{bare_port}/bench",
            PLAIN: start_gateway(stack, "plain", origin, None, proxies),
            LIMITED[0]: start_gateway(stack, "memory", origin, "memory://", proxies),
            LIMITED[1]: start_gateway(
                stack, "redis", origin, f"redis://127.0.0.1:{redis_port}/0", proxies
            ),
        }
        names = ("bare", "plain", "memory", "redis")
        pids = {name: stack.pids[n] for name, n in zip(urls, names, strict=True)}
        for url in urls.values():
            wait_ok(url)
            wrk(url, 1, args.connections, side)  # warm-up
        runs: dict[str, list[Result]] = {name: [] for name in urls}
        for _ in range(args.rounds):
            for name, url in urls.items():
                runs[name].append(wrk(url, args.seconds, args.connections, side, pids[name]))
    print(report(runs, args))
    return 0


def report(runs: dict[str, list[Result]], args: argparse.Namespace) -> str:
    """Requests/s and the process's CPU per request, medians; the limiter's own cost in µs is
    the CPU difference from the gateway without it, which holds while the rest gets faster."""
    rps = {name: statistics.median(r.rps for r in results) for name, results in runs.items()}
    cpu = {
        name: statistics.median(r.cpu_us or 0.0 for r in results) for name, results in runs.items()
    }
    errors = {name: sum(r.errors for r in results) for name, results in runs.items()}
    plain, bare = rps[PLAIN], rps["bare aiohttp proxy"]
    lines = [
        f"wrk -t1 -c{args.connections} -d{args.seconds:g}s, {args.rounds} rounds, medians; "
        f"load average {os.getloadavg()[0]:.2f}",
        "",
        "| target | requests/s | vs gateway, no limiter | vs bare | CPU µs/request | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, value in rps.items():
        lines.append(
            f"| {name} | {value:,.0f} | {value / plain:.2f} | {value / bare:.2f} "
            f"| {cpu[name]:.1f} | {errors[name]} |"
        )
    lines.append("")
    for name, goal in zip(LIMITED, (0.85, 0.75), strict=True):
        lines.append(
            f"{name}: {rps[name] / plain:.2f}x of no limiter (goal >= {goal}), "
            f"by CPU {cpu[PLAIN] / cpu[name]:.2f}x; the limiter adds "
            f"{cpu[name] - cpu[PLAIN]:.1f} µs CPU per request"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

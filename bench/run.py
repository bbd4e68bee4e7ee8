"""Side-by-side proxy benchmark on this machine: upstream direct, gateway, bare aiohttp, nginx.

Each proxy forwards to the same cheap origin (nginx answering a 3-byte 200). The proxies run on
CPU 1, the origin, redis and wrk on CPU 0 (taskset), as in ../shared/notes/perf.md. Targets are
measured in turn, several interleaved rounds, at 32 connections and then at 1, and the medians
printed with every ratio of issue 10: the gateway with all policies on (bench/all_policies.yaml)
against nginx, with the memory store and with the Redis store, and its added p50 latency over
nginx at concurrency 1.

    .venv/bin/python bench/run.py                 # 5 rounds x 4 s per target, ~4 min
    .venv/bin/python bench/run.py --smoke         # 1 round x 1 s, skips nginx if absent
    .venv/bin/python bench/run.py --clients       # plus all policies on aiohttp's client
    .venv/bin/python bench/run.py --workers       # plus all policies with `workers: 2` on CPUs 0-1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
PATH = "/api/bench"
"""Requested path: the example policy's `api` route."""
ALL_MEMORY = "gateway, all policies, memory store"
ALL_REDIS = "gateway, all policies, redis store"
ALL_AIOHTTP = "gateway, all policies, aiohttp client"
TWO_WORKERS = "gateway, all policies, 2 workers"
"""`workers: 2` pinned to both CPUs, against the one-worker row on CPU 1 (the Redis store when
there is one, so that limits stay exact across the workers)."""
LATENCY = ("nginx proxy", ALL_MEMORY)
"""Measured again at concurrency 1, for the added p50 latency."""


@dataclass(frozen=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float | None = None
    """CPU time the target's processes spent per request: steadier than requests/s when other
    work shares the machine, since time the target waits for its core is not counted."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (nginx's worker is one)."""
    process = psutil.Process(pid)
    total = 0.0
    for proc in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(cpu: int | str | None, argv: list[str]) -> list[str]:
    return argv if cpu is None else ["taskset", "-c", str(cpu), *argv]


def wait_ok(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {url} did not answer 200 within {timeout}s")
        time.sleep(0.1)


NGINX_COMMON = """
worker_processes 1;
daemon off;
pid {dir}/{name}.pid;
error_log {dir}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body-{name};
  proxy_temp_path {dir}/proxy-{name};
  fastcgi_temp_path {dir}/fastcgi-{name};
  uwsgi_temp_path {dir}/uwsgi-{name};
  scgi_temp_path {dir}/scgi-{name};
  keepalive_requests 1000000;
  {body}
}}
"""

ORIGIN = """server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok\\n"; }} }}"""

NGINX_PROXY = """
  upstream origin {{ server 127.0.0.1:{origin}; keepalive 64; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
"""


class Stack(contextlib.ExitStack):
    """Every process the bench starts, stopped on exit whatever happens."""

    def __init__(self, workdir: Path) -> None:
        super().__init__()
        self.workdir = workdir
        self.pids: dict[str, int] = {}

    def spawn(self, name: str, argv: list[str], cwd: Path | None = None) -> None:
        log = (self.workdir / f"{name}.out").open("wb")
        self.callback(log.close)
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
        self.pids[name] = process.pid  # taskset execs the program: the same pid

        def stop() -> None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

        self.callback(stop)

    def nginx(self, name: str, body: str, cpu: int | None) -> None:
        conf = self.workdir / f"{name}.conf"
        conf.write_text(NGINX_COMMON.format(dir=self.workdir, name=name, body=body))
        self.spawn(name, pinned(cpu, ["nginx", "-p", str(self.workdir), "-c", str(conf)]))


def start_gateway(
    stack: Stack,
    origin: str,
    access: str,
    cpu: int | str | None,
    *,
    name: str = "gateway",
    policy_file: Path = ROOT / "config" / "example.yaml",
    store: str | None = None,
    client: str | None = None,
    workers: int = 1,
) -> str:
    """A gateway on a policy file, ports chosen by the OS, the access log as asked."""
    policy = yaml.safe_load(policy_file.read_text())
    policy["listen"] = {k: "127.0.0.1:0" for k in ("proxy", "health", "metrics", "admin")}
    policy.setdefault("upstream", {})["url"] = origin
    if client is not None:
        policy["upstream"]["client"] = client
    if store is not None:
        policy["store"] = {"url": store}
    if workers > 1:
        policy["workers"] = workers
    policy.setdefault("logging", {})["access"] = {"mode": access, "sample_rate": 0.01}
    policy["shutdown"] = {"drain": "0s", "grace": "1s"}  # nothing to drain once wrk is done
    path = stack.workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(policy))
    stack.spawn(
        name,
        pinned(cpu, [sys.executable, "-m", "gateway", "run", "--policy", str(path)]),
        cwd=ROOT,
    )
    out = stack.workdir / f"{name}.out"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for line in out.read_text().splitlines():
            if '"gateway_started"' in line:
                return str(json.loads(line)["proxy_url"])
        time.sleep(0.1)
    raise SystemExit(f"bench: the gateway did not start; see {out}")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _search(pattern: str, text: str) -> str:
    found = re.search(pattern, text, re.MULTILINE)
    if found is None:
        raise SystemExit(f"bench: unexpected wrk output:\n{text}")
    return found.group(1)


def _ms(text: str) -> float:
    number, unit = _search(r"^([\d.]+)", text), text.lstrip("0123456789.")
    return float(number) * _UNITS[unit]


def start_redis(stack: Stack, cpu: int | None) -> str | None:
    """A throw-away redis-server for the Redis-store row; None when there is no binary."""
    if shutil.which("redis-server") is None:
        return None
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    stack.spawn("redis", pinned(cpu, [*argv, "--appendonly", "no"]))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return f"redis://127.0.0.1:{port}/0"
        time.sleep(0.1)
    raise SystemExit("bench: redis-server did not start")


def wrk(
    url: str, seconds: float, connections: int, cpu: int | None, pid: int | None = None
) -> Result:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", url]
    before = cpu_seconds(pid) if pid is not None else 0.0
    out = subprocess.run(pinned(cpu, argv), capture_output=True, text=True, check=True).stdout
    spent = cpu_seconds(pid) - before if pid is not None else None
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    rps = float(_search(r"Requests/sec:\s+([\d.]+)", out))
    return Result(
        rps=rps,
        p50_ms=_ms(_search(r"^\s+50%\s+([\d.]+(?:us|ms|s))$", out)),
        p99_ms=_ms(_search(r"^\s+99%\s+([\d.]+(?:us|ms|s))$", out)),
        errors=errors,
        cpu_us=None if spent is None or rps <= 0 else spent * 1e6 / (rps * seconds),
    )


@contextlib.contextmanager
def targets(
    args: argparse.Namespace, workdir: Path
) -> Iterator[tuple[dict[str, str], dict[str, int]]]:
    """Start the origin and the proxies; yield name -> URL and name -> pid of the proxies."""
    two_cpus = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    origin_cpu, proxy_cpu = (0, 1) if two_cpus else (None, None)
    have_nginx = shutil.which("nginx") is not None
    if not have_nginx and not args.smoke:
        raise SystemExit("bench: nginx is missing (apt-get install nginx-light)")
    with Stack(workdir) as stack:
        origin_port = free_port()
        if have_nginx:
            stack.nginx("origin", ORIGIN.format(port=origin_port), origin_cpu)
        else:  # smoke only: an aiohttp origin stands in
            stack.spawn(
                "origin",
                pinned(
                    origin_cpu,
                    [
                        sys.executable,
                        "-c",
                        textwrap.dedent(f"""
                from aiohttp import web
                app = web.Application()
                app.router.add_get("/{{t:.*}}", lambda r: web.Response(text="ok\\n"))
                web.run_app(app, host="127.0.0.1", port={origin_port}, print=None)
            """),
                    ],
                ),
            )
        origin = f"http://127.0.0.1:{origin_port}"
        urls = {"upstream direct": origin + PATH}
        urls["gateway"] = start_gateway(stack, origin, args.access_log, proxy_cpu) + PATH
        all_on = ROOT / "bench" / "all_policies.yaml"
        urls[ALL_MEMORY] = (
            start_gateway(
                stack, origin, args.access_log, proxy_cpu, name="gateway-all", policy_file=all_on
            )
            + PATH
        )
        redis_url = start_redis(stack, origin_cpu)
        if redis_url is not None:
            urls[ALL_REDIS] = (
                start_gateway(
                    stack,
                    origin,
                    args.access_log,
                    proxy_cpu,
                    name="gateway-all-redis",
                    policy_file=all_on,
                    store=redis_url,
                )
                + PATH
            )
        if args.clients:
            urls[ALL_AIOHTTP] = (
                start_gateway(
                    stack,
                    origin,
                    args.access_log,
                    proxy_cpu,
                    name="gateway-all-aiohttp",
                    policy_file=all_on,
                    client="aiohttp",
                )
                + PATH
            )
        if args.workers:
            urls[TWO_WORKERS] = (
                start_gateway(
                    stack,
                    origin,
                    args.access_log,
                    "0,1" if two_cpus else None,
                    name="gateway-all-2-workers",
                    policy_file=all_on,
                    store=redis_url,
                    workers=2,
                )
                + PATH
            )
        bare_port = free_port()
        stack.spawn(
            "bare",
            pinned(
                proxy_cpu,
                [sys.executable, str(ROOT / "bench" / "bare_proxy.py"), str(bare_port), origin],
            ),
        )
        urls["bare aiohttp proxy"] = f"http://127.0.0.1:{bare_port}{PATH}"
        if have_nginx:
            nginx_port = free_port()
            stack.nginx(
                "nginx-proxy", NGINX_PROXY.format(origin=origin_port, port=nginx_port), proxy_cpu
            )
            urls["nginx proxy"] = f"http://127.0.0.1:{nginx_port}{PATH}"
        for url in urls.values():
            wait_ok(url)
        spawned = {
            "gateway": "gateway",
            ALL_MEMORY: "gateway-all",
            ALL_REDIS: "gateway-all-redis",
            ALL_AIOHTTP: "gateway-all-aiohttp",
            TWO_WORKERS: "gateway-all-2-workers",
            "bare aiohttp proxy": "bare",
            "nginx proxy": "nginx-proxy",
        }
        yield urls, {name: stack.pids[spawned[name]] for name in urls if name in spawned}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--access-log", choices=["on", "off", "sampled"], default="sampled")
    parser.add_argument("--smoke", action="store_true", help="1 round of 1 s, to see it works")
    parser.add_argument(
        "--clients", action="store_true", help="add the all-policies gateway on aiohttp's client"
    )
    parser.add_argument(
        "--workers", action="store_true", help="add the all-policies gateway with `workers: 2`"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.seconds = 1, 1.0
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is missing (apt-get install wrk)")
    two_cpus = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    load_cpu = 0 if two_cpus else None
    load_before = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp,
        targets(args, Path(tmp)) as (urls, pids),
    ):
        if not args.smoke:
            for url in urls.values():  # warm-up: connection pools, caches, the JIT-less rest
                wrk(url, 1, args.connections, load_cpu)
        results: dict[str, list[Result]] = {name: [] for name in urls}
        single: dict[str, list[Result]] = {name: [] for name in LATENCY if name in urls}
        for round_ in range(args.rounds):
            for name, url in urls.items():
                results[name].append(
                    wrk(url, args.seconds, args.connections, load_cpu, pids.get(name))
                )
            for name in single:
                single[name].append(wrk(urls[name], args.seconds, 1, load_cpu, pids.get(name)))
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(report(results, single, args, pinned_cpus=two_cpus, load_before=load_before))
    return 0


def _median(runs: list[Result]) -> Result:
    cpu = [r.cpu_us for r in runs if r.cpu_us is not None]
    return Result(
        statistics.median(r.rps for r in runs),
        statistics.median(r.p50_ms for r in runs),
        statistics.median(r.p99_ms for r in runs),
        sum(r.errors for r in runs),
        statistics.median(cpu) if cpu else None,
    )


def native_note() -> str:
    """Whether the gateway under test (started from this tree) runs its mypyc-compiled modules:
    the numbers differ by about a third between the two."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from gateway.native import NATIVE_MODULES, native_state

    compiled, stale = native_state()
    note = f"gateway modules compiled by mypyc: {len(compiled)}/{len(NATIVE_MODULES)}"
    return note + (" (STALE: run scripts/bootstrap)" if stale else "")


def report(
    results: dict[str, list[Result]],
    single: dict[str, list[Result]],
    args: argparse.Namespace,
    pinned_cpus: bool,
    load_before: float,
) -> str:
    median = {name: _median(runs) for name, runs in results.items()}
    one = {name: _median(runs) for name, runs in single.items() if runs}
    layout = "proxies on CPU 1, origin + redis + wrk on CPU 0" if pinned_cpus else "not pinned"
    lines = [
        f"wrk -t1 -c{args.connections} -d{args.seconds:g}s (and -c1), {args.rounds} interleaved "
        f"rounds, medians; {layout}; gateway access log: {args.access_log}; "
        f"load average before: {load_before:.2f} (other work on the machine skews all rows); "
        + native_note(),
        "",
        "| target | requests/s | p50 ms | p99 ms | errors | p50 ms at c1 | CPU µs/request |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in median.items():
        c1 = f"{one[name].p50_ms:.3f}" if name in one else ""
        cpu = f"{r.cpu_us:.0f}" if r.cpu_us is not None else ""
        lines.append(
            f"| {name} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} | {c1} "
            f"| {cpu} |"
        )
    lines.append("")
    lines.extend(ratios(median, one))
    lines.extend(workers_ratio(median))
    return "\n".join(lines)


def ratios(median: dict[str, Result], one: dict[str, Result]) -> list[str]:
    """Every ratio issue 10 sets a target for, with the target beside it."""
    lines = []
    bare = median["bare aiohttp proxy"].rps
    lines.append(f"gateway (example policy) / bare aiohttp  = {median['gateway'].rps / bare:.2f}")
    nginx = median.get("nginx proxy")
    if nginx is None:
        lines.append("(no nginx: the ratios to nginx are not measured)")
        return lines
    lines.append(
        f"gateway (example policy) / nginx         = {median['gateway'].rps / nginx.rps:.2f}"
    )
    rows = [
        (ALL_MEMORY, "target >= 0.35, stretch >= 0.6"),
        (ALL_REDIS, "target >= 0.25"),
        (ALL_AIOHTTP, "the fallback client, for comparison"),
    ]
    for name, target in rows:
        if name in median:
            lines.append(f"{name} / nginx = {median[name].rps / nginx.rps:.2f}   ({target})")
    for name, _ in rows:
        cpu, nginx_cpu = median[name].cpu_us if name in median else None, nginx.cpu_us
        if cpu and nginx_cpu:
            lines.append(
                f"by CPU per request, nginx / {name} = {nginx_cpu / cpu:.2f}   "
                "(the same ratio, less sensitive to a shared machine)"
            )
    if ALL_MEMORY in one and "nginx proxy" in one:
        added = one[ALL_MEMORY].p50_ms - one["nginx proxy"].p50_ms
        lines.append(
            f"added p50 at concurrency 1, all policies, over nginx = {added:.3f} ms   "
            "(target <= 0.3 ms)"
        )
    return lines


def workers_ratio(median: dict[str, Result]) -> list[str]:
    """Two workers on CPUs 0-1 against one on CPU 1, same policy and store."""
    one = ALL_REDIS if ALL_REDIS in median else ALL_MEMORY
    if TWO_WORKERS not in median:
        return ["workers (two on two cores >= 1.7x one): not measured (run with --workers)"]
    two, single = median[TWO_WORKERS], median[one]
    lines = [
        f"{TWO_WORKERS} / {one} (1 worker) = {two.rps / single.rps:.2f}   (target >= 1.7; "
        "wrk, the origin and redis share CPU 0 with the second worker, which understates it)"
    ]
    if two.cpu_us and single.cpu_us:
        lines.append(
            f"by CPU per request, 1 worker / 2 workers = {single.cpu_us / two.cpu_us:.2f}   "
            "(1.0 = a second worker adds no CPU per request: the scaling a free core would give)"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())

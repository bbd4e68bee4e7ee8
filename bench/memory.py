"""Memory of the gateway beside nginx: RSS under a sustained soak, and while 1 GiB bodies stream.

Same set-up as bench/run.py: the proxies on CPU 1; the nginx origin, wrk, this script (the
streaming client, the RSS samplers) and a small discarding origin on CPU 0. RSS is the resident
set of the proxy's processes, summed (nginx: master + worker), sampled with psutil.

Soak: the gateway with all policies on (bench/all_policies.yaml, memory store) and an nginx
reverse proxy, each under its own `wrk -t1 -c32` at the same time for --minutes, after a warm-up
(10 s; 2 s in smoke mode). The two share CPU 1, so each serves fewer requests/s than alone
(bench/run.py measures speed; this measures memory under load). Printed per proxy: RSS at the
start (right after the warm-up), at the end, the max, end/start (issue 10's target for the
gateway: flat within 10%, <= 1.10; nginx is the reference), requests/s, errors, CPU per request,
and RSS at every tenth of the soak, where a leak shows as a steady climb.

Streaming: a fresh gateway (all policies, plus an `upload` and a `download` route with the `api`
route's rate limit and breaker but no validation, so nothing reads the body) and an nginx proxy
with `proxy_request_buffering off; proxy_buffering off;` (it streams as the gateway does, rather
than spooling to temp files). Through each, a client that writes or reads 64 KiB at a time sends a
1 GiB request body to an origin that counts and discards it (asyncio + httptools, in this file; it
answers only once it has the whole body, which nginx's `return 200` does not wait for), then reads
a 1 GiB response body (a sparse file served by the nginx origin). Printed: the proxy's idle RSS
(after a 1 MiB warm-up each way), the RSS added over it at the peak of the transfer and after it
(target for the gateway: < 20 MB added), and the throughput.

    .venv/bin/python bench/memory.py                # 10-minute soak + 1 GiB each way, ~11 min
    .venv/bin/python bench/memory.py --minutes 3    # a shorter soak
    .venv/bin/python bench/memory.py --smoke        # 20 s soak, 64 MiB bodies, to see it works
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httptools
import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (
    ALL_MEMORY,
    NGINX_PROXY,
    PATH,
    ROOT,
    Result,
    Stack,
    free_port,
    pinned,
    start_gateway,
    wait_ok,
    wrk,
)

GATEWAY = ALL_MEMORY
NGINX = "nginx proxy"
"""The names in the tables, as bench/run.py prints them."""
CHUNK = 64 * 1024
"""What the streaming client writes or reads at a time."""
MB = 1e6
"""Figures are in MB (10^6 bytes), the unit of issue 10's '< 20 MB' target."""

ORIGIN = """
  server {{
    listen 127.0.0.1:{port};
    sendfile on;
    location / {{ return 200 "ok\\n"; }}
    location /files/ {{ root {dir}; default_type application/octet-stream; }}
  }}
"""
"""run.py's cheap 200 for the soak, and the sparse files for the streamed responses."""

NGINX_STREAM = """
  upstream origin {{ server 127.0.0.1:{origin}; keepalive 8; }}
  upstream discard {{ server 127.0.0.1:{discard}; keepalive 8; }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 0;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_request_buffering off;
    proxy_buffering off;
    proxy_read_timeout 300s;
    proxy_send_timeout 300s;
    location /upload {{ proxy_pass http://discard; }}
    location / {{ proxy_pass http://origin; }}
  }}
"""
"""nginx streaming both ways, as the gateway does: no temp files for either body."""


def rss(pid: int) -> int:
    """Resident bytes of a process and its children (nginx's worker is one)."""
    process = psutil.Process(pid)
    total = 0
    for proc in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


# --- the discarding origin, run as `memory.py --discard-origin PORT` ---


class _Discard(asyncio.Protocol):
    """One origin connection: each request body counted and dropped, the count sent back."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_body(self, body: bytes) -> None:
        self.received += len(body)

    def on_message_complete(self) -> None:
        # Only now, with the whole body read, does the answer go: the proxy streams it all.
        assert self.transport is not None
        text = b"%d\n" % self.received
        self.received = 0
        keep = self.parser.should_keep_alive()
        close = b"" if keep else b"Connection: close\r\n"
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%b\r\n%b" % (len(text), close, text)
        )
        if not keep:
            self.transport.close()


async def _serve_discard(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Discard, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


# --- streaming ---


class Mismatch(Exception):
    """The proxy answered, but not with the whole body or not with 200."""


def upload(url: str, size: int) -> None:
    """POST `size` zero bytes, CHUNK at a time; the origin answers how many it received."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=300)
    zeros = bytes(CHUNK)

    def body() -> Iterator[bytes]:
        left = size
        while left:
            n = min(CHUNK, left)
            yield zeros if n == CHUNK else zeros[:n]
            left -= n

    try:
        # With Content-Length given, http.client sends the generator's chunks as they come.
        headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
        conn.request("POST", parts.path, body=body(), headers=headers)
        response = conn.getresponse()
        text = response.read(100)
    finally:
        conn.close()
    if response.status != 200 or text.strip() != str(size).encode():
        raise Mismatch(f"{response.status}, origin received {text[:40]!r} of {size} bytes")


def download(url: str, size: int) -> None:
    """GET a `size`-byte body into one reused CHUNK buffer."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=300)
    buffer = memoryview(bytearray(CHUNK))
    got = 0
    try:
        conn.request("GET", parts.path)
        response = conn.getresponse()
        while n := response.readinto(buffer):
            got += n
    finally:
        conn.close()
    if response.status != 200 or got != size:
        raise Mismatch(f"{response.status}, {got} of {size} bytes")


@dataclass(frozen=True)
class Transfer:
    idle: int
    peak: int
    after: int
    seconds: float
    size: int
    error: str | None


def measured(pid: int, size: int, move: Callable[[], None]) -> Transfer:
    """RSS before, at the peak of (sampled every 50 ms) and after one transfer."""
    time.sleep(0.5)  # let the warm-up's buffers go back before the idle figure
    idle = rss(pid)
    peak = idle
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.05):
            peak = max(peak, rss(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    error = None
    try:
        move()
    except (OSError, http.client.HTTPException, Mismatch) as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        seconds = time.monotonic() - started
        stop.set()
        sampler.join()
    after = rss(pid)
    return Transfer(idle, max(peak, after), after, seconds, size, error)


def streaming(proxies: dict[str, tuple[str, int]], size: int) -> dict[tuple[str, str], Transfer]:
    """(proxy, 'upload' | 'download') -> the transfer's RSS figures."""
    out: dict[tuple[str, str], Transfer] = {}
    for name, (base, pid) in proxies.items():
        upload(base + "/upload/warm", 1 << 20)
        download(base + "/files/warm.bin", 1 << 20)
        out[name, "upload"] = measured(pid, size, lambda b=base: upload(b + "/upload/big", size))
        out[name, "download"] = measured(
            pid, size, lambda b=base: download(b + "/files/big.bin", size)
        )
        print(f"streaming through {name} done", file=sys.stderr, flush=True)
    return out


def stream_policy(workdir: Path, discard: str) -> Path:
    """All policies, plus routes for the streamed bodies that no validation step reads."""
    policy = yaml.safe_load((ROOT / "bench" / "all_policies.yaml").read_text())
    api = next(route for route in policy["routes"] if route["name"] == "api")
    shared = {key: api[key] for key in ("rate_limit", "circuit_breaker")}
    # The upstream's read timeout also bounds the wait for the answer to a long upload.
    policy["upstream"]["timeout"] = "300s"
    policy["routes"][:0] = [
        {
            "name": "upload",
            "match": {"path_prefix": "/upload"},
            "upstream": {"url": discard, "timeout": "300s"},
            **shared,
        },
        {"name": "download", "match": {"path_prefix": "/files/"}, **shared},
    ]
    path = workdir / "stream-policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


# --- the soak ---


@dataclass(frozen=True)
class Soak:
    samples: list[tuple[float, int]]
    """(seconds into the soak, RSS bytes)."""
    result: Result

    @property
    def start(self) -> int:
        return self.samples[0][1]

    @property
    def end(self) -> int:
        return self.samples[-1][1]

    @property
    def peak(self) -> int:
        return max(value for _, value in self.samples)

    def at(self, fraction: float) -> int:
        """The sample nearest to that fraction of the soak."""
        moment = fraction * self.samples[-1][0]
        return min(self.samples, key=lambda sample: abs(sample[0] - moment))[1]


def soak(
    targets: dict[str, tuple[str, int]],
    seconds: float,
    warmup: float,
    connections: int,
    cpu: int | None,
    interval: float,
) -> tuple[dict[str, Soak], list[float]]:
    """Every target under its own wrk at once; RSS every `interval` s; the load averages seen."""
    with ThreadPoolExecutor(len(targets)) as pool:
        warming = [pool.submit(wrk, url, warmup, connections, cpu) for url, _ in targets.values()]
        for future in warming:
            future.result()
        started = time.monotonic()
        runs = {
            name: pool.submit(wrk, url, seconds, connections, cpu, pid)
            for name, (url, pid) in targets.items()
        }
        samples: dict[str, list[tuple[float, int]]] = {name: [] for name in targets}
        loads: list[float] = []
        while True:
            now = time.monotonic() - started
            for name, (_, pid) in targets.items():
                samples[name].append((now, rss(pid)))
            loads.append(os.getloadavg()[0])
            if all(run.done() for run in runs.values()):
                break
            wait(runs.values(), timeout=interval)
    return {name: Soak(samples[name], run.result()) for name, run in runs.items()}, loads


# --- the whole run ---


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, help="soak length (default 10; 20 s in smoke)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--smoke", action="store_true", help="20 s soak, 64 MiB bodies")
    parser.add_argument("--discard-origin", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.discard_origin is not None:
        asyncio.run(_serve_discard(args.discard_origin))
        return 0
    if args.minutes is None:
        args.minutes = 20 / 60 if args.smoke else 10.0
    seconds = args.minutes * 60
    warmup = 2.0 if args.smoke else 10.0
    interval = max(0.5, min(5.0, seconds / 50))
    size = (64 << 20) if args.smoke else (1 << 30)
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: {tool} is missing")
    two_cpus = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    side, proxy_cpu = (0, 1) if two_cpus else (None, None)
    if two_cpus:  # the streaming client and the samplers sit with wrk and the origin
        os.sched_setaffinity(0, {0})
    load_before = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory(prefix="gateway-bench-memory-") as tmp,
        Stack(Path(tmp)) as stack,
    ):
        workdir = Path(tmp)
        # nginx's worker drops root for nobody: it must get through to the files.
        workdir.chmod(0o711)
        (workdir / "files").mkdir(mode=0o755)
        for name, length in (("big.bin", size), ("warm.bin", 1 << 20)):
            with (workdir / "files" / name).open("wb") as f:
                f.truncate(length)  # sparse: no disk, no page cache to speak of
        origin_port, discard_port = free_port(), free_port()
        stack.nginx("origin", ORIGIN.format(port=origin_port, dir=workdir), side)
        discard_argv = [sys.executable, __file__, "--discard-origin", str(discard_port)]
        stack.spawn("discard", pinned(side, discard_argv))
        origin = f"http://127.0.0.1:{origin_port}"
        discard = f"http://127.0.0.1:{discard_port}"
        nginx_soak, nginx_stream = free_port(), free_port()
        stack.nginx(
            "nginx-soak", NGINX_PROXY.format(origin=origin_port, port=nginx_soak), proxy_cpu
        )
        stream_conf = NGINX_STREAM.format(
            origin=origin_port, discard=discard_port, port=nginx_stream
        )
        stack.nginx("nginx-stream", stream_conf, proxy_cpu)
        all_on = ROOT / "bench" / "all_policies.yaml"
        soak_url = start_gateway(
            stack, origin, "sampled", proxy_cpu, name="gateway-soak", policy_file=all_on
        )
        stream_url = start_gateway(
            stack,
            origin,
            "sampled",
            proxy_cpu,
            name="gateway-stream",
            policy_file=stream_policy(workdir, discard),
        )
        nginx_soak_url, nginx_stream_url = (
            f"http://127.0.0.1:{port}" for port in (nginx_soak, nginx_stream)
        )
        for url in (origin + "/files/warm.bin", discard, soak_url + PATH, nginx_soak_url + PATH):
            wait_ok(url)
        for url in (stream_url, nginx_stream_url):
            wait_ok(url + "/files/warm.bin")
        transfers = streaming(
            {
                "gateway": (stream_url, stack.pids["gateway-stream"]),
                NGINX: (nginx_stream_url, stack.pids["nginx-stream"]),
            },
            size,
        )
        print(f"soaking for {seconds:g} s", file=sys.stderr, flush=True)
        soaks, loads = soak(
            {
                GATEWAY: (soak_url + PATH, stack.pids["gateway-soak"]),
                NGINX: (nginx_soak_url + PATH, stack.pids["nginx-soak"]),
            },
            seconds,
            warmup,
            args.connections,
            side,
            interval,
        )
    print(report(soaks, transfers, args, seconds, warmup, interval, load_before, loads, two_cpus))
    return 0


def report(
    soaks: dict[str, Soak],
    transfers: dict[tuple[str, str], Transfer],
    args: argparse.Namespace,
    seconds: float,
    warmup: float,
    interval: float,
    load_before: float,
    loads: list[float],
    pinned_cpus: bool,
) -> str:
    layout = "proxies on CPU 1, origins + wrk + client on CPU 0" if pinned_cpus else "not pinned"
    lines = [
        f"load average (1 min): {load_before:.2f} before, {statistics.mean(loads):.2f} mean and "
        f"{max(loads):.2f} max during the soak, {os.getloadavg()[0]:.2f} after "
        f"(2 cores; other work on the machine skews requests/s, less so RSS); {layout}",
        "",
        f"Soak: wrk -t1 -c{args.connections} -d{seconds:g}s against each proxy at the same time, "
        f"after a {warmup:g} s warm-up; RSS every {interval:g} s",
        "",
        "| proxy | RSS start MB | RSS end MB | RSS max MB | end/start | requests/s | errors "
        "| CPU µs/request |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in soaks.items():
        cpu = f"{s.result.cpu_us:.0f}" if s.result.cpu_us is not None else ""
        lines.append(
            f"| {name} | {s.start / MB:.1f} | {s.end / MB:.1f} | {s.peak / MB:.1f} "
            f"| {s.end / s.start:.3f} | {s.result.rps:,.0f} | {s.result.errors} | {cpu} |"
        )
    lines.append("")
    gateway, nginx = soaks[GATEWAY], soaks[NGINX]
    lines.append(
        f"gateway RSS end/start = {gateway.end / gateway.start:.3f}   (target <= 1.10: flat within "
        f"10%; nginx reference {nginx.end / nginx.start:.3f}); gateway grew "
        f"{(gateway.end - gateway.start) / MB:+.1f} MB, "
        f"nginx {(nginx.end - nginx.start) / MB:+.1f} MB"
    )
    lines.append(f"gateway RSS / nginx RSS at the end = {gateway.end / nginx.end:.1f}")
    lines.append("RSS MB at each tenth of the soak (0% .. 100%):")
    for name, s in soaks.items():
        curve = " ".join(f"{s.at(i / 10) / MB:.1f}" for i in range(11))
        lines.append(f"  {name}: {curve}")
    size = next(iter(transfers.values())).size
    lines += [
        "",
        f"Streaming: {size / (1 << 20):g} MiB bodies, {CHUNK // 1024} KiB at a time; "
        "RSS added over the proxy's idle RSS",
        "",
        "| proxy | body | idle RSS MB | added at peak MB | added after MB | MB/s | result |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for (name, way), t in transfers.items():
        rate = t.size / MB / t.seconds if t.error is None else 0.0
        lines.append(
            f"| {name} | {way} | {t.idle / MB:.1f} | {(t.peak - t.idle) / MB:.1f} "
            f"| {(t.after - t.idle) / MB:.1f} | {rate:,.0f} | {t.error or 'ok'} |"
        )
    lines.append("")
    for way in ("upload", "download"):
        ours, ref = transfers["gateway", way], transfers[NGINX, way]
        added = (ours.peak - ours.idle) / MB
        verdict = "met" if added < 20 and ours.error is None else "NOT met"
        lines.append(
            f"gateway {way}: +{added:.1f} MB at peak (target < 20 MB: {verdict}); "
            f"nginx +{(ref.peak - ref.idle) / MB:.1f} MB"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

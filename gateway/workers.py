"""`workers: N`: a supervisor running N gateway processes that share the proxy port.

Each worker is `python -m gateway run --worker-index I --proxy-port P`, a whole gateway whose
proxy listener binds P with SO_REUSEPORT, so the kernel spreads connections across them; only
worker 0 opens the health, metrics and admin ports. The supervisor resolves the proxy port once,
forwards SIGTERM, SIGINT and SIGHUP, restarts a worker that dies on its own (with backoff, as
gunicorn's arbiter does) and exits when every worker has drained and exited.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.observability.logs import configure_logging, get_logger
from gateway.policy.model import Policy
from gateway.serve import split_host_port

log = get_logger("gateway.workers")

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
STEADY = 10.0
"""A worker up this long is healthy again: its backoff and failure count start over."""
CRASH_LOOP = 5
"""Quick deaths in a row after which the supervisor gives up and exits 1 (a worker that cannot
boot, e.g. a policy edited into a broken state, would otherwise loop forever)."""


def reserve_port(address: str) -> socket.socket:
    """Bind the proxy address with SO_REUSEPORT, without listening.

    It learns which port `:0` gets and holds it while workers come and go, so no other program
    takes it between two restarts. It never accepts: the kernel hands connections to listening
    sockets only.
    """
    host, port = split_host_port(address)
    family, kind, proto, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    # First without SO_REUSEPORT, so that a port another program (or another gateway) listens on
    # fails here as it would for one process, instead of silently sharing that program's traffic.
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(sockaddr)
        sockaddr = probe.getsockname()
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(sockaddr)
    except OSError:
        sock.close()
        raise
    return sock


def warn_per_worker_limits(policy: Policy) -> None:
    """A memory store counts in each process: N workers admit up to N times each limit."""
    if policy.store.url.startswith("memory://") and any(r.rate_limit for r in policy.routes):
        log.warning(
            "rate_limits_per_worker",
            workers=policy.workers,
            hint="the memory store counts per worker process, so a limit admits up to "
            "workers x limit; use a redis:// store for limits exact across workers",
        )


@dataclass(eq=False)
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None


async def supervise(policy_path: str, policy: Policy) -> int:
    """Run `policy.workers` workers until a signal stops them; 0 when all exited cleanly."""
    configure_logging(policy.logging.level)
    warn_per_worker_limits(policy)
    held = reserve_port(policy.listen.proxy)
    port: int = held.getsockname()[1]
    workers = [_Worker(i) for i in range(policy.workers)]
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()

    def forward(signum: signal.Signals) -> None:
        if signum != signal.SIGHUP:
            stopping.set()
        for worker in workers:
            if worker.process is not None and worker.process.returncode is None:
                worker.process.send_signal(signum)

    def give_up() -> None:
        log.error("workers_crash_loop", failures=CRASH_LOOP)
        forward(signal.SIGTERM)

    for signum in FORWARDED:
        loop.add_signal_handler(signum, forward, signum)
    log.info("workers_starting", workers=policy.workers, cores=os.cpu_count(), proxy_port=port)
    try:
        codes = await asyncio.gather(
            *(_keep(worker, policy_path, port, stopping, give_up) for worker in workers)
        )
    finally:
        for signum in FORWARDED:
            loop.remove_signal_handler(signum)
        held.close()
    log.info("workers_exited", codes=codes)
    return 0 if all(code == 0 for code in codes) else 1


async def _keep(
    worker: _Worker,
    policy_path: str,
    port: int,
    stopping: asyncio.Event,
    give_up: Callable[[], None],
) -> int:
    """Run one worker, and again after each death of its own, until the gateway stops."""
    delay, failures = BACKOFF_FIRST, 0
    while True:
        worker.process = await _spawn(policy_path, worker.index, port)
        if stopping.is_set():  # the signal came while it was being spawned
            worker.process.send_signal(signal.SIGTERM)
        log.info("worker_spawned", worker=worker.index, pid=worker.process.pid)
        started = time.monotonic()
        code = await worker.process.wait()
        if stopping.is_set():
            return code
        if time.monotonic() - started >= STEADY:
            delay, failures = BACKOFF_FIRST, 0
        failures += 1
        log.warning(
            "worker_exited",
            worker=worker.index,
            pid=worker.process.pid,
            code=code,
            restart_in_s=delay,
        )
        if failures >= CRASH_LOOP:
            give_up()
            return code or 1
        try:
            await asyncio.wait_for(stopping.wait(), delay)
        except TimeoutError:
            pass
        else:
            return code
        delay = min(delay * 2, BACKOFF_MAX)
        log.info("worker_restarting", worker=worker.index, after_failures=failures)


async def _spawn(policy_path: str, index: int, port: int) -> asyncio.subprocess.Process:
    argv = ["-m", "gateway", "run", "--policy", policy_path]
    argv += ["--worker-index", str(index), "--proxy-port", str(port)]
    # Its own process group: a terminal's Ctrl-C reaches the supervisor only, which forwards it
    # once (twice would cut the drain short).
    return await asyncio.create_subprocess_exec(sys.executable, *argv, process_group=0)

"""The process: its four ports, signals, policy watching, drain and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass, field

import structlog
from aiohttp import web

from gateway.admin.app import build_admin_app
from gateway.app import PREPARE_HOOKS, build_handler, build_proxy_app
from gateway.demo import build_demo_app
from gateway.health.app import build_health_app
from gateway.native import NATIVE_MODULES, native_state
from gateway.observability.logs import configure_logging, get_logger
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.metrics_app import build_metrics_app
from gateway.policy.loader import load_policy
from gateway.ratelimit.lifecycle import close_limit_store, open_limit_store
from gateway.server.listener import ProxyServer
from gateway.state import GatewayState
from gateway.upstream.clients import open_upstream_client

log = get_logger("gateway.serve")

WATCH_INTERVAL = 1.0


def split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass(eq=False)
class Gateway:
    """One gateway process's listeners; `start` binds them, `stop` drains and closes them."""

    policy_path: str
    state: GatewayState | None = None
    addresses: dict[str, str] = field(default_factory=dict)
    _runners: dict[str, web.AppRunner] = field(default_factory=dict)
    _demo: web.AppRunner | None = None
    _proxy: ProxyServer | None = None
    _watcher: asyncio.Task[None] | None = None
    worker: int | None = None
    """This process's index among `workers: N` (gateway/workers.py); None when it serves alone."""
    proxy_port: int | None = None
    """The proxy port the workers share (SO_REUSEPORT), resolved once by their supervisor."""

    async def start(self) -> None:
        # Taken before the read: an edit landing between the two is then seen as a change.
        fingerprint = _fingerprint(self.policy_path)
        loaded = load_policy(self.policy_path)
        policy = loaded.policy
        configure_logging(policy.logging.level)
        default_upstream = "http://127.0.0.1:3000"
        if policy.upstream.url is None:
            self._demo = web.AppRunner(build_demo_app(), access_log=None)
            await self._demo.setup()
            demo_site = web.TCPSite(self._demo, "127.0.0.1", 0)
            await demo_site.start()
            default_upstream = f"http://{_bound(demo_site)}"
            log.info("demo_upstream_started", url=default_upstream)
        self.state = GatewayState.create(
            loaded,
            metrics=GatewayMetrics(),
            upstream=open_upstream_client(policy.upstream),
            policy_path=self.policy_path,
            default_upstream_url=default_upstream,
        )
        open_limit_store(self.state)
        # The proxy port's app only carries the lifecycle of what its requests share; its
        # connections are served by our own HTTP server (gateway/server).
        proxy_app = build_proxy_app(self.state)
        lifecycle = web.AppRunner(proxy_app, handle_signals=False)
        await lifecycle.setup()
        self._runners["proxy"] = lifecycle
        self._proxy = ProxyServer(proxy_app, build_handler(), PREPARE_HOOKS)
        host, port = split_host_port(policy.listen.proxy)
        if self.proxy_port is not None:  # the port the workers share
            port = self.proxy_port
        self.addresses["proxy"] = await self._proxy.start(
            host, port, reuse_port=self.proxy_port is not None
        )
        apps = {}
        if not self.worker:  # alone, or worker 0: the other ports exist once per gateway
            apps["health"] = build_health_app(self.state)
            apps["metrics"] = build_metrics_app(self.state)
            apps["admin"] = build_admin_app(self.state)
        for name, app in apps.items():
            # Our own access log replaces aiohttp's.
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=policy.shutdown.grace)
            await runner.setup()
            host, port = split_host_port(getattr(policy.listen, name))
            site = web.TCPSite(runner, host, port, reuse_address=True)
            await site.start()
            self._runners[name] = runner
            self.addresses[name] = _bound(site)
        self._watcher = asyncio.create_task(self._watch_policy(fingerprint))
        compiled, stale = native_state()
        log.info(
            "gateway_started",
            generation=self.state.current.generation,
            native_modules=f"{len(compiled)}/{len(NATIVE_MODULES)}",
            **{f"{name}_url": f"http://{address}" for name, address in self.addresses.items()},
        )
        if stale:
            log.warning(
                "native_modules_stale",
                detail="the compiled modules were built from other sources: run scripts/bootstrap",
            )

    async def stop(self, cut_drain: asyncio.Event | None = None) -> None:
        """Turn unready, keep serving for the drain period, then let in-flight requests finish.

        The drain gives load balancers time to see /readyz fail and stop sending; connections
        and new requests are served as usual meanwhile. `cut_drain` (a second signal) ends it.
        """
        assert self.state is not None
        self.state.draining = True
        shutdown = self.state.current.policy.shutdown
        log.info("draining", drain_s=shutdown.drain, grace_s=shutdown.grace)
        if cut_drain is None:
            await asyncio.sleep(shutdown.drain)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(cut_drain.wait(), shutdown.drain)
        if self._watcher is not None:
            self._watcher.cancel()
        # The proxy first: it waits (up to the grace period) for requests in flight.
        if self._proxy is not None:
            await self._proxy.stop(shutdown.grace)
        for name in ("proxy", "admin", "metrics", "health"):
            runner = self._runners.pop(name, None)
            if runner is not None:
                await runner.cleanup()
        await self.state.upstream.close()
        await close_limit_store(self.state)
        if self._demo is not None:
            await self._demo.cleanup()
        log.info("stopped")

    async def _watch_policy(self, seen: Fingerprint | None) -> None:
        """Reload when the file changes, including Kubernetes' ConfigMap symlink swap."""
        assert self.state is not None
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            now = _fingerprint(self.policy_path)
            if now == seen:
                continue
            seen = now
            try:
                self.state.reload(trigger="watch")
            except Exception:  # the watcher must outlive any one bad reload
                log.exception("policy_watch_failed", path=self.policy_path)


Fingerprint = tuple[str, int, int, int]
"""The resolved path, inode, mtime (ns) and size of the policy file."""


def _fingerprint(path: str) -> Fingerprint | None:
    """What changes when the file does, whether edited in place, replaced, or swapped in.

    A ConfigMap volume points policy.yaml at `..data/policy.yaml` and swaps the `..data`
    symlink to a new timestamped directory: the resolved path and the inode change even when
    the size and mtime happen to match. stat follows the symlinks.
    """
    try:
        info = os.stat(path)
    except OSError:
        return None
    return os.path.realpath(path), info.st_ino, info.st_mtime_ns, info.st_size


def _bound(site: web.TCPSite) -> str:
    # aiohttp keeps the listening server private, and port 0 needs its socket to be known.
    server = site._server
    assert server is not None
    host, port = server.sockets[0].getsockname()[:2]  # type: ignore[attr-defined]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def run(policy_path: str, worker: int | None = None, proxy_port: int | None = None) -> int:
    """Serve until SIGTERM or SIGINT; SIGHUP reloads the policy."""
    gateway = Gateway(policy_path, worker=worker, proxy_port=proxy_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    orphan_watch = None
    if worker is not None:
        # Bound before the ports open: connections, and so every request's task, inherit it.
        structlog.contextvars.bind_contextvars(worker=worker)
        orphan_watch = asyncio.create_task(_stop_when_orphaned(stop))
    # Before start: a SIGTERM that arrives while the ports open still drains instead of killing.
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await gateway.start()
    assert gateway.state is not None
    loop.add_signal_handler(signal.SIGHUP, gateway.state.reload, "sighup")
    if not worker:
        print_urls(gateway.addresses)
    await stop.wait()
    started = time.monotonic()
    stop.clear()  # a second SIGTERM/SIGINT ends the drain early
    await gateway.stop(cut_drain=stop)
    log.info("exit", shutdown_s=round(time.monotonic() - started, 3))
    if orphan_watch is not None:
        orphan_watch.cancel()
    with contextlib.suppress(NotImplementedError):
        loop.remove_signal_handler(signal.SIGTERM)
    if worker is not None:  # drained: a late second signal from the supervisor changes nothing
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return 0


async def _stop_when_orphaned(stop: asyncio.Event) -> None:
    """A worker whose supervisor died (SIGKILL, OOM) drains and exits instead of lingering."""
    parent = os.getppid()
    while True:  # polled: Linux's PR_SET_PDEATHSIG would need ctypes and a pre-exec hook
        await asyncio.sleep(1.0)
        if os.getppid() != parent:
            break
    log.warning("supervisor_gone")
    stop.set()


def print_urls(addresses: dict[str, str]) -> None:
    proxy, health, metrics = addresses["proxy"], addresses["health"], addresses["metrics"]
    print(
        "\ngateway is up. Try:\n"
        f"  curl -i http://{proxy}/api/echo\n"
        f"  curl http://{health}/health\n"
        f"  curl http://{metrics}/metrics\n"
        f"  admin: http://{addresses['admin']}/admin/policy\n",
        flush=True,
    )

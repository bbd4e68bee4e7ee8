"""Hot reload, end to end: file watch, ConfigMap symlink swap, refusal, admin reload, SIGHUP."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway import serve
from gateway.serve import Gateway
from tests.conftest import GatewayFactory, RunningGateway, policy_text
from tests.policy.conftest import ROOT, LogLines

ECHO_ONLY = """
routes:
  - name: echo
    match: {path_prefix: /echo}
  - name: slow
    match: {path_prefix: /slow}
"""
WITH_STATUS = (
    ECHO_ONLY
    + """  - name: status
    match: {path_prefix: /status}
"""
)
BROKEN = (
    ECHO_ONLY
    + """  - name: status
    match: {path_prefix: /status}
    upstream: {timeout: fast}
"""
)
BROKEN_MESSAGE = (
    "{path}:{line}:16: routes[2].upstream.timeout: invalid duration 'fast' (use 250ms, 10s, 1m, 1h)"
)
WITHOUT_SLOW = """
routes:
  - name: echo
    match: {path_prefix: /echo}
"""


def broken_message(path: Path) -> str:
    """What the loader says about BROKEN, at the line `timeout: fast` landed on in `path`."""
    line = path.read_text().splitlines().index("    upstream: {timeout: fast}") + 1
    return BROKEN_MESSAGE.format(path=path, line=line)


def replaced(gw: RunningGateway, old: str, new: str) -> str:
    """The gateway's policy text with its routes block swapped."""
    text = gw.policy_path.read_text()
    assert old in text
    return text.replace(old, new)


async def status_of(client: aiohttp.ClientSession, url: str) -> int:
    async with client.get(url) as response:
        await response.read()
        return response.status


async def eventually(check: Callable[[], Awaitable[bool]], within: float) -> float:
    """Seconds until `check()` holds; fails after `within` seconds."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    pytest.fail(f"not true within {within}s")


async def wait_for_status(
    client: aiohttp.ClientSession, url: str, status: int, within: float
) -> float:
    """Seconds until `url` answers `status`; fails after `within` seconds."""

    async def answers() -> bool:
        return await status_of(client, url) == status

    return await eventually(answers, within)


async def metric(client: aiohttp.ClientSession, gw: RunningGateway, sample: str) -> float:
    async with client.get(gw.url("metrics", "/metrics")) as response:
        text = await response.text()
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def no_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The watcher sleeps through the test: only the reloads the test asks for happen."""
    monkeypatch.setattr(serve, "WATCH_INTERVAL", 3600.0)


@pytest.fixture
def fast_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll the file every 0.1 s so the tests that are not about timing stay quick."""
    monkeypatch.setattr(serve, "WATCH_INTERVAL", 0.1)


async def test_edited_file_is_picked_up_within_two_seconds(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """An atomic replace of the policy file is live within ~2 s: the new route answers."""
    gw = await make_gateway(ECHO_ONLY)
    assert await status_of(client, gw.proxy + "/status/200") == 404
    gw.write_policy(replaced(gw, ECHO_ONLY, WITH_STATUS))
    elapsed = await wait_for_status(client, gw.proxy + "/status/200", 200, within=3.0)
    assert elapsed < serve.WATCH_INTERVAL + 1.0
    assert gw.gateway.state is not None
    assert gw.gateway.state.current.generation == 2
    assert await metric(client, gw, 'gateway_policy_reloads_total{result="success"}') == 1.0
    assert await status_of(client, gw.proxy + "/echo") == 200


def configmap_swap(directory: Path, text: str, stamp: str) -> None:
    """Do what the kubelet does: a new timestamped dir, then `..data` renamed onto it."""
    target = directory / f"..{stamp}"
    target.mkdir()
    (target / "policy.yaml").write_text(text)
    link = directory / "..data_tmp"
    link.symlink_to(target.name)
    old = (directory / "..data").resolve() if (directory / "..data").exists() else None
    link.replace(directory / "..data")
    if old is not None:
        for file in old.iterdir():
            file.unlink()
        old.rmdir()


@pytest.mark.usefixtures("fast_watch")
async def test_configmap_symlink_swap_is_picked_up(
    upstream: TestServer, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    """A ConfigMap update (`..data` swapped) is reloaded, even at equal size and mtime."""
    upstream_url = str(upstream.make_url("")).rstrip("/")
    old_text = policy_text(ECHO_ONLY, upstream_url)
    new_text = policy_text(WITH_STATUS, upstream_url)
    old_text += "#" * (len(new_text) - len(old_text))  # only the inode and the path differ
    volume = tmp_path / "configmap"
    volume.mkdir()
    configmap_swap(volume, old_text, "2026_01_01_00_00_00.000000001")
    (volume / "policy.yaml").symlink_to("..data/policy.yaml")
    gateway = Gateway(str(volume / "policy.yaml"))
    await gateway.start()
    try:
        proxy = f"http://{gateway.addresses['proxy']}"
        assert await status_of(client, proxy + "/status/200") == 404
        old_stat = (volume / "policy.yaml").stat()
        configmap_swap(volume, new_text, "2026_01_01_00_01_00.000000002")
        os.utime(volume / "..data" / "policy.yaml", ns=(old_stat.st_atime_ns, old_stat.st_mtime_ns))
        await wait_for_status(client, proxy + "/status/200", 200, within=3.0)
        assert gateway.state is not None
        assert gateway.state.current.generation == 2
    finally:
        await gateway.stop()


@pytest.mark.usefixtures("fast_watch")
async def test_broken_file_is_refused_and_old_policy_keeps_serving(
    logs: LogLines, make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """A bad edit is refused: old routes serve, the failure is counted, shown in /health, logged."""
    logs.attach()
    gw = await make_gateway(ECHO_ONLY)
    gw.write_policy(replaced(gw, ECHO_ONLY, BROKEN))
    failure = 'gateway_policy_reloads_total{result="failure"}'

    async def refused() -> bool:
        return await metric(client, gw, failure) == 1.0

    await eventually(refused, within=3.0)
    expected = [broken_message(gw.policy_path)]

    assert await status_of(client, gw.proxy + "/echo") == 200
    assert await status_of(client, gw.proxy + "/status/200") == 404
    assert gw.gateway.state is not None
    assert gw.gateway.state.current.generation == 1
    async with client.get(gw.url("health", "/health")) as response:
        policy = (await response.json())["components"]["policy"]
    assert policy["generation"] == 1
    assert policy["last_reload"]["result"] == "failure"
    assert policy["last_reload"]["errors"] == expected
    refused = logs.events("policy_reload_refused")
    assert len(refused) == 1
    assert refused[0]["errors"] == expected
    assert refused[0]["trigger"] == "watch"
    assert refused[0]["serving_generation"] == 1
    assert refused[0]["level"] == "error"

    # Fixing the file brings the new policy in; the refusal is no longer the last word.
    gw.write_policy(replaced(gw, BROKEN, WITH_STATUS))
    await wait_for_status(client, gw.proxy + "/status/200", 200, within=3.0)
    async with client.get(gw.url("health", "/health")) as response:
        policy = (await response.json())["components"]["policy"]
    assert (policy["generation"], policy["last_reload"]["result"]) == (2, "success")


@pytest.mark.usefixtures("no_watch")
async def test_admin_reload_applies_a_good_file_and_refuses_a_bad_one(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """POST /admin/reload answers 200 with the new generation, or 422 with every error."""
    gw = await make_gateway(ECHO_ONLY)
    reload_url = gw.url("admin", "/admin/reload")
    original = gw.policy_path.read_text()

    gw.write_policy(original.replace(ECHO_ONLY, BROKEN))
    async with client.post(reload_url) as response:
        assert response.status == 422
        assert await response.json() == {
            "reloaded": False,
            "generation": 1,
            "errors": [broken_message(gw.policy_path)],
        }

    gw.write_policy(original.replace(ECHO_ONLY, WITH_STATUS))
    async with client.post(reload_url) as response:
        assert response.status == 200
        assert await response.json() == {"reloaded": True, "generation": 2, "errors": []}
    assert await status_of(client, gw.proxy + "/status/200") == 200

    async with client.post(reload_url) as response:  # same text again: nothing to do
        assert await response.json() == {"reloaded": True, "generation": 2, "errors": []}
    async with client.get(gw.url("admin", "/admin/policy")) as response:
        history = [(r["result"], r["trigger"]) for r in (await response.json())["reloads"]]
    assert history == [
        ("success", "start"),
        ("failure", "admin"),
        ("success", "admin"),
        ("unchanged", "admin"),
    ]


@pytest.mark.usefixtures("no_watch")
async def test_reload_never_fails_a_request_in_flight(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """A request in flight when its route is removed by a reload still completes 200."""
    gw = await make_gateway(ECHO_ONLY)

    async def slow() -> tuple[int, str]:
        async with client.get(gw.proxy + "/slow?seconds=1") as response:
            return response.status, await response.text()

    in_flight = asyncio.create_task(slow())

    async def reached_the_gateway() -> bool:
        return await metric(client, gw, "gateway_requests_in_flight") >= 1

    await eventually(reached_the_gateway, within=2.0)
    assert not in_flight.done()

    gw.write_policy(replaced(gw, ECHO_ONLY, WITHOUT_SLOW))
    async with client.post(gw.url("admin", "/admin/reload")) as response:
        assert response.status == 200
    assert await status_of(client, gw.proxy + "/slow?seconds=0") == 404  # new requests: new table
    assert await in_flight == (200, "slow")


async def read_event(
    stream: asyncio.StreamReader, name: str, within: float = 10.0
) -> dict[str, Any]:
    """The next JSON log line of the subprocess whose event is `name`."""
    async with asyncio.timeout(within):
        while True:
            line = await stream.readline()
            if not line:
                pytest.fail(f"the gateway exited before logging {name}")
            if line.startswith(b"{"):
                event: dict[str, Any] = json.loads(line)
                if event.get("event") == name:
                    return event


@pytest.fixture
async def gateway_process(
    upstream: TestServer, tmp_path: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, Path]]:
    """`python -m gateway run` in a real subprocess on port-0 listeners."""
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text(ECHO_ONLY, str(upstream.make_url("")).rstrip("/")))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "run",
        "--policy",
        str(path),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    yield process, path
    if process.returncode is None:
        process.kill()
        await process.wait()


async def test_sighup_reloads_a_running_process(
    gateway_process: tuple[asyncio.subprocess.Process, Path], client: aiohttp.ClientSession
) -> None:
    """SIGHUP makes `gateway run` reload a change its file watcher cannot see; SIGTERM exits 0."""
    process, path = gateway_process
    assert process.stdout is not None
    started = await read_event(process.stdout, "gateway_started")
    proxy = started["proxy_url"]
    assert await status_of(client, proxy + "/status/200") == 404

    # Same size, same inode, same mtime: only SIGHUP can tell the gateway about this edit.
    text = path.read_text()
    before = path.stat()
    new_text = text.replace(
        "name: slow\n    match: {path_prefix: /slow}", "name: stat\n    match: {path_prefix: /stat}"
    )
    assert len(new_text) == len(text)
    with path.open("r+") as file:
        file.write(new_text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    process.send_signal(signal.SIGHUP)

    reloaded = await read_event(process.stdout, "policy_reloaded")
    assert (reloaded["trigger"], reloaded["generation"]) == ("sighup", 2)
    assert await status_of(client, proxy + "/status/200") == 200

    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), timeout=10) == 0


@pytest.mark.usefixtures("no_watch")
async def test_reload_names_keys_that_need_a_restart(
    logs: LogLines, make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """A reload changing a start-only key applies the rest and logs the key as needs_restart."""
    logs.attach()
    gw = await make_gateway(ECHO_ONLY)
    gw.write_policy(gw.policy_path.read_text() + "logging: {level: debug}\n")
    async with client.post(gw.url("admin", "/admin/reload")) as response:
        assert response.status == 200
    [reloaded] = logs.events("policy_reloaded")
    assert reloaded["needs_restart"] == ["logging.level"]
    assert reloaded["trigger"] == "admin"

"""Shutdown and reload under load: no request in flight is ever lost."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest

from gateway import serve
from tests.chaos.conftest import Load, failed, poll_until
from tests.conftest import GatewayFactory
from tests.ops.test_sigterm import GatewayProcess, start_process

__all__ = ["start_process"]  # the fixture, shared with the ops tests

DRAIN, GRACE = 1.0, 3.0


def mixed(n: int) -> str:
    """Every third request is slow enough to be in flight when the listeners close."""
    return "/slow?seconds=0.6" if n % 3 == 0 else f"/echo/{n}"


async def test_sigterm_under_load_fails_no_request(start_process: Any) -> None:
    """SIGTERM during sustained load: every request sent before the drain ended gets its answer
    (none fails, slow ones included), and the process exits 0 within drain + grace."""
    gw: GatewayProcess = await start_process(drain=f"{DRAIN}s", grace=f"{GRACE}s")
    proxy = gw.urls["proxy"]
    load = Load(lambda n: proxy + mixed(n), clients=6).start()
    await asyncio.sleep(0.7)
    signalled = time.monotonic()
    gw.process.send_signal(signal.SIGTERM)
    # Clients keep sending through most of the drain, as they do until the balancer reacts.
    await asyncio.sleep(DRAIN - 0.15)
    load.halt()
    code = await asyncio.wait_for(gw.process.wait(), DRAIN + GRACE + 2)
    exited_s = time.monotonic() - signalled
    outcomes = await load.stop()
    after_signal = [o for o in outcomes if o.started >= signalled]
    slow_at_close = [o for o in outcomes if o.ended > signalled + DRAIN]
    print(
        f"SIGTERM under load: {len(outcomes)} requests ({len(after_signal)} sent during the "
        f"drain, {len(slow_at_close)} still in flight when it ended), {len(failed(outcomes))} "
        f"failed, exit {code} in {exited_s:.2f} s (drain {DRAIN} s + grace {GRACE} s)"
    )
    assert not failed(outcomes), failed(outcomes)[:3]
    assert after_signal and slow_at_close
    assert code == 0
    assert exited_s < DRAIN + GRACE


BROKEN = "    match: {path_prefix: /}\n    rate_limit: [{name: x, limit: many, window: fast}]\n"


async def test_broken_policy_written_under_load_is_refused_and_nothing_fails(
    make_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken policy written while traffic flows is refused, the old policy keeps serving, and a
    good one written next takes over, without a single failed request."""
    monkeypatch.setattr(serve, "WATCH_INTERVAL", 0.05)
    gw = await make_gateway(
        "logging: {access: {mode: errors}}\n"
        "routes:\n  - name: default\n    match: {path_prefix: /}\n"
    )
    state = gw.gateway.state
    assert state is not None
    original = gw.policy_path.read_text()
    load = Load(gw.proxy + "/echo", clients=4).start()
    try:
        await asyncio.sleep(0.3)
        gw.write_policy(original.replace("    match: {path_prefix: /}\n", BROKEN))
        refused_s = await poll_until(lambda: state.reloads[-1].result == "failure", within=3)
        await asyncio.sleep(0.3)
        assert state.current.generation == 1
        gw.write_policy(original.replace("name: default", "name: renamed"))
        applied_s = await poll_until(lambda: state.current.generation == 2, within=3)
        await asyncio.sleep(0.3)
    finally:
        outcomes = await load.stop()
    print(
        f"broken policy under load: refused in {refused_s:.2f} s, good one applied in "
        f"{applied_s:.2f} s, {len(outcomes)} requests, {len(failed(outcomes))} failed"
    )
    assert [r.result for r in state.reloads] == ["success", "failure", "success"]
    assert state.current.routes[0].name == "renamed"
    assert {o.status for o in outcomes} == {200}

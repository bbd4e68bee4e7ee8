"""The status page in a real headless Chromium (Debian's chromium and chromium-driver)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import GatewayFactory, free_port

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a dev extra")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

POLICY = """
routes:
  - name: api
    match: {path_prefix: /echo}
    rate_limit:
      - {name: per-ip, limit: 40, window: 1m}
  - name: dead
    match: {path_prefix: /dead}
    upstream: {url: "http://127.0.0.1:%d", connect_timeout: 1s}
    circuit_breaker: {min_calls: 3, window: {size: 3}, open_for: 30s}
  - name: default
    match: {path_prefix: /}
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module, with a fresh profile; skipped if it cannot start."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/bootstrap installs them)")
    profile = tempfile.mkdtemp(prefix="gateway-chromium-")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",  # a container's /dev/shm is often too small for Chromium
        "--window-size=1280,1400",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException as exc:
        shutil.rmtree(profile, ignore_errors=True)
        pytest.skip(f"headless Chromium cannot start here: {exc.msg}")
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def wait_for(driver: Any, script: str, timeout: float = 8.0) -> Any:
    """Poll a JavaScript expression until it is truthy (the page refreshes every 2 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return {script}")
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {script}")


def severe(driver: Any) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


async def test_status_page_shows_breaker_opening(
    make_gateway: GatewayFactory, session: aiohttp.ClientSession, browser: Any
) -> None:
    """The page loads without console errors and shows the breaker open once the upstream fails."""
    gw = await make_gateway(POLICY % free_port())
    page = gw.url("admin", "/")
    await asyncio.to_thread(browser.get, page)
    state = await asyncio.to_thread(
        wait_for, browser, "document.querySelector('[data-breaker=dead]')?.dataset.state"
    )
    assert state == "closed"
    assert "generation 1" in await asyncio.to_thread(
        lambda: browser.find_element(By.ID, "summary").text
    )

    for _ in range(3):  # three connection failures fill the window: the breaker opens
        async with session.get(gw.proxy + "/dead/x") as response:
            assert response.status == 502
    for second in range(3):  # some traffic over a few seconds, for the chart
        for _ in range(12):
            async with session.get(gw.proxy + "/echo") as response:
                await response.read()
        async with session.get(gw.proxy + "/dead/x") as response:
            assert response.status == 503
        await asyncio.sleep(1.0 if second < 2 else 0.1)

    opened = await asyncio.to_thread(
        wait_for, browser, "document.querySelector('[data-breaker=dead][data-state=open]')"
    )
    assert opened
    text = await asyncio.to_thread(lambda: browser.find_element(By.ID, "breakers").text)
    assert "closed → open (failure_rate)" in text
    await asyncio.to_thread(
        wait_for, browser, "document.querySelector('#errors code')?.textContent"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "admin-status-page.png"
    assert await asyncio.to_thread(browser.save_screenshot, str(shot))
    assert shot.stat().st_size > 10_000
    assert await asyncio.to_thread(severe, browser) == []

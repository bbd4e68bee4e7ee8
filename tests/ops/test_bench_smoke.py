"""bench/run.py in smoke mode: the harness starts every target, measures them and prints ratios."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.instructions import LIMITER, PLAIN
from bench.run import ALL_MEMORY, ALL_REDIS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_bench_smoke_prints_every_target_and_the_ratios() -> None:
    """One 1-second round per target gives a table with requests/s and the gateway's ratios."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "gateway modules compiled by mypyc: " in done.stdout  # what the numbers were run on
    rows = {
        line.split("|")[1].strip(): line
        for line in done.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| target")
    }
    expected = {"upstream direct", "gateway", "bare aiohttp proxy", ALL_MEMORY}
    if shutil.which("redis-server"):
        expected.add(ALL_REDIS)
    if shutil.which("nginx"):
        expected.add("nginx proxy")
        assert "gateway (example policy) / nginx " in done.stdout
        assert f"{ALL_MEMORY} / nginx = " in done.stdout
        assert "added p50 at concurrency 1" in done.stdout
    assert set(rows) == expected
    assert "gateway (example policy) / bare aiohttp " in done.stdout
    for row in rows.values():
        rps, errors = row.split("|")[2].strip(), row.split("|")[5].strip()
        assert float(rps.replace(",", "")) > 0
        assert errors == "0"


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("wrk") is None or shutil.which("nginx") is None,
    reason="wrk or nginx is not installed",
)
def test_memory_bench_smoke_prints_soak_and_streaming_figures() -> None:
    """A 3-second soak and 64 MiB bodies each way give RSS rows for the gateway and nginx."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "memory.py"), "--smoke", "--minutes", "0.05"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ")]
    soak = {cells[0].strip(): cells for cells in rows if len(cells) == 8}
    stream = {(c[0].strip(), c[1].strip()): c for c in rows if len(c) == 7}
    assert set(soak) == {"proxy", ALL_MEMORY, "nginx proxy"}
    for name in (ALL_MEMORY, "nginx proxy"):
        assert float(soak[name][5].replace(",", "")) > 0
        assert soak[name][6].strip() == "0"
    assert set(stream) == {("proxy", "body")} | {
        (name, way) for name in ("gateway", "nginx proxy") for way in ("upload", "download")
    }
    assert all(cells[6].strip() == "ok" for key, cells in stream.items() if key[0] != "proxy")
    assert "gateway RSS end/start = " in done.stdout
    assert "gateway upload: +" in done.stdout
    assert "gateway download: +" in done.stdout


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("valgrind") is None or shutil.which("nginx") is None,
    reason="valgrind or nginx is not installed",
)
def test_instructions_bench_smoke_counts_nginx_and_the_gateway() -> None:
    """Under callgrind, nginx and the gateway with and without a limiter get a count each, and
    the limiter's own cost is printed as its difference."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "instructions.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    rows = {
        cells[1].strip(): float(cells[2].strip().replace(",", ""))
        for line in done.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| target")
        for cells in [line.split("|")]
    }
    assert set(rows) == {"nginx proxy", PLAIN, LIMITER}
    # Counted only while collection was on: a warm-up or start-up leaking in would be millions.
    assert 5_000 < rows["nginx proxy"] < rows[PLAIN] < rows[LIMITER] < 2_000_000
    assert f"{LIMITER}: the limiter costs " in done.stdout

"""What validation adds to a 1 KB JSON request: schema + json limits + nh3 sanitization.

Two measures, both printed as p50 (and p99):
  in-process   the validator alone on the buffered body (parse, limits, schema, sanitize,
               re-encode), plus fastjsonschema vs jsonschema on the same document;
  end to end   sequential POSTs through a real gateway to a real upstream, the same 1 KB body
               on a route with validation and on one without, interleaved; the difference of the
               medians is what validation adds. The goal (issue 4) is <= 0.3 ms p50.

    .venv/bin/python bench/validation.py            # ~20 s
    .venv/bin/python bench/validation.py --quick    # ~5 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.policy.loader import load_policy  # noqa: E402  (after the path fix-up above)
from gateway.serve import Gateway  # noqa: E402
from gateway.validation.limits import MediaType  # noqa: E402
from tests.upstream_app import build_upstream_app  # noqa: E402

SCHEMA = json.loads((ROOT / "config" / "schemas" / "order.json").read_text())
DOCUMENT = {
    "customer": {"id": 42, "email": "ada@example.com", "name": "Ada Lovelace"},
    "items": [
        {"sku": f"SKU-{i:04d}", "qty": i + 1, "note": "fragile, <b>handle</b> with care"}
        for i in range(9)
    ],
    "comment": "Please deliver <b>before</b> noon <script>alert(1)</script>; door code 1234. " * 2,
    "currency": "EUR",
}
BODY = json.dumps(DOCUMENT).encode()

POLICY = """
listen: {{proxy: "127.0.0.1:0", health: "127.0.0.1:0", metrics: "127.0.0.1:0",
         admin: "127.0.0.1:0"}}
shutdown: {{drain: 0s, grace: 1s}}
logging: {{level: warning, access: {{mode: "off"}}}}
upstream: {{url: "{upstream}"}}
routes:
  - name: validated
    match: {{path_prefix: /echo/validated}}
    validation:
      max_body: 64KiB
      content_types: [application/json]
      json: {{max_depth: 16, max_string: 8KiB}}
      schema: {{body: {schema}}}
      sanitize_html: {{fields: ["$.comment", "$.items[*].note"]}}
  - name: plain
    match: {{path_prefix: /}}
"""


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]


def timed(function: Callable[[], Any], rounds: int) -> tuple[float, float]:
    for _ in range(min(rounds, 500)):
        function()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        function()
        samples.append((time.perf_counter_ns() - started) / 1000)
    return percentiles(samples)


def in_process(rounds: int, policy_path: Path) -> None:
    from gateway.runtime import compile_policy

    loaded = load_policy(policy_path)
    validator = (
        compile_policy(loaded, generation=1, default_upstream_url="http://127.0.0.1:1")
        .routes[0]
        .validator
    )
    assert validator is not None
    media = MediaType.parse("application/json")
    changed = validator.check_body(BODY, media).sanitized
    print(
        f"body: {len(BODY)} bytes of JSON; schema config/schemas/order.json; "
        f"{1 + len(DOCUMENT['items'])} HTML fields through nh3, {changed} of them changed"
    )
    rows: list[tuple[str, Callable[[], Any]]] = [
        ("json.loads alone", lambda: json.loads(BODY)),
        ("validator.check_body (all steps)", lambda: validator.check_body(BODY, media)),
        ("  schema alone (fastjsonschema)", lambda: validator.schemas["body"].check(DOCUMENT)),
    ]
    try:
        import jsonschema

        draft = jsonschema.Draft202012Validator(SCHEMA)
        rows.append(("  schema alone (jsonschema 2020-12)", lambda: draft.is_valid(DOCUMENT)))
    except ImportError:
        pass
    for name, function in rows:
        p50, p99 = timed(function, rounds)
        print(f"  {name:38s} p50 {p50:8.1f} µs   p99 {p99:8.1f} µs")


async def end_to_end(rounds: int, directory: Path) -> None:
    upstream = TestServer(build_upstream_app())
    await upstream.start_server()
    policy = directory / "policy.yaml"
    policy.write_text(
        POLICY.format(upstream=str(upstream.make_url("")).rstrip("/"), schema="schema.json")
    )
    gateway = Gateway(str(policy))
    await gateway.start()
    base = f"http://{gateway.addresses['proxy']}"
    timings: dict[str, list[float]] = {"plain": [], "validated": []}
    headers = {"Content-Type": "application/json"}
    try:
        async with aiohttp.ClientSession() as client:
            for index in range(rounds * 2 + 200):
                name = "validated" if index % 2 else "plain"
                started = time.perf_counter()
                async with client.post(f"{base}/echo/{name}", data=BODY, headers=headers) as r:
                    await r.read()
                    assert r.status == 200, r.status
                if index >= 200:  # warm-up done
                    timings[name].append((time.perf_counter() - started) * 1e6)
    finally:
        await gateway.stop()
        await upstream.close()
    plain, validated = percentiles(timings["plain"]), percentiles(timings["validated"])
    print(f"end to end, {rounds} requests per route, sequential, one connection:")
    print(f"  without validation  p50 {plain[0]:8.1f} µs   p99 {plain[1]:8.1f} µs")
    print(f"  with validation     p50 {validated[0]:8.1f} µs   p99 {validated[1]:8.1f} µs")
    added = validated[0] - plain[0]
    print(f"  added by validation p50 {added:8.1f} µs  (goal <= 300 µs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds = 1000 if args.quick else 5000
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        (directory / "schema.json").write_text(json.dumps(SCHEMA))
        policy = directory / "policy.yaml"
        policy.write_text(POLICY.format(upstream="http://127.0.0.1:1", schema="schema.json"))
        in_process(rounds * 4, policy)
        asyncio.run(end_to_end(rounds // 2, directory))


if __name__ == "__main__":
    main()

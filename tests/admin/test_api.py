"""The admin port's JSON endpoints, against a running gateway over real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.admin.auth import check_access, peer_allowed
from gateway.errors import AdminForbidden, AdminUnauthorized, PolicyError
from gateway.policy.loader import load_policy
from tests.conftest import GatewayFactory, RunningGateway, free_port

TOKEN = "s3cret-admin-token-0123"

ROUTES = """
routes:
  - name: api
    match: {path_prefix: /echo}
    rate_limit:
      - {name: per-ip, limit: 3, window: 1h}
      - {name: per-key, key: ['header:X-API-Key'], limit: 5, window: 1h, mode: shadow}
    validation:
      max_body: 64
      methods: [GET, POST]
      content_types: [application/json]
      json: {max_depth: 4}
  - name: dead
    match: {path_prefix: /dead}
    upstream: {url: "http://127.0.0.1:%d", connect_timeout: 1s}
    circuit_breaker: {min_calls: 2, window: {size: 2}, open_for: 30s}
  - name: default
    match: {path_prefix: /}
"""


def policy(store: str = "memory://", extra: str = "") -> str:
    return f'store: {{url: "{store}"}}\n' + extra + ROUTES % free_port()


async def explain(client: aiohttp.ClientSession, gw: RunningGateway, **request: Any) -> Any:
    async with client.post(gw.url("admin", "/admin/explain"), json=request) as response:
        assert response.status == 200, await response.text()
        return await response.json()


def rule(answer: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in answer["rate_limit"] if r["rule"] == name)


async def test_explain_leaves_quota_untouched(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, store_url: str
) -> None:
    """Explaining a rate-limited request shows its quota and never spends any of it."""
    gw = await make_gateway(policy(store_url))
    async with client.get(gw.proxy + "/echo") as response:
        assert response.status == 200
    request = {"method": "GET", "path": "/echo", "headers": {"X-API-Key": "k1"}}
    before = await explain(client, gw, **request)
    for _ in range(5):
        await explain(client, gw, **request)
    after = await explain(client, gw, **request)
    assert rule(before, "per-ip")["remaining"] == rule(after, "per-ip")["remaining"] == 2
    assert rule(after, "per-ip")["key"].endswith("|127.0.0.1}")
    assert rule(after, "per-key")["remaining"] == 5
    assert after["route"] == "api"
    assert after["outcome"] == {
        "action": "forward",
        "step": "upstream",
        "status": None,
        "reason": "forwarded",
        "upstream": gw.gateway.state.current.routes[0].upstream.base_url,  # type: ignore[union-attr]
    }
    async with client.get(gw.proxy + "/echo") as response:
        assert response.status == 200
        assert response.headers["X-RateLimit-Remaining"] == "1"


async def test_explain_a_spent_quota(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """Once a client's quota is spent, explain says the next request would get 429."""
    gw = await make_gateway(policy())
    for _ in range(3):
        async with client.get(gw.proxy + "/echo") as response:
            assert response.status == 200
    answer = await explain(client, gw, method="GET", path="/echo")
    assert rule(answer, "per-ip")["verdict"] == "limit"
    assert rule(answer, "per-ip")["remaining"] == 0
    assert answer["outcome"]["status"] == 429
    assert answer["outcome"]["reason"] == "rate_limited"
    assert answer["outcome"]["step"] == "rate_limit"


@pytest.mark.parametrize(
    ("request_", "check", "status", "reason"),
    [
        (
            {"method": "POST", "path": "/echo/o", "headers": {"Content-Type": "application/json"},
             "body": '{"a": {"b": {"c": {"d": {"e": 1}}}}}'},
            "max_depth", 400, "json_too_complex",
        ),
        (
            {"method": "POST", "path": "/echo/o", "headers": {"Content-Type": "text/plain"},
             "body": "hi"},
            "content_types", 415, "unsupported_media_type",
        ),
        ({"method": "DELETE", "path": "/echo/o"}, "methods", 405, "method_not_allowed"),
        (
            {"method": "POST", "path": "/echo/o", "headers": {"Content-Type": "application/json"},
             "body": '{"pad": "' + "x" * 80 + '"}'},
            "max_body", 413, "payload_too_large",
        ),
    ],
    ids=["too-deep", "media-type", "method", "too-large"],
)  # fmt: skip
async def test_explain_validation_rejection(
    make_gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    request_: dict[str, Any],
    check: str,
    status: int,
    reason: str,
) -> None:
    """A request validation would refuse is explained with the failing check and its status."""
    gw = await make_gateway(policy())
    answer = await explain(client, gw, **request_)
    failed = [c for c in answer["validation"]["checks"] if c["verdict"] == "fail"]
    assert [(c["check"], c["reason"]) for c in failed] == [(check, reason)]
    assert answer["outcome"]["step"] == "validation"
    assert (answer["outcome"]["status"], answer["outcome"]["reason"]) == (status, reason)
    assert rule(answer, "per-ip")["remaining"] == 3  # explained, not counted


async def test_explain_passing_validation_lists_every_check(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """A valid request shows each configured check as passed and the body as checked."""
    gw = await make_gateway(policy())
    answer = await explain(
        client, gw, method="POST", path="/echo/o",
        headers={"Content-Type": "application/json"}, body='{"ok": true}',
    )  # fmt: skip
    checks = [(c["check"], c["verdict"]) for c in answer["validation"]["checks"]]
    assert checks == [
        ("methods", "pass"),
        ("content_types", "pass"),
        ("max_body", "pass"),
        ("body", "pass"),
    ]
    assert answer["attacks"]["available"] is False  # this route has no attack detector


async def test_explain_open_breaker(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """After the upstream fails, explain reports the open breaker and the 503 it would cause."""
    gw = await make_gateway(policy())
    before = await explain(client, gw, method="GET", path="/dead/x")
    assert before["breaker"]["state"] == "closed"
    assert before["outcome"]["action"] == "forward"
    for _ in range(2):
        async with client.get(gw.proxy + "/dead/x") as response:
            assert response.status == 502
    answer = await explain(client, gw, method="GET", path="/dead/x")
    assert answer["breaker"]["name"] == "dead"
    assert answer["breaker"]["state"] == "open"
    assert answer["breaker"]["would"] == "reject"
    assert answer["outcome"]["step"] == "breaker"
    assert (answer["outcome"]["status"], answer["outcome"]["reason"]) == (503, "circuit_open")


async def test_explain_no_route_and_bad_input(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """A request no route takes is explained as 404; a malformed description gets 400."""
    gw = await make_gateway("routes:\n  - name: only\n    match: {path_prefix: /only}\n")
    answer = await explain(client, gw, method="GET", path="/elsewhere")
    assert answer["route"] is None
    assert (answer["outcome"]["status"], answer["outcome"]["reason"]) == (404, "no_route")
    async with client.post(gw.url("admin", "/admin/explain"), json={"path": "no-slash"}) as r:
        assert r.status == 400
        assert "path" in (await r.json())["error"]


async def test_token_required_when_set(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """With admin.token set, /admin/ endpoints answer 401 problem+json unless it is sent."""
    gw = await make_gateway(policy(extra=f'admin: {{token: "{TOKEN}"}}\n'))
    status_url = gw.url("admin", "/admin/status")
    async with client.get(status_url) as response:
        assert response.status == 401
        assert response.content_type == "application/problem+json"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await response.json())["reason"] == "unauthorized"
    async with client.get(status_url, headers={"Authorization": "Bearer wrong-token"}) as r:
        assert r.status == 401
    async with client.get(status_url, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        assert r.status == 200
        assert (await r.json())["policy"]["generation"] == 1
    async with client.get(gw.url("admin", "/")) as response:  # the page shell holds no data
        assert response.status == 200


def test_non_loopback_admin_without_token_is_refused(tmp_path: Path) -> None:
    """A policy that opens the admin port beyond loopback without a token does not load."""
    path = tmp_path / "policy.yaml"
    path.write_text(
        'listen: {admin: "0.0.0.0:8082"}\nroutes:\n  - name: all\n    match: {path_prefix: /}\n'
    )
    with pytest.raises(PolicyError) as refused:
        load_policy(str(path))
    assert refused.value.messages == [
        f"{path}:1:10: listen.admin: the admin port listens on '0.0.0.0', beyond loopback: "
        'set admin.token (e.g. admin: {token: "${GATEWAY_ADMIN_TOKEN}"}) or listen on 127.0.0.1'
    ]
    path.write_text(
        f'listen: {{admin: "0.0.0.0:8082"}}\nadmin: {{token: "{TOKEN}"}}\n'
        "routes:\n  - name: all\n    match: {path_prefix: /}\n"
    )
    assert load_policy(str(path)).policy.admin.token == TOKEN


@pytest.mark.parametrize(
    ("remote", "authorization", "token", "refusal"),
    [
        ("127.0.0.1", None, None, None),
        ("::1", None, None, None),
        ("::ffff:127.0.0.1", None, None, None),
        ("::ffff:192.0.2.7", None, None, AdminForbidden),
        ("192.0.2.7", None, None, AdminForbidden),
        ("192.0.2.7", f"Bearer {TOKEN}", TOKEN, None),
        ("127.0.0.1", None, TOKEN, AdminUnauthorized),
        ("127.0.0.1", f"Basic {TOKEN}", TOKEN, AdminUnauthorized),
        ("127.0.0.1", f"bearer {TOKEN}", TOKEN, None),
    ],
    ids=["loopback-v4", "loopback-v6", "mapped-loopback", "mapped-remote", "remote-no-token",
         "remote-token", "missing", "wrong-scheme", "scheme-case"],
)  # fmt: skip
def test_access_rules(
    remote: str, authorization: str | None, token: str | None, refusal: type[Exception] | None
) -> None:
    """Without a token only loopback peers pass; with one, only requests carrying it."""
    if refusal is None:
        check_access("/admin/status", remote, authorization, token)
    else:
        with pytest.raises(refusal):
            check_access("/admin/status", remote, authorization, token)
    assert peer_allowed("127.0.0.5") and not peer_allowed("10.0.0.1")


async def test_status_document(make_gateway: GatewayFactory, client: aiohttp.ClientSession) -> None:
    """GET /admin/status carries the policy, routes, rules, breakers, errors, health, series."""
    gw = await make_gateway(policy())
    for _ in range(4):
        async with client.get(gw.proxy + "/echo") as response:
            await response.read()
    async with client.get(gw.url("admin", "/admin/status")) as response:
        assert response.status == 200
        status = await response.json()
    assert status["policy"]["generation"] == 1
    assert status["policy"]["reloads"][0]["trigger"] == "start"
    assert [r["name"] for r in status["routes"]] == ["api", "dead", "default"]
    assert {(r["route"], r["rule"]) for r in status["ratelimit"]["rules"]} == {
        ("api", "per-ip"),
        ("api", "per-key"),
    }
    assert status["ratelimit"]["store"]["kind"] == "memory"
    assert status["breakers"][0]["name"] == "dead"
    assert status["breakers"][0]["state"] == "closed"
    assert status["health"]["ready"] is True
    assert status["series"]["interval_s"] == 1.0
    assert "groups" in status["errors"]


async def test_explain_cli(make_gateway: GatewayFactory) -> None:
    """`gateway explain` prints the running gateway's answer as JSON, the token sent along."""
    gw = await make_gateway(policy(extra=f'admin: {{token: "{TOKEN}"}}\n'))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "explain", "--admin", gw.url("admin", ""),
        "--token", TOKEN, "POST", "/echo/o", "-H", "Content-Type: application/json",
        "--data", "{not json", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    answer = json.loads(out)
    assert answer["route"] == "api"
    assert (answer["outcome"]["status"], answer["outcome"]["reason"]) == (400, "invalid_json")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "explain", "--admin", gw.url("admin", ""), "GET", "/",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "GATEWAY_ADMIN_TOKEN"},
    )  # fmt: skip
    _, err = await process.communicate()
    assert process.returncode == 1
    assert "401" in err.decode()

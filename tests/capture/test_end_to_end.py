"""Error capture through a running gateway: real upstream, real sinks, real receivers."""

from __future__ import annotations

import functools
import io
import json

import aiohttp
from aiohttp import web

from gateway.capture.service import CaptureService
from gateway.middleware.capture import capture
from gateway.observability.logs import configure_logging
from gateway.server.connection import Answer
from gateway.server.listener import ProxyServer
from gateway.server.request import ProxyRequest
from gateway.state import STATE
from tests.capture.conftest import Receiver, SentryIngest, SmtpServer, wait_for
from tests.conftest import GatewayFactory, RunningGateway, free_port

MARK = "Zq9SECRET"
"""Every secret sent carries this mark, so one search finds any that leaked."""
CARD = "4111111111111111"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJacTlTRUNSRVQifQ.c2lnbmF0dXJlWnE5U0VDUkVU"


def policy(receiver: Receiver, ingest: SentryIngest, smtp: SmtpServer) -> str:
    return f"""
routes:
  - name: orders
    match: {{path_prefix: /status}}
    validation: {{max_body: 64KiB, json: {{max_depth: 8}}}}
  - name: echo
    match: {{path_prefix: /echo}}
  - name: dead
    match: {{path_prefix: /dead}}
    upstream: {{url: "http://127.0.0.1:{free_port()}", connect_timeout: 1s}}
errors:
  body_excerpt: 1KiB
  sinks:
    - {{name: hook, type: webhook, url: "{receiver.url}", backoff: 10ms}}
    - {{name: sentry, type: sentry, dsn: "{ingest.dsn}"}}
    - {{name: mail, type: email, smtp: "smtp://127.0.0.1:{smtp.port}", from: gw@example.com,
       to: [ops@example.com], starttls: true, ca_file: "{smtp.cert}"}}
  alerts:
    - {{name: upstream-errors, when: "rate(upstream_5xx) > 1/min", sinks: [hook, mail],
       cooldown: 10m}}
  delivery: {{alert_interval: 1h}}
"""


def _service(gw: RunningGateway) -> CaptureService:
    assert gw.gateway.state is not None and gw.gateway.state.capture is not None
    return gw.gateway.state.capture


async def _send_secrets(client: aiohttp.ClientSession, url: str) -> None:
    async with client.post(
        url + f"?token={MARK}tok&card={CARD}&page=2",
        headers={
            "Authorization": f"Bearer {MARK}bearer",
            "Cookie": f"session={MARK}cookie",
            "X-Api-Key": f"{MARK}apikey",
            "Content-Type": "application/json",
        },
        data=json.dumps(
            {"password": f"{MARK}pw", "card": "4111 1111 1111 1111", "note": JWT, "qty": 3}
        ),
    ) as response:
        assert response.status in (500, 502)
        await response.read()


async def test_upstream_5xx_reaches_every_sink_scrubbed_and_grouped(
    make_gateway: GatewayFactory,
    log_stream: io.StringIO,
    client: aiohttp.ClientSession,
    receiver: Receiver,
    sentry_ingest: SentryIngest,
    smtp_server: SmtpServer,
) -> None:
    """Two upstream 500s become one group of 2, reach webhook and Sentry with no secret in
    any payload or log line, and fire the alert to the webhook and by mail."""
    gw = await make_gateway(policy(receiver, sentry_ingest, smtp_server))
    configure_logging(stream=log_stream)
    service = _service(gw)
    for _ in range(2):
        await _send_secrets(client, gw.proxy + "/status/500")
    await service.flush()
    service.evaluate_alerts()
    await service.flush()
    await wait_for(lambda: len(sentry_ingest.events) == 2)

    events = [e for body in receiver.bodies for e in body["events"]]
    alerts = [a for body in receiver.bodies for a in body["alerts"]]
    assert [e["reason"] for e in events] == ["upstream_5xx", "upstream_5xx"]
    first = events[0]
    assert (first["route"], first["status"], first["method"]) == ("orders", 500, "POST")
    assert first["headers"]["authorization"] == "[Filtered]"
    assert first["query"].endswith("page=2")
    assert first["body_excerpt"] and '"qty": 3' in first["body_excerpt"]
    assert first["upstream"] and first["request_id"]
    assert [e["group_count"] for e in events] == [1, 2]
    assert [(a["rule"], a["state"]) for a in alerts] == [("upstream-errors", "fired")]
    assert sentry_ingest.events[0]["tags"]["reason"] == "upstream_5xx"
    assert sentry_ingest.events[0]["request"]["url"] == "/status/500"
    (mail,) = smtp_server.mails
    assert mail.tls and b"upstream-errors" in mail.content

    async with client.get(gw.url("admin", "/admin/errors/groups")) as response:
        (group,) = (await response.json())["groups"]
    assert (group["reason"], group["route"], group["count"]) == ("upstream_5xx", "orders", 2)
    async with client.get(gw.url("admin", "/admin/errors/recent?limit=5")) as response:
        recent = (await response.json())["recent"]
    assert [item["kind"] for item in recent] == ["alert", "error", "error"]
    async with client.get(gw.url("metrics", "/metrics")) as response:
        exposition = await response.text()
    assert 'gateway_error_events_total{reason="upstream_5xx"} 2.0' in exposition
    assert "gateway_error_groups 1.0" in exposition
    assert 'gateway_alerts_total{alert="upstream-errors",state="fired"} 1.0' in exposition
    assert 'gateway_error_sink_deliveries_total{result="ok",sink="hook"}' in exposition

    logs = log_stream.getvalue()
    assert '"event": "error_event"' in logs and '"event": "alert_fired"' in logs
    payloads = [*receiver.raw, *sentry_ingest.raw, *(m.content for m in smtp_server.mails)]
    everything = b"\n".join(payloads).decode("utf-8", "replace") + logs
    for secret in (MARK, CARD, "4111 1111 1111 1111", JWT):
        assert secret not in everything, secret


async def test_connect_error_is_captured_with_its_reason(
    make_gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    receiver: Receiver,
    sentry_ingest: SentryIngest,
    smtp_server: SmtpServer,
) -> None:
    """An unreachable upstream's 502 problem becomes an upstream_connect_error event."""
    gw = await make_gateway(policy(receiver, sentry_ingest, smtp_server))
    async with client.get(gw.proxy + "/dead/x") as response:
        assert response.status == 502
        assert (await response.json(content_type=None))["reason"] == "upstream_connect_error"
    await _service(gw).flush()
    (event,) = [e for body in receiver.bodies for e in body["events"]]
    assert (event["reason"], event["category"], event["severity"]) == (
        "upstream_connect_error",
        "upstream_connect_error",
        "error",
    )


async def test_uncaptured_reasons_and_successes_send_nothing(
    make_gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    receiver: Receiver,
    sentry_ingest: SentryIngest,
    smtp_server: SmtpServer,
) -> None:
    """A 200, an upstream 404 and an unmatched path (no_route) produce no event."""
    gw = await make_gateway(policy(receiver, sentry_ingest, smtp_server))
    for path in ("/echo/a", "/status/404", "/nowhere"):
        async with client.get(gw.proxy + path) as response:
            await response.read()
    await _service(gw).flush()
    assert receiver.bodies == []
    assert list(_service(gw).recent) == []


async def test_gateway_exception_becomes_a_500_problem_and_an_event_with_its_stack(
    make_gateway: GatewayFactory,
    log_stream: io.StringIO,
    client: aiohttp.ClientSession,
    receiver: Receiver,
    sentry_ingest: SentryIngest,
    smtp_server: SmtpServer,
) -> None:
    """A bug behind the capture step answers 500 problem+json; the event holds the
    exception's type and stack, and neither event nor log line holds the secret it quoted."""
    gw = await make_gateway(policy(receiver, sentry_ingest, smtp_server))
    configure_logging(stream=log_stream)
    assert gw.gateway.state is not None

    async def broken(request: ProxyRequest) -> Answer:
        raise RuntimeError(f"lookup failed for password={MARK}pw")

    app = web.Application()
    app[STATE] = gw.gateway.state
    server = ProxyServer(app, functools.partial(capture, handler=broken), ())
    address = await server.start("127.0.0.1", 0)
    try:
        async with client.get(f"http://{address}/boom") as response:
            assert response.status == 500
            body = await response.json(content_type=None)
            assert body["reason"] == "gateway_exception"
        await _service(gw).flush()
    finally:
        await server.stop(grace=1)
    (event,) = [e for b in receiver.bodies for e in b["events"]]
    assert event["exception"]["type"] == "RuntimeError"
    assert "in broken" in event["exception"]["stack"]
    logs = log_stream.getvalue()
    assert "gateway_exception" in logs
    assert MARK not in logs and MARK not in receiver.raw[0].decode()


async def test_reload_changes_what_is_captured(
    make_gateway: GatewayFactory,
    client: aiohttp.ClientSession,
    receiver: Receiver,
    sentry_ingest: SentryIngest,
    smtp_server: SmtpServer,
) -> None:
    """After a reload that drops upstream_5xx from `capture`, upstream 500s send nothing."""
    gw = await make_gateway(policy(receiver, sentry_ingest, smtp_server))
    text = gw.policy_path.read_text().replace(
        "errors:\n", "errors:\n  capture: [upstream_timeout]\n"
    )
    gw.write_policy(text)
    assert gw.gateway.state is not None and gw.gateway.state.reload()
    async with client.get(gw.proxy + "/status/503") as response:
        assert response.status == 503
    await _service(gw).flush()
    assert receiver.bodies == []


async def test_breaker_opening_is_captured_with_its_state(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, receiver: Receiver
) -> None:
    """Upstream 503s are upstream_5xx events; once the breaker opens, circuit_open events
    name the breaker state."""
    gw = await make_gateway(
        f"""
routes:
  - name: fragile
    match: {{path_prefix: /status}}
    circuit_breaker: {{min_calls: 2, window: {{size: 2}}}}
errors:
  sinks: [{{name: hook, type: webhook, url: "{receiver.url}"}}]
"""
    )
    for _ in range(3):
        async with client.get(gw.proxy + "/status/503") as response:
            assert response.status == 503
    await _service(gw).flush()
    events = [e for body in receiver.bodies for e in body["events"]]
    assert [(e["reason"], e["breaker_state"]) for e in events] == [
        ("upstream_5xx", "closed"),
        ("upstream_5xx", "open"),
        ("circuit_open", "open"),
    ]


async def test_sampled_out_rate_limits_are_grouped_but_not_sent(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, receiver: Receiver
) -> None:
    """With rate_limited sampled at 0%, 429s are counted in their group and sent nowhere."""
    gw = await make_gateway(
        f"""
routes:
  - name: api
    match: {{path_prefix: /echo}}
    rate_limit:
      - {{name: tiny, key: [route], limit: 1, window: 1h}}
errors:
  sample: {{rate_limited: 0%}}
  sinks: [{{name: hook, type: webhook, url: "{receiver.url}"}}]
"""
    )
    statuses = []
    for _ in range(4):
        async with client.get(gw.proxy + "/echo") as response:
            statuses.append(response.status)
    await _service(gw).flush()
    assert statuses == [200, 429, 429, 429]
    assert receiver.bodies == []
    async with client.get(gw.url("admin", "/admin/errors/groups")) as response:
        body = await response.json()
    assert body["source"] == "memory"
    assert [(g["reason"], g["count"]) for g in body["groups"]] == [("rate_limited", 3)]
    async with client.get(gw.url("metrics", "/metrics")) as response:
        assert 'gateway_error_events_discarded_total{cause="sample"} 3.0' in await response.text()

"""Secrets in requests never reach captured events, sink payloads or log lines."""

from __future__ import annotations

import asyncio
import io
import uuid

import aiohttp
from aiohttp.test_utils import TestServer

from gateway.observability.logs import configure_logging
from tests.capture.conftest import Receiver, log_stream, receiver, wait_for
from tests.conftest import GatewayFactory, free_port
from tests.upstream.conftest import RawConnection

__all__ = ["log_stream", "receiver"]  # fixtures shared with the capture tests

TAG = uuid.uuid4().hex[:10]
SECRETS = {
    "authorization": f"Bearer AUTHz{TAG}",
    "cookie": f"session=COOKz{TAG}; theme=dark",
    "x-api-key": f"KEYz{TAG}",
}
MARKERS = (f"AUTHz{TAG}", f"COOKz{TAG}", f"KEYz{TAG}")


def policy(receiver: Receiver) -> str:
    return f"""
errors:
  body_excerpt: 1KiB
  recent: 500
  delivery: {{flush_interval: 50ms}}
  sinks:
    - {{name: hook, type: webhook, url: "{receiver.url}", backoff: 10ms}}
    - {{name: chat, type: webhook, format: slack, url: "{receiver.url}", backoff: 10ms}}
  alerts:
    - {{name: any-5xx, when: "rate(5xx) > 1/min", sinks: [hook, chat]}}
routes:
  - name: limited
    match: {{path_prefix: /echo/limited}}
    rate_limit: [{{name: by-key, key: ["header:X-Api-Key"], limit: 1, window: 1m}}]
  - name: strict
    match: {{path_prefix: /echo/strict}}
    validation: {{max_body: 64, json: {{max_depth: 2}}}}
  - name: hung
    match: {{path_prefix: /slow}}
    timeout: {{per_try: 100ms}}
  - name: dead
    match: {{path_prefix: /dead}}
    upstream: {{url: "http://127.0.0.1:{free_port()}", connect_timeout: 200ms}}
  - name: default
    match: {{path_prefix: /}}
"""


MIXED = [
    ("GET", "/echo/ok", None),  # served
    ("GET", "/status/500", None),  # upstream_5xx
    ("GET", "/status/503", None),
    ("GET", "/echo/limited", None),  # the second one is rate_limited
    ("GET", "/echo/limited", None),
    ("POST", "/echo/strict", b'{"a": {"b": {"c": 1}}}'),  # json_too_complex
    ("POST", "/echo/strict", b"x" * 200),  # payload_too_large
    ("GET", "/slow?seconds=1", None),  # upstream_timeout
    ("GET", "/dead", None),  # upstream_connect_error
    ("GET", "/nowhere/..%2f", None),
]


async def test_no_secret_leaks_into_events_sinks_or_logs(
    make_gateway: GatewayFactory,
    upstream: TestServer,
    receiver: Receiver,
    log_stream: io.StringIO,
    client: aiohttp.ClientSession,
) -> None:
    """After mixed traffic (served, refused, upstream failures, malformed) carrying Authorization,
    Cookie and X-Api-Key values, none of them appears in any event, sink payload or log line."""
    gw = await make_gateway(policy(receiver))
    configure_logging(stream=log_stream)
    statuses = []
    for _ in range(2):
        for method, path, body in MIXED:
            async with client.request(
                method, gw.proxy + path, headers=SECRETS, data=body
            ) as response:
                await response.read()
                statuses.append(response.status)
    # A request the parser refuses, still carrying the secrets.
    connection = await RawConnection.open(gw.gateway.addresses["proxy"])
    head = "".join(f"{name}: {value}\r\n" for name, value in SECRETS.items()).encode()
    await connection.send(
        b"POST /echo HTTP/1.1\r\nHost: a\r\n" + head + b"Content-Length: x\r\n\r\n"
    )
    statuses.append((await connection.response()).status)
    await connection.close()

    await wait_for(lambda: len(receiver.raw) >= 2, within=5)
    await asyncio.sleep(0.3)  # let the last batches and the alert go out
    async with client.get(gw.url("admin", "/admin/errors/recent?limit=500")) as response:
        recent = await response.text()
    async with client.get(gw.url("admin", "/admin/errors/groups")) as response:
        groups = await response.text()
    payloads = b"\n".join(receiver.raw).decode("utf-8", "replace")
    logs = log_stream.getvalue()
    events = recent.count('"reason"')
    print(
        f"secrets: statuses {sorted(set(statuses))}; {events} events, {len(receiver.raw)} sink "
        f"payloads, {len(logs.splitlines())} log lines searched; markers found: "
        f"{[m for m in MARKERS if m in recent + groups + payloads + logs]}"
    )
    assert {200, 400, 413, 429, 500, 502, 503, 504} <= set(statuses)
    assert events >= 8 and logs and payloads
    assert "x-api-key" in recent.lower(), "events carry the headers, scrubbed"
    for where, text in [
        ("events", recent),
        ("groups", groups),
        ("sinks", payloads),
        ("logs", logs),
    ]:
        leaked = [marker for marker in MARKERS if marker in text]
        assert not leaked, f"{leaked} found in {where}"

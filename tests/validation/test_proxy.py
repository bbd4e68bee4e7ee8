"""Validation end to end: requests through the real proxy to the real upstream's /echo."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import GatewayFactory, RunningGateway

ORDER_SCHEMA = {
    "type": "object",
    "required": ["customer", "items"],
    "properties": {
        "customer": {
            "type": "object",
            "required": ["id"],
            "properties": {"id": {"type": "integer"}},
        },
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["sku"],
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
            },
        },
        "comment": {"type": "string"},
        "callback": {"type": "string"},
    },
}

POLICY = """
routes:
  - name: orders
    match: {path_prefix: /echo/orders}
    validation:
      max_body: 4KiB
      max_url: 200
      max_headers: {count: 30, size: 4KiB}
      max_query_params: 3
      methods: [GET, POST]
      content_types: [application/json, application/x-www-form-urlencoded, multipart/form-data]
      json: {max_depth: 8, max_string: 1KiB}
      schema:
        body: schemas/order.json
        query: {type: object, properties: {page: {type: string, pattern: "^[0-9]+$"}}}
        headers: {type: object, properties: {x-tenant: {type: string, pattern: "^[a-z]+$"}}}
      sanitize_html:
        fields: ["$.comment", "$.profile.bio", "$.items[*].note"]
      ssrf: {fields: ["$.callback"]}
      forms: {max_files: 1, max_file_size: 100}
  - name: shadow
    match: {path_prefix: /echo/shadow}
    validation:
      mode: shadow
      max_body: 64
      json: {}
      sanitize_html: {fields: ["$.comment"]}
  - name: upload
    match: {path_prefix: /count}
    validation: {max_body: 1KiB, content_types: [application/octet-stream]}
  - name: open
    match: {path_prefix: /}
"""


@pytest.fixture
async def gw(make_gateway: GatewayFactory, tmp_path: Path) -> RunningGateway:
    """A gateway whose `orders` route reads its body schema from a file beside the policy."""
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "order.json").write_text(json.dumps(ORDER_SCHEMA))
    return await make_gateway(POLICY)


def order(**extra: Any) -> dict[str, Any]:
    return {"customer": {"id": 7}, "items": [{"sku": "A-1", "qty": 2}], **extra}


async def problem(response: aiohttp.ClientResponse) -> dict[str, Any]:
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.json(content_type=None)
    return body


async def metric(
    client: aiohttp.ClientSession, gw: RunningGateway, name: str, **labels: str
) -> float:
    """The sum of the series of `name` carrying all the given labels."""
    async with client.get(gw.url("metrics", "/metrics")) as response:
        text = await response.text()
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(w in line for w in wanted)
    )


async def test_valid_order_reaches_upstream_unchanged(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """A valid JSON order arrives byte for byte: nothing to sanitize means nothing rewritten."""
    raw = json.dumps(order(comment="plain words")).encode() + b"  "
    async with client.post(
        gw.proxy + "/echo/orders", data=raw, headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 200
        echoed = await response.json()
    assert echoed["body"].encode() == raw
    assert ["Content-Length", str(len(raw))] in echoed["headers"]


async def test_sanitized_fields_are_forwarded_with_correct_length(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """Script tags in declared HTML fields are removed, nested array fields too, and counted."""
    sent = order(
        comment="<b>hi</b><script>alert(1)</script>",
        items=[{"sku": "A", "note": "<i onclick='x()'>ok</i>"}, {"sku": "B", "note": "fine"}],
        profile={"bio": "<a href='https://x.example' onmouseover=1>me</a>"},
    )
    async with client.post(gw.proxy + "/echo/orders", json=sent) as response:
        assert response.status == 200
        echoed = await response.json()
    forwarded = json.loads(echoed["body"])
    assert forwarded["comment"] == "<b>hi</b>"
    assert forwarded["items"][0]["note"] == "<i>ok</i>"
    assert forwarded["items"][1]["note"] == "fine"
    assert forwarded["profile"]["bio"] == '<a href="https://x.example">me</a>'
    assert ["Content-Length", str(echoed["body_length"])] in echoed["headers"]
    assert (
        await metric(client, gw, "gateway_validation_sanitized_fields_total", route="orders") == 3
    )


CASES = [
    pytest.param(
        "POST",
        "/echo/orders",
        b'{"customer": {"id": 7}, "items": [',
        "application/json",
        400,
        "invalid_json",
        "json_syntax",
        None,
        id="truncated-json",
    ),
    pytest.param(
        "POST",
        "/echo/orders",
        b'{"customer": {"id": 7}, "items": [], "comment": "\xff"}',
        "application/json",
        400,
        "invalid_utf8",
        "utf8",
        None,
        id="invalid-utf8",
    ),
    pytest.param(
        "POST",
        "/echo/orders",
        b'{"customer": {"id": 7}, "customer": {"id": 8}, "items": []}',
        "application/json",
        400,
        "duplicate_json_key",
        "duplicate_keys",
        None,
        id="duplicate-key",
    ),
    pytest.param(
        "POST",
        "/echo/orders",
        json.dumps(order(items=[{"sku": "A", "qty": 0}])).encode(),
        "application/json",
        400,
        "schema_violation",
        "schema.body",
        "/items/0/qty",
        id="schema-minimum",
    ),
    pytest.param(
        "POST",
        "/echo/orders",
        json.dumps({"items": []}).encode(),
        "application/json",
        400,
        "schema_violation",
        "schema.body",
        "",
        id="schema-required",
    ),
    pytest.param(
        "POST",
        "/echo/orders",
        json.dumps(order(comment="x" * 1500)).encode(),
        "application/json",
        400,
        "json_too_complex",
        "max_string",
        "/comment",
        id="long-string",
    ),
    pytest.param(
        "POST",
        "/echo/orders",
        b"[" * 20 + b"]" * 20,
        "application/json",
        400,
        "json_too_complex",
        "max_depth",
        None,
        id="too-deep",
    ),
    pytest.param(
        "POST",
        "/echo/orders",
        json.dumps(order(callback="http://169.254.169.254/latest")).encode(),
        "application/json",
        400,
        "unsafe_url",
        "ssrf",
        "/callback",
        id="ssrf-metadata",
    ),
    pytest.param(
        "POST",
        "/echo/orders",
        b"<xml/>",
        "application/xml",
        415,
        "unsupported_media_type",
        "content_types",
        None,
        id="media-type",
    ),
    pytest.param(
        "POST",
        "/echo/orders",
        b"{}" + b" " * 5000,
        "application/json",
        413,
        "payload_too_large",
        "max_body",
        None,
        id="declared-too-large",
    ),
    pytest.param(
        "GET",
        "/echo/orders?a=1&b=2&c=3&d=4",
        None,
        None,
        400,
        "too_many_query_params",
        "max_query_params",
        None,
        id="query-count",
    ),
    pytest.param(
        "GET",
        "/echo/orders?page=abc",
        None,
        None,
        400,
        "schema_violation",
        "schema.query",
        "/page",
        id="query-schema",
    ),
    pytest.param(
        "GET",
        "/echo/orders/" + "x" * 300,
        None,
        None,
        414,
        "uri_too_long",
        "max_url",
        None,
        id="url-too-long",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "status", "reason", "check", "pointer"), CASES
)
async def test_rejections_name_check_and_field(
    gw: RunningGateway,
    client: aiohttp.ClientSession,
    method: str,
    path: str,
    body: bytes | None,
    content_type: str | None,
    status: int,
    reason: str,
    check: str,
    pointer: str | None,
) -> None:
    """Each refused request gets problem+json naming the reason, the check and the field."""
    headers = {"Content-Type": content_type} if content_type else {}
    async with client.request(method, gw.proxy + path, data=body, headers=headers) as response:
        assert response.status == status
        details = await problem(response)
    assert details["reason"] == reason
    assert details["check"] == check
    assert "expected" in details
    if pointer is not None:
        assert details["pointer"] == pointer
    assert (
        await metric(
            client,
            gw,
            "gateway_validation_rejections_total",
            check=check,
            mode="enforce",
            route="orders",
        )
        == 1
    )


async def test_method_not_allowed_lists_allowed_methods(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """A DELETE on a GET/POST route gets 405 with an Allow header."""
    async with client.delete(gw.proxy + "/echo/orders") as response:
        assert response.status == 405
        assert response.headers["Allow"] == "GET, POST"
        assert (await problem(response))["check"] == "methods"


async def test_too_many_headers_is_431(gw: RunningGateway, client: aiohttp.ClientSession) -> None:
    """More header fields than the route allows gets 431."""
    headers = {f"X-Extra-{i}": "v" for i in range(40)}
    async with client.get(gw.proxy + "/echo/orders", headers=headers) as response:
        assert response.status == 431
        assert (await problem(response))["check"] == "max_headers.count"


async def test_chunked_body_over_limit_is_413_after_limit_plus_one(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """A chunked upload (no Content-Length) is cut off with 413 once it passes max_body."""

    async def chunks() -> Any:
        for _ in range(10):
            yield b'{"a": "' + b"x" * 1000 + b'"}'

    async with client.post(
        gw.proxy + "/echo/orders", data=chunks(), headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 413
        assert (await problem(response))["check"] == "max_body"
    read = await metric(client, gw, "gateway_validation_body_bytes_read_total", route="orders")
    assert read == 0  # refused mid-read: only bodies read whole are counted


async def test_body_not_needed_streams_untouched(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """With only head checks, a declared-length upload streams through and is never read."""
    payload = b"z" * 1000
    async with client.post(
        gw.proxy + "/count", data=payload, headers={"Content-Type": "application/octet-stream"}
    ) as response:
        assert response.status == 200
        assert await response.json() == {"received": 1000}
    assert await metric(client, gw, "gateway_validation_body_bytes_read_total", route="upload") == 0


async def test_form_fields_are_sanitized_and_reencoded(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """An urlencoded `comment` field loses its script; other fields keep their value."""
    form = {"comment": "<b>x</b><script>1</script>", "other": "<script>kept</script>"}
    async with client.post(gw.proxy + "/echo/orders", data=form) as response:
        assert response.status == 200
        echoed = await response.json()
    from urllib.parse import parse_qs

    fields = parse_qs(echoed["body"])
    assert fields["comment"] == ["<b>x</b>"]
    assert fields["other"] == ["<script>kept</script>"]
    assert ["Content-Length", str(echoed["body_length"])] in echoed["headers"]


async def test_multipart_file_limits(gw: RunningGateway, client: aiohttp.ClientSession) -> None:
    """A multipart upload with two files on a one-file route is refused, naming the check."""
    form = aiohttp.FormData()
    form.add_field("a", b"1", filename="a.txt")
    form.add_field("b", b"2", filename="b.txt")
    async with client.post(gw.proxy + "/echo/orders", data=form) as response:
        assert response.status == 400
        assert (await problem(response))["check"] == "max_files"


async def test_multipart_text_field_is_sanitized(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """A multipart `comment` part is cleaned in place; the file part arrives as sent."""
    form = aiohttp.FormData()
    form.add_field("comment", "<b>x</b><script>1</script>")
    form.add_field("doc", b"<script>raw</script>", filename="d.html")
    async with client.post(gw.proxy + "/echo/orders", data=form) as response:
        assert response.status == 200
        echoed = await response.json()
    assert "<b>x</b>\r\n" in echoed["body"]
    assert "<script>1</script>" not in echoed["body"]
    assert "<script>raw</script>" in echoed["body"]


async def test_shadow_mode_forwards_and_counts(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """Shadow mode forwards invalid and oversized bodies as sent and counts what it would refuse."""
    async with client.post(
        gw.proxy + "/echo/shadow", data=b'{"a":', headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 200
        assert (await response.json())["body"] == '{"a":'
    big = json.dumps({"comment": "<script>x</script>" + "y" * 100}).encode()
    async with client.post(
        gw.proxy + "/echo/shadow", data=big, headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 200
        assert (await response.json())["body"].encode() == big
    rejections = "gateway_validation_rejections_total"
    for check in ("json_syntax", "max_body"):
        assert await metric(client, gw, rejections, check=check, mode="shadow") == 1
    assert await metric(client, gw, rejections, route="shadow", mode="enforce") == 0


async def test_shadow_mode_counts_sanitizing_but_forwards_as_sent(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """In shadow mode the HTML that would be cleaned is counted and forwarded unchanged."""
    sent = b'{"comment":"<script>x</script>"}'
    async with client.post(
        gw.proxy + "/echo/shadow", data=sent, headers={"Content-Type": "application/json"}
    ) as response:
        assert (await response.json())["body"].encode() == sent
    assert (
        await metric(client, gw, "gateway_validation_sanitized_fields_total", route="shadow") == 1
    )


async def test_short_body_is_counted_as_content_length_mismatch(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """A client that declares 100 bytes, sends 10 and closes is a 400 mismatch, never a 500."""
    host, port = gw.gateway.addresses["proxy"].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /echo/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n" + b'{"a": 1234'
    )
    await writer.drain()
    writer.write_eof()
    await asyncio.wait_for(reader.read(), timeout=5)  # the peer is gone: nothing can be answered
    writer.close()
    rejections = "gateway_validation_rejections_total"
    assert await metric(client, gw, rejections, check="content_length", mode="enforce") == 1
    assert await metric(client, gw, "gateway_rejections_total", reason="gateway_exception") == 0
    requests = "gateway_requests_total"
    assert await metric(client, gw, requests, route="orders", status_class="4xx") == 1


async def test_route_without_validation_is_untouched(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """A route with no validation block forwards anything, even invalid JSON."""
    async with client.post(
        gw.proxy + "/echo/free", data=b"{not json", headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 200
        assert (await response.json())["body"] == "{not json"


async def test_header_schema_names_the_header(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """A header failing the route's header schema is refused with its lower-cased name."""
    async with client.get(gw.proxy + "/echo/orders", headers={"X-Tenant": "ACME!"}) as response:
        assert response.status == 400
        details = await problem(response)
    assert (details["check"], details["pointer"]) == ("schema.headers", "/x-tenant")
    async with client.get(gw.proxy + "/echo/orders", headers={"X-Tenant": "acme"}) as response:
        assert response.status == 200


async def test_chunked_upload_under_limit_arrives_whole_with_length(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    """A chunked upload is measured against max_body, then forwarded whole with a Content-Length."""

    async def chunks() -> Any:
        for _ in range(4):
            yield b"y" * 200

    async with client.post(
        gw.proxy + "/count", data=chunks(), headers={"Content-Type": "application/octet-stream"}
    ) as response:
        assert response.status == 200
        assert await response.json() == {"received": 800}
    read = await metric(client, gw, "gateway_validation_body_bytes_read_total", route="upload")
    assert read == 800

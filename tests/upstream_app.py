"""The real upstream the tests proxy to: tiny routes that each show one behaviour."""

from __future__ import annotations

import asyncio
import json

from aiohttp import WSMsgType, web

HITS = web.AppKey("hits", dict[str, int])


async def echo(request: web.Request) -> web.Response:
    """Answers with what it received: method, path, query, headers and body."""
    request.app[HITS]["echo"] = request.app[HITS].get("echo", 0) + 1
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path": request.path,
            "raw_path": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body": body.decode("utf-8", "replace"),
            "body_length": len(body),
        }
    )


async def status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    headers = {}
    if "retry_after" in request.query:
        headers["Retry-After"] = request.query["retry_after"]
    if code in (204, 304):
        return web.Response(status=code, headers=headers)
    return web.Response(status=code, text=f"status {code}", headers=headers)


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("seconds", "5")))
    return web.Response(text="slow")


async def flaky(request: web.Request) -> web.Response:
    """Fails the first `fail` calls (default 2) with 503 (and ?retry_after=N), then succeeds,
    answering the body it received; ?delay=S holds every answer S seconds."""
    hits = request.app[HITS]
    hits["flaky"] = hits.get("flaky", 0) + 1
    body = await request.read()
    await asyncio.sleep(float(request.query.get("delay", "0")))
    if hits["flaky"] <= int(request.query.get("fail", "2")):
        retry_after = request.query.get("retry_after")
        headers = {"Retry-After": retry_after} if retry_after else {}
        return web.Response(status=503, text="unavailable", headers=headers)
    return web.Response(body=b"recovered" + (b":" + body if body else b""))


async def stream(request: web.Request) -> web.StreamResponse:
    """Streams `chunks` chunks of `size` bytes with chunked encoding."""
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    chunk = b"x" * int(request.query.get("size", "1024"))
    for _ in range(int(request.query.get("chunks", "10"))):
        await response.write(chunk)
    await response.write_eof()
    return response


async def sized(request: web.Request) -> web.StreamResponse:
    """Streams `bytes` bytes with a Content-Length, without holding them in memory."""
    total = int(request.query["bytes"])
    response = web.StreamResponse()
    response.content_length = total
    await response.prepare(request)
    block = b"y" * (1 << 20)
    sent = total if request.method == "HEAD" else 0  # aiohttp would write a HEAD body as told
    while sent < total:
        piece = block[: min(len(block), total - sent)]
        await response.write(piece)
        sent += len(piece)
    await response.write_eof()
    return response


async def count_body(request: web.Request) -> web.Response:
    """Reads the body as a stream and answers its length, never holding it whole."""
    total = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        total += len(chunk)
    return web.json_response({"received": total})


async def truncated(request: web.Request) -> web.StreamResponse:
    """Announces 1000 bytes, sends 10, then closes the connection."""
    response = web.StreamResponse()
    response.content_length = 1000
    await response.prepare(request)
    await response.write(b"0123456789")
    assert request.transport is not None
    request.transport.close()
    return response


async def ws(request: web.Request) -> web.WebSocketResponse:
    """Echoes text and binary frames, closes with 4000 on "close", accepts subprotocol `chat`."""
    socket = web.WebSocketResponse(protocols=["chat"])
    await socket.prepare(request)
    async for message in socket:
        if message.type == WSMsgType.TEXT and message.data == "close":
            await socket.close(code=4000)
        elif message.type == WSMsgType.TEXT:
            await socket.send_str("echo:" + message.data)
        elif message.type == WSMsgType.BINARY:
            await socket.send_bytes(message.data)
    request.app[HITS][f"ws_closed_{socket.close_code}"] = 1
    return socket


async def headers(request: web.Request) -> web.Response:
    """Answers with the response headers named in the query: ?h=Name:value, repeatable."""
    response = web.Response(text="headers")
    for item in request.query.getall("h", ()):
        name, _, value = item.partition(":")
        response.headers.add(name, value)
    return response


async def hits(request: web.Request) -> web.Response:
    return web.Response(text=json.dumps(request.app[HITS]))


def build_upstream_app() -> web.Application:
    app = web.Application(client_max_size=1 << 30)
    app[HITS] = {}
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    app.router.add_route("*", "/status/{code:\\d{3}}", status)
    app.router.add_get("/slow", slow)
    app.router.add_route("*", "/flaky", flaky)
    app.router.add_get("/stream", stream)
    app.router.add_get("/sized", sized)
    app.router.add_route("*", "/count", count_body)
    app.router.add_get("/truncated", truncated)
    app.router.add_get("/ws", ws)
    app.router.add_route("*", "/headers", headers)
    app.router.add_get("/_hits", hits)
    return app

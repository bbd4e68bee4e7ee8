"""A tiny demo upstream, served when the policy names none, so the gateway runs out of the box."""

from __future__ import annotations

import asyncio

from aiohttp import web


async def _hello(request: web.Request) -> web.Response:
    return web.json_response({"hello": "from the demo upstream", "path": request.path})


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "headers": dict(request.headers),
            "body": body.decode("utf-8", "replace"),
        }
    )


async def _status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    return web.Response(status=code, text=f"status {code}\n")


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(min(float(request.query.get("seconds", "2")), 60.0))
    return web.Response(text="slow\n")


def build_demo_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/api/echo", _echo)
    app.router.add_get("/api/status/{code:\\d{3}}", _status)
    app.router.add_get("/api/slow", _slow)
    app.router.add_route("*", "/{tail:.*}", _hello)
    return app

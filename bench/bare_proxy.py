"""The baseline: the plainest aiohttp pass-through proxy (web server + ClientSession, on uvloop).

Usage: python bench/bare_proxy.py LISTEN_PORT UPSTREAM_URL
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import aiohttp
import uvloop
from aiohttp import web

SESSION = web.AppKey("session", list[aiohttp.ClientSession])
UPSTREAM = web.AppKey("upstream", str)
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


async def forward(request: web.Request) -> web.Response:
    body = await request.read()
    async with request.app[SESSION][0].request(
        request.method,
        request.app[UPSTREAM] + request.raw_path,
        headers=request.headers,
        data=body or None,
        allow_redirects=False,
    ) as upstream:
        payload = await upstream.read()
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        return web.Response(status=upstream.status, body=payload, headers=headers)


async def session(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(auto_decompress=False) as client:
        app[SESSION].append(client)  # a box: the app is frozen once it starts
        yield


def main() -> None:
    port, upstream = int(sys.argv[1]), sys.argv[2].rstrip("/")
    app = web.Application()
    app[UPSTREAM] = upstream
    app[SESSION] = []
    app.cleanup_ctx.append(session)
    app.router.add_route("*", "/{tail:.*}", forward)
    loop = uvloop.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main()

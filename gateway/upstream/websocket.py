"""WebSocket upgrades: open the upstream socket first, then accept the client's, then pump."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from gateway.errors import UpstreamConnectError, UpstreamTimeout
from gateway.state import STATE
from gateway.upstream.client import AiohttpUpstreamClient, Timeouts
from gateway.upstream.lean import LeanUpstreamClient

# Headers the WebSocket handshake computes itself on each side.
_HANDSHAKE = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-accept",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)


def is_websocket_upgrade(request: web.Request) -> bool:
    return (
        request.method == "GET"
        and request.headers.get("Upgrade", "").lower() == "websocket"
        and "upgrade" in request.headers.get("Connection", "").lower()
    )


async def proxy_websocket(
    request: web.Request, url: URL, headers: CIMultiDict[str], timeouts: Timeouts
) -> web.StreamResponse:
    client = request.app[STATE].upstream
    if not isinstance(client, AiohttpUpstreamClient | LeanUpstreamClient):
        raise UpstreamConnectError("WebSocket upgrades need an upstream client with a session")
    offered = [
        p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
    ]
    for name in list(headers):
        if name.lower() in _HANDSHAKE:
            del headers[name]
    ws_url = url.with_scheme("wss" if url.scheme == "https" else "ws")
    try:
        upstream = await client.session.ws_connect(
            ws_url,
            headers=headers,
            protocols=offered,
            autoping=True,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=timeouts.read),
        )
    except aiohttp.WSServerHandshakeError as exc:
        raise UpstreamConnectError(
            f"The upstream refused the WebSocket upgrade ({exc.status})"
        ) from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamTimeout("The upstream did not answer the WebSocket upgrade in time") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamConnectError("The upstream could not be reached") from exc

    downstream = web.WebSocketResponse(
        protocols=[upstream.protocol] if upstream.protocol else (), autoping=True
    )
    try:
        await downstream.prepare(request)
        await asyncio.gather(_pump(downstream, upstream), _pump(upstream, downstream))
    finally:
        await upstream.close()
        await downstream.close()
    return downstream


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    async for message in source:
        if sink.closed:
            break
        if message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type == WSMsgType.ERROR:
            break
    if not sink.closed:
        await sink.close(code=source.close_code or aiohttp.WSCloseCode.OK)

"""WebSocket upgrades pass through the gateway: frames both ways, subprotocols, closes."""

from __future__ import annotations

import asyncio
import base64
import os

import aiohttp
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer

from tests.conftest import GatewayFactory, free_port, policy_text
from tests.upstream.conftest import ROUTES, upstream_hits


async def test_text_and_binary_frames_pass_both_ways(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """Text and binary frames reach the upstream's echo socket and come back unchanged."""
    gw = await make_gateway(ROUTES)
    async with client.ws_connect(gw.proxy + "/ws") as socket:
        await socket.send_str("hello")
        assert await socket.receive_str(timeout=5) == "echo:hello"
        payload = bytes(range(256)) * 1000
        await socket.send_bytes(payload)
        assert await socket.receive_bytes(timeout=5) == payload


async def test_subprotocol_is_negotiated_with_the_upstream(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """The client's offered subprotocols reach the upstream and its choice (chat) comes back."""
    gw = await make_gateway(ROUTES)
    async with client.ws_connect(gw.proxy + "/ws", protocols=("superchat", "chat")) as socket:
        assert socket.protocol == "chat"
        await socket.send_str("x")
        assert await socket.receive_str(timeout=5) == "echo:x"


async def test_client_close_reaches_the_upstream_and_completes(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession, upstream: TestServer
) -> None:
    """A client's close completes, and the upstream sees the client's close code."""
    gw = await make_gateway(ROUTES)
    socket = await client.ws_connect(gw.proxy + "/ws")
    await socket.send_str("bye")
    assert await socket.receive_str(timeout=5) == "echo:bye"
    await asyncio.wait_for(socket.close(code=4001), 5)
    assert socket.closed
    for _ in range(50):  # the upstream records the close as its handler returns
        if "ws_closed_4001" in await upstream_hits(upstream):
            break
        await asyncio.sleep(0.02)
    assert "ws_closed_4001" in await upstream_hits(upstream)


async def test_a_clients_half_close_reaches_the_upstream(
    make_gateway: GatewayFactory,
) -> None:
    """A client that sends FIN inside the tunnel: the upstream reads the end of its stream
    (as it would without the gateway) and ends the socket, and the client's connection closes
    at once rather than staying open on an upstream that never heard of the FIN."""
    gw = await make_gateway(ROUTES)
    host, _, port = gw.gateway.addresses["proxy"].rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /ws HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101")
    mask = os.urandom(4)
    text = b"hi"
    writer.write(
        bytes([0x81, 0x80 | len(text)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(text))
    )
    echo = await asyncio.wait_for(reader.readexactly(2 + len("echo:hi")), 5)
    assert echo[2:] == b"echo:hi"
    writer.write_eof()
    # Without the FIN passed on, the upstream never ends the socket: this times out.
    rest = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert len(rest) < 64  # at most the upstream's close frame


async def test_upstream_close_reaches_the_client(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """When the upstream closes the socket, the client receives the close with its code."""
    gw = await make_gateway(ROUTES)
    async with client.ws_connect(gw.proxy + "/ws") as socket:
        await socket.send_str("close")
        message = await socket.receive(timeout=5)
        assert message.type == WSMsgType.CLOSE
        assert message.data == 4000


async def test_upgrade_to_an_unreachable_upstream_is_a_502_problem(
    make_gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    """A WebSocket upgrade whose upstream is down gets 502 problem+json, not a hung socket."""
    gw = await make_gateway(policy_text(ROUTES, f"http://127.0.0.1:{free_port()}"))
    async with client.get(
        gw.proxy + "/ws",
        headers={
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        },
    ) as response:
        assert response.status == 502
        body = await response.json(content_type="application/problem+json")
    assert body["type"] == "urn:gateway:problem:upstream-connect-error"

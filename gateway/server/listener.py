"""The proxy port: accept connections, hand them the pipeline, and drain them at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from gateway.errors import Rejection
from gateway.observability.logs import get_logger
from gateway.observability.metrics import status_class
from gateway.observability.request_log import mint_request_id
from gateway.policy.model import Limits
from gateway.problem import problem_response
from gateway.server.connection import Handler, HttpConnection, PrepareHook, render_head
from gateway.server.request import ProxyRequest
from gateway.state import STATE

log = get_logger("gateway.capture")

UNPARSED = "unparsed"
"""The route label of requests refused before a route could be matched."""


class ProxyServer:
    """The proxy port's listener and the connections it accepted."""

    def __init__(
        self, app: web.Application, handler: Handler, prepare_hooks: Sequence[PrepareHook]
    ) -> None:
        self.app = app
        self.state = app[STATE]
        self.handler = handler
        self.prepare_hooks = tuple(prepare_hooks)
        self.loop = asyncio.get_running_loop()
        self.connections: set[HttpConnection] = set()
        self.closing = False
        self._server: asyncio.Server | None = None
        self._all_closed: asyncio.Future[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def forget(self, connection: HttpConnection) -> None:
        self.connections.discard(connection)
        done = self._all_closed
        if not self.connections and done is not None and not done.done():
            done.set_result(None)

    def limits(self) -> Limits:
        """The limits of the policy in force: a reload reaches the connections opened after it."""
        return self.state.current.policy.limits

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> str:
        """Listen; the address bound (`host:port`, the port chosen by the OS when 0)."""
        self._server = await self.loop.create_server(
            lambda: HttpConnection(self),
            host,
            port,
            reuse_address=True,
            reuse_port=reuse_port or None,
            backlog=1024,
        )
        self._sweeper = asyncio.ensure_future(self.sweep())
        listening: Any = self._server  # uvloop's sockets are a list, typeshed says a tuple
        sockets: list[socket.socket] = list(listening.sockets)
        bound_host, bound_port = sockets[0].getsockname()[:2]
        return f"[{bound_host}]:{bound_port}" if ":" in bound_host else f"{bound_host}:{bound_port}"

    async def sweep(self) -> None:
        """Close the connections whose head is late (limits.header_timeout): one pass over
        them a few times per timeout, which costs less than a timer per request. A timeout
        fires up to a quarter of itself (at most a second) after it has passed."""
        while True:
            await asyncio.sleep(min(1.0, self.limits().header_timeout / 4))
            now = self.loop.time()
            for connection in list(self.connections):
                deadline = connection.head_deadline
                if deadline is not None and deadline <= now:
                    connection.header_timed_out()

    async def stop(self, grace: float) -> None:
        """Stop accepting, close idle connections, give busy ones `grace` seconds to finish."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.close_when_idle()
        if self.connections:
            self._all_closed = self.loop.create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._all_closed), grace)
        # Past the grace period: cut what is left, and stop what was still answering on it.
        unfinished = [task for c in list(self.connections) if (task := c.abort()) is not None]
        for task in unfinished:
            task.cancel()
        if unfinished:
            await asyncio.wait(unfinished, timeout=1.0)
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    def refused_unparsed(self, connection: HttpConnection, error: Rejection) -> None:
        """Answer a request llhttp refused: problem+json, a minted id, a log line and a count."""
        request_id = mint_request_id()
        metrics = self.state.metrics
        metrics.rejections.labels(UNPARSED, error.reason).inc()
        metrics.requests.labels(UNPARSED, "OTHER", status_class(error.status)).inc()
        log.info(
            "rejected",
            reason=error.reason,
            status=error.status,
            route=UNPARSED,
            detail=error.detail,
            request_id=request_id,
        )
        # The target was never parsed: the occurrence is named by its request id instead.
        response = problem_response(
            error, request_id=request_id, instance=f"urn:gateway:request:{request_id}"
        )
        body = response.body
        assert isinstance(body, bytes)
        response.headers["X-Request-ID"] = request_id
        # Connection: close, since what follows on this connection cannot be trusted.
        framing = (f"Content-Length: {len(body)}", "Connection: close")
        headers = response.headers
        dated = "Date" in headers
        head = render_head(error.status, response.reason, headers.items(), dated, framing)
        transport = connection.transport
        if transport is not None and not transport.is_closing():
            transport.write(head + body)

    def log_unexpected(self, request: ProxyRequest) -> None:
        # The capture step turns every exception into an answer; this is a broken client
        # connection under it, or a bug in the steps before capture.
        log.exception("connection_failed", method=request.method, path=request.path)

"""The proxy port's HTTP server: aiohttp's, answering requests its parser refuses as problem+json.

aiohttp answers a request it cannot parse (garbage request line, invalid or oversized header) by
itself, before any middleware runs, with a text/plain 400 that quotes the offending bytes. There is
no hook for it (aio-libs/aiohttp#3287), so `RequestHandler.handle_error` is overridden: those
requests get our problem+json, a minted request id, a log line and a count, like every rejection.

The same handler fails the body of a request in progress whose chunked framing breaks mid-stream,
which aiohttp 3.14 silently drops, leaving the request waiting for more body until a timeout.
"""

from __future__ import annotations

import uuid

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler, _ErrInfo

from gateway.errors import BadRequest, HeaderFieldsTooLarge, Rejection
from gateway.observability.logs import get_logger
from gateway.observability.metrics import GatewayMetrics, status_class
from gateway.problem import problem_response
from gateway.state import STATE

log = get_logger("gateway.capture")

UNPARSED = "unparsed"
"""The route label of requests refused before a route could be matched."""


def parser_rejection(exc: HttpProcessingError) -> Rejection:
    """Our rejection for a parser error; never quotes the request's bytes back."""
    if isinstance(exc, LineTooLong):
        # llhttp reports an overlong request line and an overlong header field alike, and both
        # limits default to the same size, so 431 answers both (nginx answers 400 to both).
        return HeaderFieldsTooLarge(
            f"A header field or the request line is longer than {exc.args[1]} bytes"
        )
    if exc.message.startswith("Too many headers"):
        return HeaderFieldsTooLarge("The request has more header fields than the parser allows")
    return BadRequest("The request is not valid HTTP/1.1")


class _ProblemRequestHandler(RequestHandler):
    __slots__ = ()
    _manager: _ProblemServer

    def data_received(self, data: bytes) -> None:
        streaming = self._current_request
        queued = len(self._messages)
        super().data_received(data)
        if (
            streaming is not None
            and len(self._messages) > queued
            and not streaming.content.is_eof()
            and isinstance(error := self._messages[-1][0], _ErrInfo)
        ):
            # The parser gave up inside this request's body and dropped its stream without a
            # word: fail the stream, so that the proxy stops waiting for the rest of the body.
            streaming.content.set_exception(error.exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError) or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        error = parser_rejection(exc)
        request_id = uuid.uuid4().hex
        metrics = self._manager.metrics
        metrics.child(metrics.rejections, UNPARSED, error.reason).inc()
        metrics.child(metrics.requests, UNPARSED, "OTHER", status_class(error.status)).inc()
        log.info(
            "rejected",
            reason=error.reason,
            status=error.status,
            route=UNPARSED,
            detail=error.detail,
            parser_error=type(exc).__name__,
            request_id=request_id,
        )
        # The path was never parsed: the occurrence is named by its request id instead.
        response = problem_response(
            error, request_id=request_id, instance=f"urn:gateway:request:{request_id}"
        )
        response.headers["X-Request-ID"] = request_id
        response.force_close()  # what follows on this connection cannot be trusted
        return response


class _ProblemServer(web.Server):
    metrics: GatewayMetrics

    def __call__(self) -> RequestHandler:
        return _ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class ProxyRunner(web.AppRunner):
    """An AppRunner whose connections answer unparseable requests as problem+json."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # Application._make_handler builds a plain Server and takes no class: re-class the one it
        # built (same layout, one method overridden) rather than copy its private state.
        server.__class__ = _ProblemServer
        assert isinstance(server, _ProblemServer)
        server.metrics = self.app[STATE].metrics
        return server

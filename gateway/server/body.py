"""A request body as the parser delivers it: buffered chunks, flow control, and the end."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Final, Protocol

from aiohttp.http_exceptions import PayloadEncodingError, TransferEncodingError

HIGH_WATER: Final = 256 * 1024
"""Buffered body bytes at which the connection stops reading from the client."""


class FlowControl(Protocol):
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def send_continue(self) -> None:
        """Tell a client that sent `Expect: 100-continue` to send its body (RFC 9110 §10.1.1)."""


class RequestBody:
    """What the parser fed for one request; read by the pipeline or streamed upstream.

    A broken body (bad chunk framing, the client gone before the end) raises
    PayloadEncodingError from `read`, as aiohttp's StreamReader does, so the same callers work.
    """

    __slots__ = (
        "_chunks",
        "_eof",
        "_error",
        "_flow",
        "_size",
        "_waiter",
        "expects_continue",
    )

    def __init__(self, flow: FlowControl) -> None:
        self._flow = flow
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.expects_continue = False

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > HIGH_WATER:
            self._flow.pause_reading()
        self._wake()

    def finish(self) -> None:
        self._eof = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        if not self._eof:
            self._error = error
            self._wake()

    def is_eof(self) -> bool:
        return self._eof

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        if self.expects_continue:
            # Sent on the first read, not before: a request refused without its body never
            # makes the client send it.
            self.expects_continue = False
            self._flow.send_continue()
        while not self._chunks and not self._eof and self._error is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _take(self, n: int) -> bytes:
        chunk = self._chunks.popleft()
        if 0 <= n < len(chunk):
            self._chunks.appendleft(chunk[n:])
            chunk = chunk[:n]
        before = self._size
        self._size -= len(chunk)
        if before > HIGH_WATER >= self._size:
            self._flow.resume_reading()
        return chunk

    async def read(self, n: int = -1) -> bytes:
        """Up to n bytes (all of the rest when n < 0); b"" at the end."""
        if n < 0:
            parts: list[bytes] = []
            while True:
                part = await self.read(1 << 16)
                if not part:
                    return b"".join(parts)
                parts.append(part)
        await self._wait()
        if self._chunks:
            return self._take(n)
        if self._error is not None:
            raise self._error
        return b""

    def iter_chunked(self, n: int) -> AsyncIterator[bytes]:
        return Chunks(self, n)


class Chunks:
    """The body in reads of at most `n` bytes, as aiohttp's `iter_chunked` gives it.

    A class rather than an async generator: mypyc compiles this module, and it does not compile
    async generators."""

    __slots__ = ("_body", "_n")

    def __init__(self, body: RequestBody, n: int) -> None:
        self._body = body
        self._n = n

    def __aiter__(self) -> Chunks:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._body.read(self._n)
        if not chunk:
            raise StopAsyncIteration
        return chunk


def cut_short() -> PayloadEncodingError:
    """The error a body fails with when the client stops sending before its end."""
    return PayloadEncodingError("The connection closed before the request body was complete")


def broken_framing() -> TransferEncodingError:
    """The error a body fails with when its chunked framing breaks mid-way."""
    return TransferEncodingError("The request body's chunked framing is broken")

"""Read a request body into memory, never more than the limit plus one byte."""

from __future__ import annotations

import asyncio
from typing import Protocol

from aiohttp.http_exceptions import PayloadEncodingError

from gateway.errors import ContentLengthMismatch, PayloadTooLarge, RequestTimeout, caused_by

CHUNK = 1 << 16


class BodyStream(Protocol):
    """The part of aiohttp's StreamReader this module uses."""

    async def read(self, n: int = -1) -> bytes: ...


async def read_bounded(
    stream: BodyStream, limit: int | None, declared: int | None, idle_timeout: float | None = None
) -> bytes:
    """The whole body; PayloadTooLarge as soon as it passes `limit` (None: no limit), and
    RequestTimeout when no byte came for `idle_timeout` seconds (a slow-body client).

    A client that closes before sending the length it declared surfaces here as a lost
    connection or a PayloadEncodingError: a 400 in the metrics and logs (the client is gone).
    """
    chunks: list[bytes] = []
    total = 0
    try:
        while True:
            want = CHUNK if limit is None else min(CHUNK, limit + 1 - total)
            try:
                async with asyncio.timeout(idle_timeout):
                    chunk = await stream.read(want)
            except TimeoutError:
                raise caused_by(
                    RequestTimeout(
                        f"no part of the body arrived for {idle_timeout:g} s after {total} bytes"
                    ),
                    None,
                )
            if not chunk:
                break
            total += len(chunk)
            if limit is not None and total > limit:
                raise too_large(limit)
            chunks.append(chunk)
    except (PayloadEncodingError, ConnectionResetError):
        raise caused_by(_mismatch(declared, total), None)
    if declared is not None and total != declared:
        raise _mismatch(declared, total)
    return b"".join(chunks)


def too_large(limit: int) -> PayloadTooLarge:
    """The 413 of a body longer than `limit`, however its length was found."""
    return PayloadTooLarge(
        f"the body exceeds {limit} bytes",
        extensions={"check": "max_body", "expected": f"at most {limit} bytes"},
    )


def _mismatch(declared: int | None, received: int) -> ContentLengthMismatch:
    expected = f"{declared} bytes" if declared is not None else "a complete chunked body"
    return ContentLengthMismatch(
        f"received {received} bytes, the request declared {expected}",
        extensions={"check": "content_length", "expected": expected},
    )

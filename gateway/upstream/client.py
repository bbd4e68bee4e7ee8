"""The one small interface to the upstream, and its aiohttp implementation.

A Python proxy spends most of its time in its upstream client (../shared/notes/perf.md), so the
proxy handler depends only on `UpstreamClient`; a leaner implementation can replace this one.
Foreign errors are mapped here, once, to UpstreamConnectError and UpstreamTimeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.errors import Rejection, UpstreamConnectError, UpstreamTimeout
from gateway.upstream.headers import Fields

CHUNK_SIZE = 64 * 1024


@dataclass(frozen=True, slots=True)
class Timeouts:
    """connect: to open a connection; read: until response headers, and between body chunks."""

    connect: float
    read: float


class UpstreamResponse(Protocol):
    status: int
    reason: str | None
    fields: Fields
    """The header fields as they came, in order (what the proxy forwards from)."""

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The same fields as a map, for the odd lookup (Retry-After...)."""
        ...

    def body(self) -> AsyncIterator[bytes]:
        """The response body, chunk by chunk; raises UpstreamConnectError/UpstreamTimeout."""
        ...

    def arrived_body(self) -> bytes | None:
        """The whole body when all of it came with the head (a small answer), taken at once
        and without a stream; None otherwise, and `body()` streams it."""
        ...

    def release(self) -> None:
        """Return the connection to the pool (or drop it if the body was not read to the end)."""
        ...


class UpstreamClient(Protocol):
    async def send(
        self,
        method: str,
        url: str,
        fields: Fields,
        body: bytes | AsyncIterable[bytes] | None,
        timeouts: Timeouts,
        deadline: float | None = None,
    ) -> UpstreamResponse:
        """Send one request with these header fields (in this order, Content-Length among them
        when the caller knows it); raise UpstreamConnectError or UpstreamTimeout when it fails.

        `deadline` (the event loop's clock) bounds the whole try up to the response head, as
        a per-try timeout does: past it, UpstreamTimeout. A Rejection raised by the body
        iterator (the client's body is malformed) is re-raised.
        """
        ...

    async def close(self) -> None: ...


class _AiohttpResponse:
    __slots__ = ("_response", "fields", "reason", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.reason = response.reason
        self.fields = list(response.headers.items())

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        return self._response.headers

    async def body(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(CHUNK_SIZE):
                yield chunk
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout("The upstream stopped sending its response") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamConnectError("The upstream broke off its response") from exc

    def arrived_body(self) -> bytes | None:
        return None  # aiohttp's stream is read through body()

    def release(self) -> None:
        self._response.release()


class AiohttpUpstreamClient:
    """Pooled keep-alive connections through aiohttp's client."""

    def __init__(self, max_connections: int) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections, enable_cleanup_closed=True),
            # A proxy must not keep cookies: one client's cookie would reach another's request.
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def send(
        self,
        method: str,
        url: str,
        fields: Fields,
        body: bytes | AsyncIterable[bytes] | None,
        timeouts: Timeouts,
        deadline: float | None = None,
    ) -> UpstreamResponse:
        timeout = aiohttp.ClientTimeout(
            total=None, connect=timeouts.connect, sock_read=timeouts.read
        )
        overall = asyncio.get_running_loop().time() + timeouts.connect + timeouts.read
        try:
            async with asyncio.timeout_at(overall if deadline is None else min(overall, deadline)):
                response = await self._session.request(
                    method,
                    # encoded=True: the target travels byte for byte (no %7E -> ~, no ../ folding).
                    URL(url, encoded=True),
                    headers=CIMultiDict(fields),
                    data=body,
                    allow_redirects=False,
                    timeout=timeout,
                    compress=None,
                )
        except aiohttp.ConnectionTimeoutError as exc:
            # As nginx's proxy_connect_timeout: a timeout (504), not a refusal (502).
            raise UpstreamTimeout("The upstream did not accept a connection in time") from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout("The upstream did not answer in time") from exc
        except aiohttp.ClientError as exc:
            if isinstance(exc.__cause__, Rejection):
                # The request body failed on the client's side (broken chunking): its fault,
                # not the upstream's, and not a failure a circuit breaker should count.
                raise exc.__cause__ from None
            raise UpstreamConnectError("The upstream could not be reached") from exc
        return _AiohttpResponse(response)

    async def close(self) -> None:
        await self._session.close()

"""The request the pipeline sees: the head as parsed, the body as a stream, and a small store.

It offers the part of aiohttp's `web.Request` the pipeline reads (method, path, headers,
content, `request[KEY]`...), computed once at parse time or lazily when rarely needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, overload

from aiohttp import HttpVersion, web
from multidict import CIMultiDictProxy
from yarl import URL

from gateway.server.body import RequestBody

if TYPE_CHECKING:
    from gateway.server.connection import HttpConnection

T = TypeVar("T")


class ProxyRequest(dict[Any, Any]):
    """One request as the pipeline steps read it; `request[KEY]` holds what steps pass on.

    It is itself that store, a dict: `request[KEY]` is then a dict lookup in C, not a Python
    method per access (a request makes a dozen); the overloads below only type it."""

    __slots__ = (
        "_url",
        "body_exists",
        "connection",
        "content",
        "content_length",
        "header_bytes",
        "headers",
        "host",
        "keep_alive",
        "method",
        "path",
        "raw_path",
        "remote",
        "state",
        "version",
    )
    scheme = "http"

    def __init__(
        self,
        connection: HttpConnection,
        method: str,
        raw_path: str,
        version: HttpVersion,
        headers: CIMultiDictProxy[str],
        host: str,
        header_bytes: int,
        content: RequestBody,
        content_length: int | None,
        body_exists: bool,
        keep_alive: bool,
    ) -> None:
        self.connection = connection
        self.method = method
        self.raw_path = raw_path
        self.version = version
        self.headers = headers
        self.host = host  # the Host header, or (HTTP/1.0 without one) the address we listen on
        self.header_bytes = header_bytes  # of the header block as sent, counted by the parser
        self.content = content
        self.content_length = content_length
        self.body_exists = body_exists
        self.keep_alive = keep_alive
        self.remote = connection.peer
        # app[STATE] once: through web.Application's __getitem__ it costs a call per step.
        self.state = connection.server.state
        self._url: URL | None = None
        path = raw_path.partition("?")[0]
        if "%" in path or not path.startswith("/"):
            path = self.rel_url.path  # decoded, as aiohttp's request.path is
        self.path = path

    # A request is one object, not a mapping to compare or to test for emptiness.
    __eq__ = object.__eq__
    __ne__ = object.__ne__
    __hash__ = object.__hash__  # type: ignore[assignment]

    def __bool__(self) -> bool:
        return True

    if TYPE_CHECKING:

        @overload
        def __getitem__(self, key: web.RequestKey[T]) -> T: ...
        @overload
        def __getitem__(self, key: str) -> Any: ...
        def __getitem__(self, key: Any) -> Any: ...

        @overload
        def get(self, key: web.RequestKey[T], default: None = None) -> T | None: ...
        @overload
        def get(self, key: web.RequestKey[T], default: T) -> T: ...
        def get(self, key: Any, default: Any = None) -> Any: ...

    @property
    def rel_url(self) -> URL:
        if self._url is None:
            target = self.raw_path
            if not target.startswith("/"):  # absolute-form: keep the path and query only
                absolute = URL(target, encoded=True)
                self._url = URL.build(
                    path=absolute.raw_path, query_string=absolute.raw_query_string, encoded=True
                )
            else:
                path, _, query = target.partition("?")
                self._url = URL.build(path=path, query_string=query, encoded=True)
        return self._url

    @property
    def query_string(self) -> str:
        return self.rel_url.query_string

    async def read(self) -> bytes:
        return await self.content.read()

"""The request the pipeline sees: the head as parsed, the body as a stream, and a small store.

It offers the part of aiohttp's `web.Request` the pipeline reads (method, path, headers,
content, `request[KEY]`...), computed once at parse time or lazily when rarely needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

from aiohttp import HttpVersion, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.server.body import RequestBody
from gateway.upstream.headers import Fields

if TYPE_CHECKING:
    from gateway.server.connection import HttpConnection

T = TypeVar("T")


class ProxyRequest:
    """One request as the pipeline steps read it; `request[KEY]` holds what steps pass on.

    A plain class with its own small store: compiled by mypyc (gateway/native.py), its fields
    are struct slots and `request[KEY]` a direct call, where a dict subclass would leave both
    to the generic attribute and item protocols."""

    __slots__ = (
        "_headers",
        "_store",
        "_url",
        "body_exists",
        "chunked",
        "connection",
        "content",
        "content_length",
        "fields",
        "header_bytes",
        "host",
        "keep_alive",
        "method",
        "path",
        "raw_path",
        "remote",
        "state",
        "version",
    )
    scheme: ClassVar[str] = "http"  # the proxy port speaks plain HTTP; TLS ends before it

    def __init__(
        self,
        connection: HttpConnection,
        method: str,
        raw_path: str,
        version: HttpVersion,
        fields: Fields,
        host: str,
        header_bytes: int,
        content: RequestBody,
        content_length: int | None,
        chunked: bool,
        body_exists: bool,
        keep_alive: bool,
    ) -> None:
        self._store: dict[Any, Any] = {}
        self.connection = connection
        self.method = method
        self.raw_path = raw_path
        self.version = version
        self.fields = fields  # the header fields as a list, in order, as they came
        self._headers: CIMultiDictProxy[str] | None = None
        self.host = host  # the Host header, or (HTTP/1.0 without one) the address we listen on
        self.header_bytes = header_bytes  # of the header block as sent, counted by the parser
        self.content = content
        self.content_length = content_length
        self.chunked = chunked  # the body comes with Transfer-Encoding: chunked
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

    @overload
    def __getitem__(self, key: web.RequestKey[T]) -> T: ...
    @overload
    def __getitem__(self, key: str) -> Any: ...
    def __getitem__(self, key: Any) -> Any:
        return self._store[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._store[key] = value

    @overload
    def get(self, key: web.RequestKey[T], default: None = None) -> T | None: ...
    @overload
    def get(self, key: web.RequestKey[T], default: T) -> T: ...
    def get(self, key: Any, default: Any = None) -> Any:
        return self._store.get(key, default)

    def header(self, name: str) -> str | None:
        """The value of the first field called `name` (given in lower case), or None.

        Read from the list of fields: the steps every request passes read two or three
        fields, and building a header map for them cost more than all their lookups."""
        size = len(name)
        for field, value in self.fields:
            if len(field) == size and field.lower() == name:
                return value
        return None

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The fields as a case-insensitive map, built on first use (what reads many fields
        or all of them: schemas, the attack scan, error events)."""
        if self._headers is None:
            self._headers = CIMultiDictProxy(CIMultiDict(self.fields))
        return self._headers

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

"""Checks on the request line and headers, done before any body byte is read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from gateway.errors import (
    HeaderFieldsTooLarge,
    MethodNotAllowed,
    PayloadTooLarge,
    TooManyQueryParams,
    UnsupportedMediaType,
    UriTooLong,
)
from gateway.policy.validation import Validation


@dataclass(frozen=True, slots=True)
class MediaType:
    """A Content-Type split into its lower-cased type and the parameters the checks use."""

    essence: str
    charset: str | None = None
    boundary: str | None = None

    @classmethod
    def parse(cls, header: str | None) -> MediaType | None:
        if not header:
            return None
        essence, *params = header.split(";")
        values: dict[str, str] = {}
        for param in params:
            name, _, value = param.partition("=")
            values[name.strip().lower()] = value.strip().strip('"')
        return cls(essence.strip().lower(), values.get("charset"), values.get("boundary"))

    @property
    def is_json(self) -> bool:
        return self.essence == "application/json" or self.essence.endswith("+json")

    @property
    def is_urlencoded(self) -> bool:
        return self.essence == "application/x-www-form-urlencoded"

    @property
    def is_multipart(self) -> bool:
        return self.essence == "multipart/form-data"


class RequestHead(NamedTuple):
    """What the head checks need from a request, independent of the HTTP library (a tuple:
    made for every request, where a frozen dataclass's __init__ costs a setattr per field)."""

    method: str
    target: str  # the request target as sent: path and query, still percent-encoded
    query_string: str
    header_count: int
    header_bytes: int
    media_type: MediaType | None
    content_length: int | None
    has_body: bool
    content_encoding: str | None = None


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """One route's method, URL, header, query, media-type and declared-length checks."""

    methods: frozenset[str] | None
    allow_header: str
    max_url: int | None
    max_header_count: int | None
    max_header_bytes: int | None
    max_query_params: int | None
    content_types: tuple[str, ...] | None
    max_body: int

    @classmethod
    def build(cls, policy: Validation) -> HeadLimits:
        methods = frozenset(policy.methods) if policy.methods is not None else None
        return cls(
            methods=methods,
            allow_header=", ".join(policy.methods or ()),
            max_url=policy.max_url,
            max_header_count=policy.max_headers.count if policy.max_headers else None,
            max_header_bytes=policy.max_headers.size if policy.max_headers else None,
            max_query_params=policy.max_query_params,
            content_types=policy.content_types,
            max_body=policy.max_body,
        )

    def check(self, head: RequestHead) -> None:
        if self.methods is not None and head.method not in self.methods:
            raise MethodNotAllowed(
                f"{head.method[:16]} is not allowed on this route",
                headers={"Allow": self.allow_header},
                extensions={"check": "methods", "expected": sorted(self.methods)},
            )
        if self.max_url is not None and len(head.target) > self.max_url:
            raise UriTooLong(
                f"the request target has {len(head.target)} bytes",
                extensions={"check": "max_url", "expected": f"at most {self.max_url} bytes"},
            )
        if self.max_header_count is not None and head.header_count > self.max_header_count:
            raise HeaderFieldsTooLarge(
                f"{head.header_count} header fields",
                extensions={
                    "check": "max_headers.count",
                    "expected": f"at most {self.max_header_count} fields",
                },
            )
        if self.max_header_bytes is not None and head.header_bytes > self.max_header_bytes:
            raise HeaderFieldsTooLarge(
                f"{head.header_bytes} bytes of header fields",
                extensions={
                    "check": "max_headers.size",
                    "expected": f"at most {self.max_header_bytes} bytes",
                },
            )
        if self.max_query_params is not None:
            count = sum(1 for pair in head.query_string.split("&") if pair)
            if count > self.max_query_params:
                raise TooManyQueryParams(
                    f"{count} query parameters",
                    extensions={
                        "check": "max_query_params",
                        "expected": f"at most {self.max_query_params}",
                    },
                )
        if head.has_body and self.content_types is not None:
            self._check_media_type(head.media_type)
        if head.content_length is not None and head.content_length > self.max_body:
            raise PayloadTooLarge(
                f"Content-Length {head.content_length} exceeds the limit",
                extensions={"check": "max_body", "expected": f"at most {self.max_body} bytes"},
            )

    @staticmethod
    def check_decodable(head: RequestHead) -> None:
        """A body the checks must read has to arrive as plain bytes (we never inflate it)."""
        encoding = (head.content_encoding or "identity").strip().lower()
        if encoding != "identity":
            raise UnsupportedMediaType(
                f"Content-Encoding {encoding[:32]} cannot be validated on this route",
                extensions={"check": "content_encoding", "expected": "identity"},
            )

    def _check_media_type(self, media: MediaType | None) -> None:
        assert self.content_types is not None
        if media is not None:
            family = media.essence.partition("/")[0] + "/*"
            if media.essence in self.content_types or family in self.content_types:
                return
        raise UnsupportedMediaType(
            f"Content-Type {media.essence[:64] if media else '(none)'} is not accepted",
            extensions={"check": "content_types", "expected": list(self.content_types)},
        )

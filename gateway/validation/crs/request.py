"""The request as rules see it: RequestView (from the middleware) -> ModSecurity collections."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Final

from gateway.validation.crs.transforms import url_decode

Pairs = list[tuple[str, str]]

MAX_JSON_DEPTH: Final = 64


@dataclass(frozen=True, slots=True)
class RequestView:
    """What the middleware knows about a request; strings as aiohttp gives them, body as bytes."""

    method: str
    uri: str
    """The request target exactly as received: path and query, still percent-encoded."""
    protocol: str = "HTTP/1.1"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    remote_addr: str = ""


def as_bytes_text(value: str) -> str:
    """aiohttp's str (UTF-8, surrogateescape) -> one character per byte, as ModSecurity sees it."""
    if value.isascii():
        return value
    try:
        return value.encode("utf-8", "surrogateescape").decode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("latin-1")


def parse_urlencoded(text: str) -> Pairs:
    pairs: Pairs = []
    for piece in text.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        pairs.append((url_decode(name), url_decode(value)))
    return pairs


def _json_scalar(value: object) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return as_bytes_text(value)
    return str(value)


def flatten_json(document: object, prefix: str = "json") -> Pairs:
    """{"a": {"b": 1}, "c": [x, y]} -> json.a.b=1, json.c.0=x, json.c.1=y (ModSecurity naming)."""
    pairs: Pairs = []
    stack: list[tuple[str, object, int]] = [(prefix, document, 0)]
    while stack:
        name, value, depth = stack.pop()
        if isinstance(value, dict) and depth < MAX_JSON_DEPTH:
            items = [(f"{name}.{as_bytes_text(str(k))}", v) for k, v in value.items()]
        elif isinstance(value, list) and depth < MAX_JSON_DEPTH:
            items = [(f"{name}.{i}", v) for i, v in enumerate(value)]
        else:
            pairs.append((name, _json_scalar(value)))
            continue
        stack.extend((n, v, depth + 1) for n, v in reversed(items))
    return pairs


_DISPOSITION: Final = re.compile(r'\b(name|filename)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))', re.I)


@dataclass(slots=True)
class Multipart:
    args: Pairs = field(default_factory=list)
    files: Pairs = field(default_factory=list)
    """(field name, file name) per uploaded file."""
    sizes: Pairs = field(default_factory=list)
    part_headers: Pairs = field(default_factory=list)
    error: bool = False


def parse_multipart(body: bytes, content_type: str) -> Multipart:
    result = Multipart()
    m = re.search(r'boundary\s*=\s*"?([^";,]+)"?', content_type, re.I)
    if not m:
        result.error = True
        return result
    delimiter = b"--" + m.group(1).strip().encode("latin-1", "replace")
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, separator, content = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        if not separator:
            result.error = True
            continue
        if content.endswith(b"\r\n"):
            content = content[:-2]
        headers = head.decode("latin-1").split("\r\n")
        name, filename = "", None
        for header in headers:
            if header.lower().startswith("content-disposition:"):
                for key, quoted, bare in _DISPOSITION.findall(header):
                    value = quoted if quoted or not bare else bare
                    if key.lower() == "name":
                        name = value
                    else:
                        filename = value
        result.part_headers.extend((name, header) for header in headers if header)
        if filename is not None:
            result.files.append((name, filename))
            result.sizes.append((name, str(len(content))))
        else:
            result.args.append((name, content.decode("latin-1")))
    return result


@dataclass(slots=True)
class RequestData:
    """The request's collections, built once per evaluation; every string is byte-per-character."""

    method: str
    uri: str
    uri_raw: str
    filename: str
    basename: str
    query: str
    protocol: str
    request_line: str
    remote_addr: str
    headers: Pairs
    header_index: dict[str, list[str]]
    cookies: Pairs
    args_get: Pairs
    args_post: Pairs
    files: Pairs
    file_sizes: Pairs
    part_headers: Pairs
    body: str
    body_processor: str
    body_error: bool

    @classmethod
    def from_view(cls, view: RequestView) -> RequestData:
        uri_raw = as_bytes_text(view.uri)
        uri = uri_raw
        if "://" in uri.split("?", 1)[0]:
            after_scheme = uri.split("://", 1)[1]
            slash = after_scheme.find("/")
            uri = after_scheme[slash:] if slash >= 0 else "/"
        path, _, query = uri.partition("?")
        path = path.split("#", 1)[0]
        headers = [(as_bytes_text(k), as_bytes_text(v)) for k, v in view.headers]
        index: dict[str, list[str]] = {}
        for k, v in headers:
            index.setdefault(k.lower(), []).append(v)
        cookies: Pairs = []
        for cookie_header in index.get("cookie", ()):
            for piece in cookie_header.split(";"):
                piece = piece.strip()
                if piece:
                    name, _, value = piece.partition("=")
                    cookies.append((name.strip(), value.strip()))
        content_type = (index.get("content-type") or [""])[0]
        body_text = view.body.decode("latin-1")
        processor, error = "", False
        args_post: Pairs = []
        multipart = Multipart()
        lowered = content_type.lower()
        if "json" in lowered:
            processor = "JSON"
            if view.body.strip():
                try:
                    args_post = flatten_json(json.loads(view.body))
                except (ValueError, RecursionError):
                    error = True
        elif lowered.startswith("application/x-www-form-urlencoded"):
            processor = "URLENCODED"
            args_post = parse_urlencoded(body_text)
        elif lowered.startswith("multipart/form-data"):
            processor = "MULTIPART"
            multipart = parse_multipart(view.body, content_type)
            args_post, error = multipart.args, multipart.error
        elif "xml" in lowered:
            processor = "XML"
        method = as_bytes_text(view.method)
        protocol = as_bytes_text(view.protocol)
        # RequestData, not cls: mypyc calls a named native class's constructor directly, and
        # `cls(...)` with keywords through the generic call protocol.
        return RequestData(
            method=method,
            uri=uri,
            uri_raw=uri_raw,
            filename=path,
            basename=path.rsplit("/", 1)[-1],
            query=query,
            protocol=protocol,
            request_line=f"{method} {uri_raw} {protocol}",
            remote_addr=view.remote_addr,
            headers=headers,
            header_index=index,
            cookies=cookies,
            args_get=parse_urlencoded(query),
            args_post=args_post,
            files=multipart.files,
            file_sizes=multipart.sizes,
            part_headers=multipart.part_headers,
            body=body_text,
            body_processor=processor,
            body_error=error,
        )

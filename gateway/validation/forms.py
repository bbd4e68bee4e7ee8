"""Form bodies: urlencoded fields and multipart parts, parsed from the buffered body and bounded."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from gateway.errors import FormRejected, InvalidUtf8, caused_by
from gateway.policy.validation import Forms
from gateway.validation.paths import pointer

_PARAM = re.compile(r';\s*([A-Za-z0-9*_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')

DEFAULT_FORMS = Forms()


@dataclass(frozen=True, slots=True)
class Part:
    """One multipart part: its field name, whether it is a file, and where its content lies."""

    name: str
    is_file: bool
    start: int
    end: int


def _reject(check: str, detail: str, expected: str, field: str | None = None) -> FormRejected:
    extensions: dict[str, str] = {"check": check, "expected": expected}
    if field is not None:
        extensions["pointer"] = pointer((field,))
    return FormRejected(detail, extensions=extensions)


def _malformed(why: str) -> FormRejected:
    return _reject("multipart_syntax", f"malformed multipart body: {why}", "RFC 7578 multipart")


def _disposition(raw_headers: bytes) -> tuple[str, bool]:
    """(field name, is a file) from a part's Content-Disposition header."""
    for line in raw_headers.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep:
            raise _malformed("a part header has no colon")
        if name.strip().lower() != b"content-disposition":
            continue
        text = value.decode("latin-1")
        if text.strip().split(";", 1)[0].strip().lower() != "form-data":
            raise _malformed("a part is not form-data")
        params = {k.lower(): v for k, v in _PARAM.findall(text)}
        field = params.get("name")
        if field is None:
            raise _malformed("a part has no field name")
        if field.startswith('"'):
            field = field[1:-1].replace('\\"', '"')
        try:
            decoded = field.encode("latin-1").decode("utf-8")
        except UnicodeDecodeError:
            raise caused_by(
                InvalidUtf8(
                    "a multipart field name is not UTF-8",
                    extensions={"check": "utf8", "expected": "UTF-8 field names"},
                ),
                None,
            )
        return decoded, "filename" in params or "filename*" in params
    raise _malformed("a part has no Content-Disposition")


@dataclass(frozen=True, slots=True)
class FormChecker:
    """One route's form limits."""

    limits: Forms = DEFAULT_FORMS

    def _check_name(self, name: str) -> None:
        allowed = self.limits.fields
        if allowed is not None and name not in allowed:
            raise _reject(
                "form_fields",
                f"field {name[:64]!r} is not accepted",
                f"one of {', '.join(allowed)}",
                name,
            )

    def urlencoded(self, body: bytes) -> list[tuple[str, str]]:
        """The (name, value) pairs in order; a limit breach is a 400 naming the field."""
        try:
            text = body.decode("utf-8")
            pairs = parse_qsl(
                text,
                keep_blank_values=True,
                encoding="utf-8",
                errors="strict",
                max_num_fields=self.limits.max_fields,
            )
        except UnicodeError:
            raise caused_by(
                InvalidUtf8(
                    "the form body is not percent-encoded UTF-8",
                    extensions={"check": "utf8", "expected": "application/x-www-form-urlencoded"},
                ),
                None,
            )
        except ValueError:
            raise caused_by(
                _reject(
                    "max_fields",
                    "too many form fields",
                    f"at most {self.limits.max_fields} fields",
                ),
                None,
            )
        for name, value in pairs:
            self._check_name(name)
            if len(value) > self.limits.max_field_size:
                raise _reject(
                    "max_field_size",
                    f"field {name[:64]!r} has {len(value)} characters",
                    f"at most {self.limits.max_field_size}",
                    name,
                )
        return pairs

    def multipart(self, body: bytes, boundary: str | None) -> list[Part]:
        """The parts in order, each checked against the field, file and size limits."""
        if not boundary or len(boundary) > 70:
            raise _malformed("the Content-Type has no valid boundary")
        delimiter = b"--" + boundary.encode("latin-1", "replace")
        position = body.find(delimiter)
        if position < 0:
            raise _malformed("the boundary never appears")
        position += len(delimiter)
        parts: list[Part] = []
        files = 0
        while not body.startswith(b"--", position):
            if not body.startswith(b"\r\n", position):
                raise _malformed("a boundary is not followed by CRLF")
            position += 2
            if body.startswith(b"\r\n", position):
                raw_headers, start = b"", position + 2
            else:
                header_end = body.find(b"\r\n\r\n", position)
                if header_end < 0:
                    raise _malformed("a part's headers never end")
                raw_headers, start = body[position:header_end], header_end + 4
            end = body.find(b"\r\n" + delimiter, start)
            if end < 0:
                raise _malformed("the closing boundary is missing")
            name, is_file = _disposition(raw_headers)
            self._check_part(name, is_file, end - start, len(parts) + 1, files + is_file)
            files += is_file
            parts.append(Part(name, is_file, start, end))
            position = end + 2 + len(delimiter)
        return parts

    def _check_part(self, name: str, is_file: bool, size: int, count: int, files: int) -> None:
        limits = self.limits
        self._check_name(name)
        if count > limits.max_fields:
            raise _reject("max_fields", "too many form fields", f"at most {limits.max_fields}")
        if is_file and files > limits.max_files:
            raise _reject("max_files", "too many files", f"at most {limits.max_files} files")
        if is_file and size > limits.max_file_size:
            raise _reject(
                "max_file_size",
                f"file field {name[:64]!r} has {size} bytes",
                f"at most {limits.max_file_size} bytes",
                name,
            )
        if not is_file and size > limits.max_field_size:
            raise _reject(
                "max_field_size",
                f"field {name[:64]!r} has {size} bytes",
                f"at most {limits.max_field_size} bytes",
                name,
            )

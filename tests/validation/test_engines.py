"""The validation engines on their own, without HTTP: table-driven cases with ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.errors import Rejection
from gateway.policy.validation import Forms, JsonLimits, SanitizeHtml, Ssrf, Validation
from gateway.validation.forms import FormChecker
from gateway.validation.jsonlimits import JsonChecker
from gateway.validation.limits import HeadLimits, MediaType, RequestHead
from gateway.validation.paths import FieldPath, pointer
from gateway.validation.sanitize import Sanitizer
from gateway.validation.schema import CompiledSchema, SchemaError, load_schema
from gateway.validation.ssrf import SsrfGuard


def rejection_of(call: Any, *args: Any) -> Rejection | None:
    try:
        call(*args)
    except Rejection as exc:
        return exc
    return None


JSON_CASES = [
    pytest.param(b'{"a": [1, 2, {"b": "c"}]}', None, None, id="valid"),
    pytest.param(b"", "invalid_json", "json_syntax", id="empty"),
    pytest.param(b'{"a": NaN}', "invalid_json", "json_syntax", id="nan"),
    pytest.param(b'{"a": -Infinity}', "invalid_json", "json_syntax", id="infinity"),
    pytest.param(b'{"a": 1e400}', "invalid_json", "json_syntax", id="float-overflow"),
    pytest.param(b'{"a": ' + b"9" * 5000 + b"}", "invalid_json", "json_syntax", id="huge-int"),
    pytest.param(b"\xef\xbb\xbf{}", "invalid_json", "json_syntax", id="bom"),
    pytest.param(b'{"a": "\xc3\x28"}', "invalid_utf8", "utf8", id="bad-utf8"),
    pytest.param(b'{"a": "\\ud800"}', "invalid_utf8", "utf8", id="lone-surrogate"),
    pytest.param(b'{"\\udfff": 1}', "invalid_utf8", "utf8", id="lone-surrogate-key"),
    pytest.param(b'{"a": "\\ud83d\\ude00"}', None, None, id="paired-surrogates"),
    pytest.param(b'{"a": 1, "a": 2}', "duplicate_json_key", "duplicate_keys", id="dup-key"),
    pytest.param(b"[" * 5 + b"]" * 5, "json_too_complex", "max_depth", id="depth"),
    pytest.param(b'["[[[[", {"a": "]]]]"}, "[[[["]', None, None, id="brackets-in-strings"),
    pytest.param(b'{"a": 1, "b": 2, "c": 3, "d": 4}', "json_too_complex", "max_keys", id="keys"),
    pytest.param(b'{"a": [1, 2, 3, 4]}', "json_too_complex", "max_array", id="array"),
    pytest.param(b'{"a": "12345"}', "json_too_complex", "max_string", id="string"),
    pytest.param(b'{"free": "123456", "list": [1, 2, 3, 4, 5]}', None, None, id="exempt"),
]


@pytest.mark.parametrize(("body", "reason", "check"), JSON_CASES)
def test_json_checker(body: bytes, reason: str | None, check: str | None) -> None:
    """Each malformed or oversized JSON body is refused with its own reason and check."""
    checker = JsonChecker(
        JsonLimits(max_depth=4, max_keys=3, max_array=3, max_string=4),
        exempt_string=(FieldPath.compile("$.free"),),
        exempt_array=(FieldPath.compile("$.list"),),
    )
    error = rejection_of(checker.parse, body)
    if reason is None:
        assert error is None
    else:
        assert error is not None
        assert (error.reason, error.extensions["check"]) == (reason, check)


def test_duplicate_keys_last_wins_when_configured() -> None:
    """With duplicate_keys: last_wins the later value is kept, as most parsers do."""
    assert JsonChecker(JsonLimits(duplicate_keys="last_wins")).parse(b'{"a":1,"a":2}') == {"a": 2}


def test_json_limit_names_the_pointer() -> None:
    """A string over the limit deep inside the document is named by its JSON pointer."""
    error = rejection_of(JsonChecker(JsonLimits(max_string=3)).parse, b'{"x": [{"a/b": "long"}]}')
    assert error is not None and error.extensions["pointer"] == "/x/0/a~1b"


def head(**overrides: Any) -> RequestHead:
    fields: dict[str, Any] = {
        "method": "POST",
        "target": "/a?x=1",
        "query_string": "x=1",
        "header_count": 3,
        "header_bytes": 100,
        "media_type": MediaType.parse("application/json; charset=utf-8"),
        "content_length": 10,
        "has_body": True,
    }
    fields.update(overrides)
    return RequestHead(**fields)


HEAD_CASES = [
    pytest.param({}, None, id="ok"),
    pytest.param({"method": "DELETE"}, "methods", id="method"),
    pytest.param({"target": "/" + "a" * 100}, "max_url", id="url"),
    pytest.param({"header_count": 11}, "max_headers.count", id="header-count"),
    pytest.param({"header_bytes": 1025}, "max_headers.size", id="header-size"),
    pytest.param({"query_string": "a=1&b=2&c=3"}, "max_query_params", id="query"),
    pytest.param({"query_string": "a=1&&b=2&"}, None, id="empty-pairs-not-counted"),
    pytest.param({"media_type": MediaType.parse("text/plain")}, None, id="family-wildcard"),
    pytest.param({"media_type": MediaType.parse("text/html")}, None, id="family-wildcard-2"),
    pytest.param({"media_type": MediaType.parse("image/png")}, "content_types", id="media"),
    pytest.param({"media_type": None}, "content_types", id="no-media-type"),
    pytest.param({"media_type": None, "has_body": False}, None, id="no-body-no-type"),
    pytest.param({"content_length": 2049}, "max_body", id="declared-length"),
]


@pytest.mark.parametrize(("overrides", "check"), HEAD_CASES)
def test_head_limits(overrides: dict[str, Any], check: str | None) -> None:
    """Head checks refuse before any body byte is read, each naming its check."""
    limits = HeadLimits.build(
        Validation.model_validate(
            {
                "max_body": "2KiB",
                "max_url": 50,
                "max_headers": {"count": 10, "size": "1KiB"},
                "max_query_params": 2,
                "methods": ["get", "POST"],
                "content_types": ["application/json", "text/*"],
            }
        )
    )
    error = rejection_of(limits.check, head(**overrides))
    assert (error.extensions["check"] if error else None) == check


SSRF_CASES = [
    pytest.param("https://api.example.com/hook", True, id="public-name"),
    pytest.param("http://93.184.216.34/", True, id="public-ip"),
    pytest.param("http://127.0.0.1/", False, id="loopback"),
    pytest.param("http://127.1/", False, id="loopback-short"),
    pytest.param("http://2130706433/", False, id="loopback-decimal"),
    pytest.param("http://0x7f000001/", False, id="loopback-hex"),
    pytest.param("http://0177.0.0.1/", False, id="loopback-octal"),
    pytest.param("http://[::1]:8080/", False, id="ipv6-loopback"),
    pytest.param("http://[::ffff:127.0.0.1]/", False, id="ipv4-mapped"),
    pytest.param("http://169.254.169.254/latest/meta-data", False, id="aws-metadata"),
    pytest.param("http://[fd00:ec2::254]/", False, id="aws-metadata-v6"),
    pytest.param("http://100.100.100.200/", False, id="alibaba-metadata"),
    pytest.param("http://metadata.google.internal/", False, id="gcp-metadata"),
    pytest.param("http://10.1.2.3/", False, id="private-10"),
    pytest.param("http://192.168.0.1/", False, id="private-192"),
    pytest.param("http://[fe80::1%25eth0]/", False, id="link-local-v6"),
    pytest.param("http://0.0.0.0/", False, id="unspecified"),
    pytest.param("http://localhost:3000/", False, id="localhost"),
    pytest.param("http://app.localhost/", False, id="dot-localhost"),
    pytest.param("http://user@10.0.0.1@evil.com/", True, id="userinfo-trick-host-is-last"),
    pytest.param("http://127.0.0.1\\@evil.com/", False, id="backslash"),
    pytest.param("file:///etc/passwd", False, id="file-scheme"),
    pytest.param("gopher://example.com/", False, id="gopher"),
    pytest.param("http:///nohost", False, id="no-host"),
    pytest.param("http://[::1/", False, id="unparsable"),
    pytest.param("http://intranet.corp/", True, id="allowed-host"),
]


@pytest.mark.parametrize(("url", "safe"), SSRF_CASES)
def test_ssrf_guard(url: str, safe: bool) -> None:
    """URL fields pointing at loopback, private, link-local or metadata targets are refused."""
    guard = SsrfGuard.build(Ssrf(fields=("$.url",), allow_hosts=("intranet.corp",)), ())
    error = rejection_of(guard.check_document, {"url": url})
    assert (error is None) == safe
    if error is not None:
        assert (error.reason, error.extensions["pointer"]) == ("unsafe_url", "/url")


PATH_CASES = [
    pytest.param("$.comment", {"comment": "x"}, ["/comment"], id="top"),
    pytest.param("$.profile.bio", {"profile": {"bio": "x"}}, ["/profile/bio"], id="nested"),
    pytest.param("$.profile.bio", {"profile": "bio"}, [], id="not-an-object"),
    pytest.param(
        "$.items[*].note",
        {"items": [{"note": 1}, {}, {"note": 2}]},
        ["/items/0/note", "/items/2/note"],
        id="wildcard",
    ),
    pytest.param("$.items[1]", {"items": ["a", "b"]}, ["/items/1"], id="index"),
    pytest.param("$.items[5]", {"items": ["a"]}, [], id="index-out-of-range"),
    pytest.param("$.a", ["a"], [], id="root-array"),
]


@pytest.mark.parametrize(("path", "document", "found"), PATH_CASES)
def test_field_paths(path: str, document: Any, found: list[str]) -> None:
    """A policy field path lands on every existing value it names, and nowhere else."""
    compiled = FieldPath.compile(path)
    locations = [location for location, _, _ in compiled.find(document)]
    assert [pointer(location) for location in locations] == found
    assert all(compiled.matches(location) for location in locations)


SANITIZE_CASES = [
    pytest.param("<b>bold</b>", "<b>bold</b>", id="allowed-tag"),
    pytest.param("<script>alert(1)</script>x", "x", id="script"),
    pytest.param("<img src=x onerror=alert(1)>", "", id="img-onerror"),
    pytest.param('<a href="javascript:alert(1)">x</a>', "<a>x</a>", id="js-url"),
    pytest.param(
        '<a href="https://e.com" target="_blank">x</a>',
        '<a href="https://e.com">x</a>',
        id="attr-allow-list",
    ),
    pytest.param("<!-- c -->t", "t", id="comment"),
    pytest.param("plain", "plain", id="plain"),
]


@pytest.mark.parametrize(("html", "clean"), SANITIZE_CASES)
def test_sanitizer(html: str, clean: str) -> None:
    """Declared fields keep only allow-listed tags and attributes; changes are counted."""
    sanitizer = Sanitizer.build(SanitizeHtml(fields=("$.c", "$.x[*]")), ())
    document = {"c": html, "x": [html], "other": html}
    changed = sanitizer.clean_document(document)
    assert document == {"c": clean, "x": [clean], "other": html}
    assert changed == (0 if clean == html else 2)


def test_sanitizer_exclusion_skips_field() -> None:
    """An exclusion for `sanitize` leaves that field as sent."""
    sanitizer = Sanitizer.build(
        SanitizeHtml(fields=("$.items[*].note",)), (FieldPath.compile("$.items[1]"),)
    )
    document = {"items": [{"note": "<script>a</script>"}, {"note": "<script>b</script>"}]}
    assert sanitizer.clean_document(document) == 1
    assert document["items"][1]["note"] == "<script>b</script>"


FORM_CASES = [
    pytest.param(b"a=1&b=2", None, id="ok"),
    pytest.param(b"a=1&b=2&c=3&d=4", "max_fields", id="too-many"),
    pytest.param(b"a=" + b"x" * 11, "max_field_size", id="too-long"),
    pytest.param(b"zz=1", "form_fields", id="unknown-field"),
    pytest.param(b"a=%ff", "utf8", id="bad-percent-utf8"),
    pytest.param(b"a=\xff", "utf8", id="bad-raw-utf8"),
]


@pytest.mark.parametrize(("body", "check"), FORM_CASES)
def test_urlencoded_limits(body: bytes, check: str | None) -> None:
    """Urlencoded bodies are bounded in field count, size and names."""
    checker = FormChecker(Forms(max_fields=3, max_field_size=10, fields=("a", "b", "c", "d")))
    error = rejection_of(checker.urlencoded, body)
    assert (error.extensions["check"] if error else None) == check


def part(name: str, content: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--B\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"


MULTIPART_CASES = [
    pytest.param(part("a", b"1") + part("f", b"xx", "f.txt") + b"--B--\r\n", None, id="ok"),
    pytest.param(part("f", b"x", "1") + part("g", b"y", "2") + b"--B--", "max_files", id="files"),
    pytest.param(part("f", b"x" * 21, "f.bin") + b"--B--", "max_file_size", id="file-size"),
    pytest.param(part("a", b"x" * 11) + b"--B--", "max_field_size", id="field-size"),
    pytest.param(part("a", b"1"), "multipart_syntax", id="no-closing"),
    pytest.param(b"no boundary here", "multipart_syntax", id="no-boundary"),
    pytest.param(b"--B\r\nX-Other: 1\r\n\r\nv\r\n--B--", "multipart_syntax", id="no-disposition"),
    pytest.param(b"--B\r\nbroken\r\n\r\nv\r\n--B--", "multipart_syntax", id="header-no-colon"),
    pytest.param(b"--B\r\n\r\nv\r\n--B--", "multipart_syntax", id="no-headers"),
    pytest.param(b"--Bjunk", "multipart_syntax", id="junk-after-boundary"),
]


@pytest.mark.parametrize(("body", "check"), MULTIPART_CASES)
def test_multipart_limits(body: bytes, check: str | None) -> None:
    """Multipart bodies are parsed strictly and bounded in files, file and field sizes."""
    checker = FormChecker(Forms(max_files=1, max_file_size=20, max_field_size=10))
    error = rejection_of(checker.multipart, body, "B")
    assert (error.extensions["check"] if error else None) == check


ORDER = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}},
        "$defs": {"type": "string"},
    },
    "$defs": {"name": {"type": "string"}},
}

SCHEMA_CASES = [
    pytest.param({"id": 1, "tags": ["a"]}, None, None, id="valid"),
    pytest.param({"tags": []}, "", "required", id="required"),
    pytest.param({"id": "1"}, "/id", "type", id="type"),
    pytest.param({"id": True}, "/id", "type", id="bool-is-not-integer"),
    pytest.param({"id": 1, "tags": ["ok", "long"]}, "/tags/1", "maxLength", id="nested"),
]


@pytest.mark.parametrize(("document", "where", "keyword"), SCHEMA_CASES)
def test_schema_names_pointer_and_keyword(
    document: Any, where: str | None, keyword: str | None
) -> None:
    """A schema failure names the JSON pointer and the failed keyword."""
    schema = CompiledSchema.compile(
        "body", {"$schema": "https://json-schema.org/draft/2020-12/schema", **ORDER}
    )
    error = rejection_of(schema.check, document)
    if where is None:
        assert error is None
    else:
        assert error is not None
        assert (error.extensions["pointer"], error.extensions["keyword"]) == (where, keyword)


BAD_SCHEMAS = [
    pytest.param({"prefixItems": [{"type": "string"}]}, "prefixItems", id="prefix-items"),
    pytest.param(
        {"properties": {"a": {"unevaluatedProperties": False}}},
        "unevaluatedProperties",
        id="nested-unsupported",
    ),
    pytest.param({"$ref": "https://example.com/s.json"}, r"remote \$ref", id="remote-ref"),
    pytest.param({"type": "nonsense"}, "invalid JSON Schema", id="bad-type"),
    pytest.param({"pattern": "("}, "invalid JSON Schema", id="bad-regex"),
]


@pytest.mark.parametrize(("schema", "message"), BAD_SCHEMAS)
def test_unsupported_schemas_are_refused_at_load(schema: dict[str, Any], message: str) -> None:
    """A keyword the compiled validator would ignore, or a remote $ref, is refused at load."""
    with pytest.raises(SchemaError, match=message):
        CompiledSchema.compile("body", schema)


def test_schema_file_is_read_beside_the_policy(tmp_path: Path) -> None:
    """A schema path is resolved from the policy's directory; YAML schemas work too."""
    (tmp_path / "s.yaml").write_text("type: object\nrequired: [a]\n")
    assert load_schema("s.yaml", tmp_path) == {"type": "object", "required": ["a"]}
    with pytest.raises(SchemaError, match="cannot read schema file"):
        load_schema("missing.json", tmp_path)

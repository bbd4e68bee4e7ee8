"""Property tests: no input makes a validator raise anything but a clean rejection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import Rejection
from gateway.policy.validation import SanitizeHtml, Validation
from gateway.validation.limits import MediaType
from gateway.validation.sanitize import INERT, Sanitizer
from gateway.validation.ssrf import unsafe_reason
from gateway.validation.validator import BodyOutcome, Validator

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,  # keep the working tree clean; failures print their example anyway
    suppress_health_check=[HealthCheck.too_slow],
)

VALIDATOR = Validator.build(
    "prop",
    Validation.model_validate(
        {
            "max_body": "64KiB",
            "json": {"max_depth": 16, "max_keys": 200, "max_array": 100, "max_string": 1000},
            "schema": {
                "body": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer", "minimum": 0},
                        "name": {"type": "string", "pattern": "^[a-z]+$", "format": "email"},
                        "items": {"type": "array", "items": {"type": ["object", "string"]}},
                    },
                },
            },
            "sanitize_html": {"fields": ["$.comment", "$.items[*].note", "$.a.b"]},
            "ssrf": {"fields": ["$.url", "$.items[*].url"]},
            "forms": {"max_fields": 50, "max_files": 3},
        }
    ),
    Path("."),
)

MEDIA = [
    MediaType.parse("application/json"),
    MediaType.parse("application/x-www-form-urlencoded"),
    MediaType.parse("multipart/form-data; boundary=XyZ"),
    MediaType.parse("multipart/form-data"),
]

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.sampled_from(["\ud800", "a\udfffb", "<script>x</script>", "http://127.0.0.1/"]),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(["comment", "note", "url", "items", "a", "b", "id", "name"])
            | st.text(),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)


def outcome_or_rejection(body: bytes, media: MediaType | None) -> BodyOutcome | Rejection:
    try:
        return VALIDATOR.check_body(body, media)
    except Rejection as exc:
        json.dumps(exc.extensions)  # every rejection renders as problem+json
        return exc


@SETTINGS
@given(body=st.binary(max_size=2000), index=st.integers(0, len(MEDIA) - 1))
def test_random_bytes_never_crash(body: bytes, index: int) -> None:
    """Arbitrary bytes under any body media type give a result or a clean rejection."""
    outcome_or_rejection(body, MEDIA[index])


@SETTINGS
@given(document=JSON_VALUES)
def test_random_json_never_crashes_and_forwarded_json_is_valid(document: Any) -> None:
    """Any JSON document is accepted or refused cleanly; what is forwarded is valid UTF-8 JSON."""
    result = outcome_or_rejection(json.dumps(document).encode(), MEDIA[0])
    if isinstance(result, BodyOutcome):
        json.loads(result.body.decode("utf-8"))


@SETTINGS
@given(html=st.text(max_size=300), note=st.text(max_size=100))
def test_sanitized_json_round_trips(html: str, note: str) -> None:
    """Sanitizing any text keeps the forwarded body valid JSON with the field cleaned."""
    document = {"comment": html, "items": [{"note": note}], "a": {"b": html}}
    result = outcome_or_rejection(json.dumps(document).encode(), MEDIA[0])
    if isinstance(result, BodyOutcome):
        forwarded = json.loads(result.body)
        assert "<script" not in forwarded["comment"].lower()


@SETTINGS
@given(
    fields=st.lists(
        st.tuples(st.sampled_from(["comment", "url", "x"]) | st.text(max_size=10), st.text()),
        max_size=8,
    )
)
def test_random_forms_never_crash(fields: list[tuple[str, str]]) -> None:
    """Any urlencoded form is accepted (and re-encoded when cleaned) or refused cleanly."""
    from urllib.parse import urlencode

    outcome_or_rejection(urlencode(fields).encode(), MEDIA[1])


@SETTINGS
@given(url=st.text(max_size=80) | st.from_regex(r"https?://[a-z0-9.:\[\]%@-]{0,30}/?"))
def test_ssrf_judges_any_text(url: str) -> None:
    """The SSRF guard returns a verdict for any text; it never raises."""
    reason = unsafe_reason(url, frozenset({"http", "https"}), frozenset())
    assert reason is None or isinstance(reason, str)


@SETTINGS
@given(header=st.text(max_size=80))
def test_any_content_type_parses(header: str) -> None:
    """Any Content-Type header parses to a media type (or none) without raising."""
    media = MediaType.parse(header)
    if media is not None:
        outcome_or_rejection(b"{}", media)


@SETTINGS
@given(
    parts=st.lists(
        st.tuples(
            st.sampled_from(["comment", "url", "file", "x"]),
            st.binary(max_size=60) | st.text(max_size=60).map(str.encode),
            st.booleans(),
        ),
        max_size=5,
    )
)
def test_random_multipart_never_crashes(parts: list[tuple[str, bytes, bool]]) -> None:
    """Well-framed multipart bodies with any contents are accepted or refused cleanly."""
    body = b""
    for name, content, is_file in parts:
        filename = b'; filename="f.bin"' if is_file else b""
        body += b'--XyZ\r\nContent-Disposition: form-data; name="' + name.encode() + b'"'
        body += filename + b"\r\n\r\n" + content + b"\r\n"
    body += b"--XyZ--\r\n"
    result = outcome_or_rejection(body, MEDIA[2])
    if isinstance(result, BodyOutcome):
        assert result.body.endswith(b"--XyZ--\r\n")


def test_inert_text_is_exactly_what_nh3_leaves_unchanged() -> None:
    """The sanitizer's fast path skips only characters nh3 never rewrites (each BMP one checked)."""
    cleaner = Sanitizer.build(SanitizeHtml(fields=("$.a",)), ()).cleaner
    for code in [*range(0x09, 0x7F), *range(0xA0, 0xD800), *range(0xE000, 0x10000)]:
        text = f"a{chr(code)}b"
        if INERT.fullmatch(text):
            assert cleaner.clean(text) == text, hex(code)


@SETTINGS
@given(text=st.text(max_size=60))
def test_fast_path_agrees_with_nh3(text: str) -> None:
    """For any text the sanitizer answers exactly what nh3 alone would."""
    sanitizer = Sanitizer.build(SanitizeHtml(fields=("$.a",)), ())
    assert sanitizer.clean(text) == sanitizer.cleaner.clean(text)

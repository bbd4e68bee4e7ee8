"""The scrubber: denylisted names and secret-looking values never survive."""

from __future__ import annotations

import pytest

from gateway.capture.scrubbing import FILTERED, SENTRY_DENYLIST, Scrubber

SCRUB = Scrubber()

CARD = "4111 1111 1111 1111"  # passes Luhn
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"card {CARD} on file", "4111"),
        ("card 4111-1111-1111-1111", "4111"),
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
        (f"token in text {JWT}", "eyJhbGciOiJIUzI1NiJ9"),
        ("stripe sk_live_51HqWERTYuiop1234", "sk_live_51HqWERTYuiop1234"),
        ("aws AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE"),
        ('{"password": "hunter2", "user": "bob"}', "hunter2"),
        ('{"user": "bob", "api_key":"k-123"}', "k-123"),
        ("password=hunter2&user=bob", "hunter2"),
        ("client_secret: s3cr3t", "s3cr3t"),
        ('{"X-CSRFToken": "abcdef"}', "abcdef"),
    ],
    ids=[
        "card-spaces",
        "card-dashes",
        "bearer",
        "jwt",
        "stripe-key",
        "aws-key",
        "json-password",
        "json-api-key",
        "form-password",
        "suffix-secret",
        "csrf-token",
    ],
)
def test_text_loses_the_secret(text: str, secret: str) -> None:
    """Free text (bodies, messages) keeps its shape but loses every secret in it."""
    scrubbed = SCRUB.text(text)
    assert secret not in scrubbed
    assert FILTERED in scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "order 1234567890123 shipped",  # 13 digits, fails Luhn
        "request 5f2b3c4d5e6f708192a3b4c5d6e7f801 failed",  # a 32-hex request id
        "the author wrote",
    ],
    ids=["not-luhn", "request-id", "prose"],
)
def test_harmless_text_is_left_alone(text: str) -> None:
    """Numbers that are not cards and ids that are not keys are kept for debugging."""
    assert SCRUB.text(text) == text


@pytest.mark.parametrize(
    "name",
    ["Authorization", "Cookie", "Set-Cookie", "X-Api-Key", "Proxy-Authorization", "X-Auth-Token"],
)
def test_sensitive_headers_are_replaced(name: str) -> None:
    """The values of credential-carrying headers are replaced whole."""
    assert SCRUB.header(name, "value-123") == FILTERED


def test_every_sentry_denylist_name_is_scrubbed_as_a_field() -> None:
    """Each name of the Sentry SDK's default denylist is scrubbed in a key=value body."""
    for name in SENTRY_DENYLIST:
        assert "leak" not in SCRUB.text(f"{name}=leak"), name


def test_copy_of_the_denylist_matches_the_sdk() -> None:
    """Our copy of the denylist holds every name the installed sentry-sdk 2.x scrubs."""
    # sentry-sdk 3 dropped its EventScrubber and this list with it: nothing left to compare.
    scrubber = pytest.importorskip("sentry_sdk.scrubber", reason="sentry-sdk 3 has no scrubber")
    assert set(scrubber.DEFAULT_DENYLIST) <= set(SENTRY_DENYLIST)


def test_query_values_of_denied_names_and_patterns_are_scrubbed() -> None:
    """A query string keeps its harmless parameters and loses its secrets."""
    scrubbed = SCRUB.query("page=2&token=abc123&q=Bearer%20xyz987&card=4111111111111111")
    assert scrubbed.startswith("page=2&token=[Filtered]")
    assert "abc123" not in scrubbed and "xyz987" not in scrubbed and "4111" not in scrubbed


def test_configured_names_and_patterns_are_added() -> None:
    """Names and regexes from the policy are scrubbed on top of the built-in lists."""
    scrub = Scrubber(headers=["x-tenant"], fields=["pin"], custom_patterns=[r"ACME-\d{6}"])
    assert scrub.header("X-Tenant", "t1") == FILTERED
    assert "9876" not in scrub.text("pin=9876")
    assert "ACME-123456" not in scrub.text("ref ACME-123456")

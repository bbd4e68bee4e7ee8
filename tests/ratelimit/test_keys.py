"""The one key composer: who is counted together, and what a missing part becomes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from gateway.ratelimit.identity import RequestFacts, jwt_claim
from gateway.ratelimit.keys import ANONYMOUS, compile_key


def facts(ip: str = "192.0.2.7", headers: dict[str, str] | None = None) -> RequestFacts:
    return RequestFacts("api", ip, "GET", "/echo", headers or {})


def bearer(claims: dict[str, object]) -> dict[str, str]:
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return {"Authorization": f"Bearer eyJhbGciOiJIUzI1NiJ9.{payload}.sig"}


@pytest.mark.parametrize(
    ("spec", "a", "b", "same"),
    [
        pytest.param(["client_ip"], facts("2001:db8::1"), facts("2001:db8::ffff:2"), True,
                     id="ipv6-same-64"),
        pytest.param(["client_ip"], facts("2001:db8::1"), facts("2001:db8:0:1::1"), False,
                     id="ipv6-other-64"),
        pytest.param(["client_ip"], facts("192.0.2.7"), facts("192.0.2.8"), False,
                     id="ipv4-per-address"),
        pytest.param(["client_ip/24"], facts("192.0.2.7"), facts("192.0.2.8"), True,
                     id="ipv4-grouped-24"),
        pytest.param(["client_ip/48"], facts("2001:db8:1:2::1"), facts("2001:db8:1:3::1"), True,
                     id="ipv6-grouped-48"),
        pytest.param(["header:X-API-Key"], facts(headers={"X-API-Key": "k1"}),
                     facts(headers={"X-API-Key": "k2"}), False, id="header-values-differ"),
        pytest.param(["header:X-API-Key"], facts("192.0.2.1"), facts("192.0.2.2"), True,
                     id="missing-header-shares-anonymous"),
        pytest.param(["jwt:sub"], facts(headers=bearer({"sub": "u1"})),
                     facts("192.0.2.99", bearer({"sub": "u1"})), True, id="jwt-same-sub"),
        pytest.param(["client_ip", "header:X-API-Key"], facts(headers={"X-API-Key": "k"}),
                     facts("192.0.2.9", {"X-API-Key": "k"}), False, id="composite"),
    ],
)  # fmt: skip
def test_who_is_counted_together(
    spec: list[str], a: RequestFacts, b: RequestFacts, same: bool
) -> None:
    """Two requests share a counter exactly when every key part agrees."""
    key = compile_key("r:abc", spec)
    assert (key(a) == key(b)) is same


def test_a_missing_part_is_an_explicit_anonymous_bucket() -> None:
    """A request without the header is counted under (anonymous), never skipped."""
    assert ANONYMOUS in compile_key("r:abc", ["header:X-API-Key"])(facts())


def test_long_or_odd_values_are_digested() -> None:
    """Huge or separator-laden values cannot blow up or confuse a key."""
    key = compile_key("r:abc", ["header:X-API-Key"])
    long_key = key(facts(headers={"X-API-Key": "x" * 5000}))
    assert len(long_key) < 80
    assert key(facts(headers={"X-API-Key": "a|b"})) != key(facts(headers={"X-API-Key": "a"}))
    assert "}" not in key(facts(headers={"X-API-Key": "}{"}))[:-1]


@pytest.mark.parametrize(
    ("headers", "claim"),
    [
        pytest.param(bearer({"sub": "u1"}), "u1", id="sub"),
        pytest.param(bearer({"sub": 42}), "42", id="number"),
        pytest.param({"Authorization": "Bearer not-a-jwt"}, None, id="garbled"),
        pytest.param({"Authorization": "Basic dTpw"}, None, id="not-bearer"),
        pytest.param(bearer({"other": 1}), None, id="absent"),
    ],
)
def test_jwt_claims_are_read_unverified(headers: dict[str, str], claim: str | None) -> None:
    """The claim is read from the token's payload; garbage yields no value, not an error."""
    assert jwt_claim(headers, "sub") == claim


def signed(claims: dict[str, object], secret: bytes, alg: str = "HS256") -> dict[str, str]:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return {"Authorization": f"Bearer {head}.{body}.{b64(mac)}"}


@pytest.mark.parametrize(
    ("headers", "claim"),
    [
        pytest.param(signed({"sub": "u1"}, b"s3cret"), "u1", id="good-signature"),
        pytest.param(signed({"sub": "u1"}, b"guess"), None, id="wrong-secret"),
        pytest.param(signed({"sub": "u1"}, b"s3cret", alg="none"), None, id="alg-none"),
        pytest.param(bearer({"sub": "u1"}), None, id="unsigned"),
    ],
)
def test_with_a_secret_only_verified_claims_count(
    headers: dict[str, str], claim: str | None
) -> None:
    """With jwt_hs256_secret set, a forged or unsigned token falls into the anonymous bucket."""
    assert jwt_claim(headers, "sub", b"s3cret") == claim

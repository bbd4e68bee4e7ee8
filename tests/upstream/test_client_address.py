"""headers.client_address: which address the gateway believes is the client's."""

from __future__ import annotations

import pytest

from gateway.upstream.headers import client_address, parse_networks

TRUSTED = parse_networks(["10.0.0.0/8", "127.0.0.1", "fd00::/8"])

CASES = [
    pytest.param("203.0.113.5", None, "203.0.113.5", id="ipv4-peer-no-xff"),
    pytest.param("2001:db8::5", None, "2001:db8::5", id="ipv6-peer-no-xff"),
    pytest.param("203.0.113.5", "198.51.100.1", "203.0.113.5", id="untrusted-peer-xff-ignored"),
    pytest.param("10.0.0.2", "198.51.100.1", "198.51.100.1", id="trusted-peer-one-hop"),
    pytest.param(
        "10.0.0.2", "198.51.100.1, 10.9.9.9, 10.0.0.3", "198.51.100.1", id="trusted-chain"
    ),
    pytest.param(
        "10.0.0.2",
        "1.1.1.1, 198.51.100.1, 10.0.0.3",
        "198.51.100.1",
        id="spoofed-left-hop-ignored",
    ),
    pytest.param("fd00::1", "2001:db8::7", "2001:db8::7", id="ipv6-trusted-peer"),
    pytest.param("fd00::1", "[2001:db8::7]:4711", "2001:db8::7", id="ipv6-hop-with-port"),
    pytest.param("10.0.0.2", "198.51.100.1:5555", "198.51.100.1", id="ipv4-hop-with-port"),
    pytest.param("10.0.0.2", "unknown, 10.0.0.3", "10.0.0.3", id="garbage-hop-stops-the-walk"),
    pytest.param("10.0.0.2", "not-an-ip", "10.0.0.2", id="only-garbage"),
    pytest.param("10.0.0.2", " , ,", "10.0.0.2", id="empty-hops"),
    pytest.param("10.0.0.2", "10.0.0.4, 10.0.0.3", "10.0.0.4", id="all-trusted-left-most"),
    pytest.param("127.0.0.1", "::ffff:198.51.100.1", "198.51.100.1", id="v4-mapped-hop"),
    pytest.param("::ffff:10.0.0.2", "198.51.100.1", "198.51.100.1", id="v4-mapped-trusted-peer"),
    pytest.param(None, "198.51.100.1", "unknown", id="no-peer-unix-socket"),
]


@pytest.mark.parametrize(("peer", "xff", "expected"), CASES)
def test_client_address(peer: str | None, xff: str | None, expected: str) -> None:
    """The client is the right-most X-Forwarded-For hop not added by a trusted proxy."""
    assert client_address(peer, xff, TRUSTED) == expected


def test_no_trusted_proxies_means_the_peer_is_the_client() -> None:
    """With an empty trusted list no X-Forwarded-For is ever believed."""
    assert client_address("10.0.0.2", "198.51.100.1", ()) == "10.0.0.2"

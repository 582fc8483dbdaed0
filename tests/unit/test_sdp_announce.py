"""sfu/sdp_munging.py ``announce``: the public address of a 1:1 NAT in the SDP the SFU sends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiortc.sdp import SessionDescription

from sfu import sdp_munging
from sfu.sdp_munging import announce, as_announced

SDP = "\r\n".join([
    "v=0",
    "o=- 4004887165 4004887165 IN IP4 0.0.0.0",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0",
    "m=audio 20000 UDP/TLS/RTP/SAVPF 96",
    "c=IN IP4 192.168.1.20",
    "a=mid:0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=rtcp-mux",
    "a=rtpmap:96 opus/48000/2",
    "a=candidate:1a 1 udp 2130706431 192.168.1.20 20000 typ host",
    "a=candidate:2b 1 udp 2130706431 2001:db8::20 20000 typ host",
    "a=candidate:3c 1 udp 1694498815 198.51.100.4 61000 typ srflx raddr 192.168.1.20 rport 20000",
    "a=candidate:4d 1 udp 16777215 203.0.113.50 3479 typ relay raddr 198.51.100.4 rport 61000",
    "a=end-of-candidates",
    "a=ice-ufrag:y7ui",
    "a=ice-pwd:UmfJJXnsKJwHAO00XSgjex",
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
    "a=setup:actpass",
]) + "\r\n"


@pytest.fixture
def reset_announced() -> Iterator[None]:
    yield
    sdp_munging.set_announced_address(None)


def candidates(sdp: str) -> list[tuple[str, int, str, str | None]]:
    media = SessionDescription.parse(sdp).media[0]
    return [(c.ip, c.port, c.type, c.relatedAddress) for c in media.ice_candidates]


def test_host_candidates_of_the_same_family_carry_the_public_address() -> None:
    out = announce(SDP, "203.0.113.7")
    assert candidates(out) == [
        ("203.0.113.7", 20000, "host", None),
        ("2001:db8::20", 20000, "host", None),  # another family: not this NAT's
        ("198.51.100.4", 61000, "srflx", "203.0.113.7"),  # the private address is no longer given away
        ("203.0.113.50", 3479, "relay", "198.51.100.4"),
    ]
    assert SessionDescription.parse(out).media[0].host == "203.0.113.7"  # the c= line
    assert "192.168.1.20" not in out
    assert "a=rtcp:9 IN IP4 0.0.0.0" in out  # the discard address stays


def test_an_ipv6_public_address_replaces_the_ipv6_host_candidate_only() -> None:
    out = announce(SDP, "2001:db8::7")
    assert [c[0] for c in candidates(out)][:2] == ["192.168.1.20", "2001:db8::7"]
    assert "c=IN IP4 192.168.1.20" in out


def test_everything_else_is_unchanged() -> None:
    out = announce(SDP, "203.0.113.7")
    assert out.replace("203.0.113.7", "192.168.1.20") == SDP


def test_the_configured_address_applies_until_it_is_unset(reset_announced: None) -> None:
    assert as_announced(SDP) == SDP
    sdp_munging.set_announced_address("203.0.113.7")
    assert candidates(as_announced(SDP))[0][0] == "203.0.113.7"
    sdp_munging.set_announced_address(None)
    assert as_announced(SDP) == SDP

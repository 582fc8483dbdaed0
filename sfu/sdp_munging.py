"""Fixes to the SDP answers aiortc writes, as text (aiortc has no hooks for these).

aiortc's answer to a browser carries no Opus ``a=fmtp`` (so the browser turns
in-band FEC off) and no ``ccm fir`` (the SFU does handle FIR). Both are added here,
and ``usedtx=1`` (``media.opus_dtx``): the answer's fmtp is the receiver's wish,
which the publishing browser applies to its Opus encoder, so a silent microphone
sends one comfort-noise frame every 400 ms instead of 50 packets a second.
"""

from __future__ import annotations

import ipaddress
import re

OPUS_FMTP = "minptime=10;useinbandfec=1"
OPUS_DTX = "usedtx=1"

_opus_dtx = True


def set_opus_dtx(enabled: bool) -> None:
    """At start-up: whether the answers to publishers ask for Opus DTX (``media.opus_dtx``)."""
    global _opus_dtx
    _opus_dtx = enabled


def improve_answer(sdp: str, bitrate_caps: dict[str, int] | None = None) -> str:
    out: list[str] = []
    lines = sdp.splitlines()
    section: list[str] = []

    def flush() -> None:
        out.extend(_fix_section(section))
        section.clear()

    for line in lines:
        if line.startswith("m="):
            flush()
        section.append(line)
    flush()
    return "\r\n".join(out) + "\r\n"


def _fix_section(section: list[str]) -> list[str]:
    if not section or not section[0].startswith("m="):
        return list(section)
    text = "\n".join(section)
    result = list(section)
    for match in re.finditer(r"^a=rtpmap:(\d+) (opus|VP8)/", text, re.MULTILINE | re.IGNORECASE):
        pt, codec = match.group(1), match.group(2).lower()
        if codec == "opus":
            fmtp = f"a=fmtp:{pt} "
            existing = [i for i, line in enumerate(result) if line.startswith(fmtp)]
            if existing:
                result[existing[0]] = fmtp + _opus_params(result[existing[0]][len(fmtp) :])
            else:
                result.append(fmtp + _opus_params(OPUS_FMTP))
        elif f"a=rtcp-fb:{pt} ccm fir" not in text:
            result.append(f"a=rtcp-fb:{pt} ccm fir")
    return result


def _opus_params(params: str) -> str:
    """Opus fmtp parameters with in-band FEC and, if enabled, DTX: an explicit choice is kept."""
    names = {p.split("=", 1)[0].strip().lower() for p in params.split(";")}
    if "useinbandfec" not in names:
        params += ";useinbandfec=1"
    if _opus_dtx and "usedtx" not in names:
        params += ";" + OPUS_DTX
    return params


UNSPECIFIED = {"0.0.0.0", "::"}


def drop_unusable_candidates(sdp: str) -> str:
    """Remove candidates on an unspecified address (Firefox offers ``0.0.0.0`` in some sandboxes).

    No packet can be sent there; ICE still finds the peer through its checks
    (a peer-reflexive candidate).
    """
    kept = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            fields = line.split()
            if len(fields) > 4 and fields[4] in UNSPECIFIED:
                continue
        kept.append(line)
    return "\r\n".join(kept) + "\r\n"


_announced_address: str | None = None


def set_announced_address(address: str | None) -> None:
    """At start-up: the public address (``ice.announced_address``) every SDP the SFU sends carries."""
    global _announced_address
    _announced_address = address


def as_announced(sdp: str) -> str:
    """An SDP the SFU sends, with the announced address if one is set (else unchanged)."""
    return sdp if _announced_address is None else announce(sdp, _announced_address)


def announce(sdp: str, address: str) -> str:
    """Put ``address`` in place of the bound address of every host candidate of its IP family.

    For a 1:1 NAT that forwards ``address`` to the bound one, port for port. The ``c=``
    lines and the related addresses (``raddr``) naming a replaced address follow.
    """
    version = _ip_version(address)
    replaced: set[str] = set()
    lines = sdp.splitlines()
    for i, line in enumerate(lines):
        fields = line.split(" ")
        host_candidate = line.startswith("a=candidate:") and len(fields) >= 8 and fields[6:8] == ["typ", "host"]
        if host_candidate and _ip_version(fields[4]) == version:
            replaced.add(fields[4])
            fields[4] = address
            lines[i] = " ".join(fields)
    for i, line in enumerate(lines):
        fields = line.split(" ")
        if line.startswith("c=IN ") and len(fields) == 3 and fields[2] in replaced:
            lines[i] = f"{fields[0]} {fields[1]} {address}"
        elif line.startswith("a=candidate:") and "raddr" in fields[8:]:
            at = fields.index("raddr", 8) + 1
            if at < len(fields) and fields[at] in replaced:
                fields[at] = address
                lines[i] = " ".join(fields)
    return "\r\n".join(lines) + "\r\n"


def _ip_version(address: str) -> int | None:
    try:
        return ipaddress.ip_address(address).version
    except ValueError:  # an mDNS name, a hostname
        return None

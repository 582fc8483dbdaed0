"""Answers to the server's re-offers, written as text: what keeps synthetic members cheap.

A member's receiving connection is a sink: its packets are counted at the socket and never
reach aiortc's receivers (bench/synthetic_rx.py). After the first offer, which aiortc answers
(ICE, DTLS and the first m-lines), every re-offer only adds or re-points m-lines, and aiortc
would spend about 100 ms of the load generator's CPU answering one at 45 members (90 m-lines):
at every join, for every member. :func:`text_answer` writes the same answer from the offer
and the first answer instead: per m-line, the offered codecs and header extensions accepted,
the direction mirrored, this connection's ICE credentials, fingerprints and DTLS role. The
server still parses and applies it with aiortc, as it would a browser's.
"""

from __future__ import annotations

import secrets

TRANSPORT_PREFIXES = ("a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:", "a=setup:")
CODEC_PREFIXES = ("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:", "a=extmap:")
MIRROR = {"sendonly": "recvonly", "recvonly": "sendonly", "sendrecv": "sendrecv", "inactive": "inactive"}


def sections(sdp: str) -> tuple[list[str], list[list[str]]]:
    """The session-level lines and each m-section's lines."""
    head: list[str] = []
    media: list[list[str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            media.append([line])
        elif media:
            media[-1].append(line)
        elif line:
            head.append(line)
    return head, media


def transport_lines(answer: str) -> list[str] | None:
    """ICE credentials, fingerprints and DTLS role of a first answer (from its first m-section)."""
    _, media = sections(answer)
    if not media:
        return None
    lines = [line for line in media[0] if line.startswith(TRANSPORT_PREFIXES)]
    return lines if any(line.startswith("a=ice-ufrag:") for line in lines) else None


def text_answer(offer: str, first_answer: str, stream_id: str, version: int) -> str | None:
    """The answer of a receive-only member to ``offer`` (``version``: this answer's o= session version);
    None if the first answer lacks what it needs."""
    transport = transport_lines(first_answer)
    head, _ = sections(first_answer)
    _, offered = sections(offer)
    if transport is None or not head:
        return None
    mids: list[str] = []
    out_media: list[str] = []
    for section in offered:
        kind, port, proto, *pts = section[0][2:].split(" ")
        mid = next((line[6:] for line in section if line.startswith("a=mid:")), "")
        direction = next((line[2:] for line in section if line[2:] in MIRROR), "sendrecv")
        if port == "0":  # a rejected or recycled m-line stays rejected
            out_media += [f"m={kind} 0 {proto} {' '.join(pts)}", "c=IN IP4 0.0.0.0", f"a=mid:{mid}"]
            continue
        mids.append(mid)
        out_media += [
            f"m={kind} 9 {proto} {' '.join(pts)}",
            "c=IN IP4 0.0.0.0",
            f"a={MIRROR[direction]}",
            *[line for line in section if line.startswith("a=extmap:")],
            f"a=mid:{mid}",
            f"a=msid:{stream_id} {secrets.token_hex(8)}",
            "a=rtcp:9 IN IP4 0.0.0.0",
            "a=rtcp-mux",
            *[line for line in section if line.startswith(CODEC_PREFIXES[:3])],
            "a=end-of-candidates",
            *transport,
        ]
    session = [line for line in head if not line.startswith("a=group:BUNDLE")]
    session = [_with_version(line, version) if line.startswith("o=") else line for line in session]
    at = next((i for i, line in enumerate(session) if line.startswith("a=")), len(session))
    session.insert(at, "a=group:BUNDLE " + " ".join(mids))
    return "\r\n".join(session + out_media) + "\r\n"


def _with_version(origin: str, version: int) -> str:
    fields = origin.split(" ")
    if len(fields) >= 3:
        fields[2] = str(int(fields[2]) + version) if fields[2].isdigit() else fields[2]
    return " ".join(fields)

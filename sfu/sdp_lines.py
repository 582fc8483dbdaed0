"""What an SDP says about each m-line, read with aiortc's SDP parser (its public classes).

Kept apart from :mod:`sfu.aiortc_glue` (which re-exports it), which holds the hooks
into aiortc's private internals.
"""

from __future__ import annotations

from typing import Any


class MediaLine:
    """What an SDP m-line says about the RTP it carries (read with aiortc's parser)."""

    def __init__(self, media: Any) -> None:
        self.mid: str | None = media.rtp.muxId
        self.kind: str = media.kind
        self.direction: str | None = media.direction
        self.codecs: list[tuple[int, str, int, dict[str, Any]]] = [
            (c.payloadType, c.mimeType.split("/", 1)[1].lower(), c.clockRate, dict(c.parameters))
            for c in media.rtp.codecs
        ]
        self.extensions: dict[str, int] = {e.uri: e.id for e in media.rtp.headerExtensions}
        ssrcs = [s.ssrc for s in media.ssrc]
        self.ssrc: int | None = None
        self.rtx_ssrc: int | None = None
        for group in media.ssrc_group:
            if group.semantic == "FID" and len(group.items) == 2:
                self.ssrc, self.rtx_ssrc = int(group.items[0]), int(group.items[1])
                break
        else:
            if ssrcs:
                self.ssrc = ssrcs[0]
        self.candidate_hosts = [c.ip for c in media.ice_candidates]
        self.secured = bool(
            media.dtls is not None
            and media.dtls.fingerprints
            and media.ice is not None
            and media.ice.usernameFragment
            and media.ice.password
        )


def describe_sdp(sdp: str) -> list[MediaLine]:
    """Parse an SDP; ValueError if it is not one aiortc can read."""
    from aiortc.sdp import SessionDescription

    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises many kinds on garbage
        raise ValueError(f"unreadable SDP: {exc}") from exc
    if not description.media:
        raise ValueError("SDP has no media section")
    lines = [MediaLine(m) for m in description.media]
    mids = {m.rtp.muxId for m in description.media}
    for group in description.group:
        if group.semantic == "BUNDLE" and any(str(item) not in mids for item in group.items):
            # aiortc would leave the bundled m-lines without a transport, and fail later
            raise ValueError("BUNDLE group names an m-line the SDP does not have")
    for line in lines:
        if not line.secured:
            raise ValueError(f"m-line {line.mid}: no DTLS fingerprint or ICE credentials")
        if any(not 0 <= pt <= 127 for pt, _, _, _ in line.codecs):
            raise ValueError(f"m-line {line.mid}: payload type out of range")
    return lines

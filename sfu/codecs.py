"""Which codec each m-line carries: the publisher's choice, and the payload types a subscriber took.

The SFU never transcodes. A publisher's video m-line is answered with VP8 when it is
offered (every browser does), else with H.264 in packetization mode 1 (OBS and other
WHIP encoders): constrained baseline first, then baseline, then any other profile.
A subscriber's m-line may negotiate several codecs (Chromium: VP8 and H.264; Firefox
without OpenH264: VP8 only); each gets its own payload type, and a producer whose
codec the subscriber did not take is not forwarded to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .producer import ProducerSpec

# (payload type, lower-case codec name, clock rate, fmtp parameters), as sfu.aiortc_glue.MediaLine lists them
OfferedCodec = tuple[int, str, int, dict[str, Any]]

WANTED = {"audio": "Opus", "video": "VP8 or H.264 (packetization-mode=1)"}


def _profile(codec: OfferedCodec) -> str:
    return str(codec[3].get("profile-level-id", "42e01f")).lower()  # absent: aiortc and browsers read 42e01f


def _h264_rank(codec: OfferedCodec) -> int:
    """0: constrained baseline (profile_idc 66, constraint_set1), 1: baseline, 2: any other profile."""
    profile = _profile(codec)
    if len(profile) != 6 or not profile.startswith("42"):
        return 2
    try:
        return 0 if int(profile[2:4], 16) & 0x40 else 1
    except ValueError:
        return 2


def is_baseline(codec: OfferedCodec) -> bool:
    """H.264 in (constrained) baseline profile: the only H.264 aiortc (hence the SFU) answers."""
    return _h264_rank(codec) < 2


def describe(codec: OfferedCodec) -> str:
    if codec[1] == "h264":
        return f"H.264 profile-level-id={_profile(codec)}"
    return codec[1]


def is_h264_mode_1(name: str, parameters: dict[str, Any]) -> bool:
    return name == "h264" and str(parameters.get("packetization-mode", "0")) == "1"


def choose_publish_codec(kind: str, codecs: Iterable[OfferedCodec]) -> OfferedCodec | None:
    """The codec a publisher's m-line is answered with, or None when it offers none the SFU forwards."""
    offered = list(codecs)
    if kind == "audio":
        return next((c for c in offered if c[1] == "opus"), None)
    if kind != "video":
        return None
    vp8 = next((c for c in offered if c[1] == "vp8"), None)
    if vp8 is not None:
        return vp8
    h264 = [c for c in offered if is_h264_mode_1(c[1], c[3])]
    return min(h264, key=_h264_rank, default=None)  # min keeps the offer's order among equals


def keeping(payload_type: int | None) -> Callable[[Any], bool]:
    """Which of aiortc's negotiated codecs an answer keeps: this payload type (and RTX, kept by
    :func:`sfu.aiortc_glue.keep_codecs` only for a kept codec); nothing if None."""
    return lambda codec: codec.payloadType == payload_type or str(codec.mimeType).lower() == "video/rtx"


def rtx_for(codecs: Iterable[OfferedCodec], payload_type: int) -> int | None:
    return next((c[0] for c in codecs if c[1] == "rtx" and c[3].get("apt") == payload_type), None)


def spec_from_line(line: Any, source: str, stream_id: str) -> ProducerSpec:
    """A producer's spec from a publisher's m-line (a MediaLine already accepted by the transport)."""
    chosen = choose_publish_codec(line.kind, line.codecs)
    if chosen is None:
        raise ValueError(f"m-line {line.mid}: no codec to forward")
    pt, name, clock, _ = chosen
    return ProducerSpec(
        mid=line.mid or "",
        kind=line.kind,
        source=source,
        payload_type=pt,
        clock_rate=clock,
        codec=name,
        ssrc=line.ssrc,
        rtx_ssrc=line.rtx_ssrc,
        rtx_payload_type=rtx_for(line.codecs, pt),
        stream_id=stream_id,
    )


def negotiated_payload_types(codecs: Iterable[Any]) -> dict[str, tuple[int, int]]:
    """codec name -> (payload type, clock rate), the first of each in the order negotiated.

    ``codecs`` are aiortc's RTCRtpCodecParameters (``mimeType``, ``payloadType``,
    ``clockRate``, ``parameters``); RTX and H.264 other than packetization mode 1 are left out.
    """
    found: dict[str, tuple[int, int]] = {}
    for codec in codecs:
        name = str(codec.mimeType).split("/", 1)[-1].lower()
        if name == "rtx" or name in found:
            continue
        if name == "h264" and not is_h264_mode_1(name, dict(codec.parameters)):
            continue
        found[name] = (int(codec.payloadType), int(codec.clockRate))
    return found

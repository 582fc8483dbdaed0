"""H.264 over RTP (RFC 6184): just enough to know where a keyframe starts.

The SFU forwards H.264 untouched (the programme, a WHIP encoder such as OBS); a
consumer that joins or resumes must start on a keyframe. With packetization mode 1
an encoder sends SPS and PPS before each IDR picture, alone, in a STAP-A, or the IDR
slice itself first (single NAL unit or the first FU-A fragment). The consumer reads
the same descriptor type as for VP8; H.264 has no PictureID or TL0PICIDX to rewrite.
"""

from __future__ import annotations

from .vp8 import Vp8Descriptor

NAL_IDR = 5
NAL_SPS = 7
STAP_A = 24
FU_A = 28


def _descriptor(keyframe: bool) -> Vp8Descriptor:
    return Vp8Descriptor(
        start_of_partition=True, partition_id=0, picture_id=None, picture_id_bits=0, picture_id_at=0,
        tl0picidx=None, tl0picidx_at=0, size=0, keyframe=keyframe,
    )


KEYFRAME = _descriptor(True)
DELTA = _descriptor(False)


def starts_keyframe(payload: bytes | memoryview) -> bool:
    """True when this packet begins an IDR access unit (SPS, or the IDR slice's start)."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (NAL_SPS, NAL_IDR):
        return True
    if nal_type == STAP_A:
        return len(payload) > 3 and payload[3] & 0x1F in (NAL_SPS, NAL_IDR)
    if nal_type == FU_A:
        return len(payload) > 1 and bool(payload[1] & 0x80) and payload[1] & 0x1F == NAL_IDR
    return False


def describe(payload: bytes | memoryview) -> Vp8Descriptor:
    return KEYFRAME if starts_keyframe(payload) else DELTA

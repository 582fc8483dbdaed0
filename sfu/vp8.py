"""The VP8 RTP payload descriptor (RFC 7741 section 4.2), read and rewritten in place.

When the SFU drops frames on purpose (a paused camera, a consumer waiting for a
keyframe), the PictureID and TL0PICIDX it sends must stay continuous, or the
browser's decoder sees missing pictures and asks for keyframes forever. So each
consumer keeps an offset for both, applied here; everything after the
descriptor is forwarded untouched.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Vp8Descriptor:
    start_of_partition: bool
    partition_id: int
    picture_id: int | None  # 7 or 15 bits
    picture_id_bits: int  # 0, 7 or 15
    picture_id_at: int  # offset of the PictureID's first byte
    tl0picidx: int | None
    tl0picidx_at: int
    size: int  # descriptor length in bytes
    keyframe: bool  # start of a VP8 keyframe

    @property
    def starts_frame(self) -> bool:
        return self.start_of_partition and self.partition_id == 0


def parse_descriptor(payload: bytes | memoryview) -> Vp8Descriptor:
    """Parse the descriptor at the start of ``payload``; ValueError if truncated."""
    size = len(payload)
    if size < 1:
        raise ValueError("empty VP8 payload")
    first = payload[0]
    pos = 1
    picture_id: int | None = None
    picture_id_bits = 0
    picture_id_at = 0
    tl0: int | None = None
    tl0_at = 0
    if first & 0x80:
        if size < 2:
            raise ValueError("truncated VP8 descriptor")
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: PictureID present
            if pos >= size:
                raise ValueError("truncated VP8 PictureID")
            picture_id_at = pos
            if payload[pos] & 0x80:
                if pos + 1 >= size:
                    raise ValueError("truncated VP8 PictureID")
                picture_id = ((payload[pos] & 0x7F) << 8) | payload[pos + 1]
                picture_id_bits = 15
                pos += 2
            else:
                picture_id = payload[pos] & 0x7F
                picture_id_bits = 7
                pos += 1
        if ext & 0x40:  # L: TL0PICIDX present
            if pos >= size:
                raise ValueError("truncated VP8 TL0PICIDX")
            tl0 = payload[pos]
            tl0_at = pos
            pos += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX byte
            pos += 1
    if pos > size:
        raise ValueError("truncated VP8 descriptor")
    start = bool(first & 0x10)
    partition = first & 0x07
    keyframe = start and partition == 0 and pos < size and not (payload[pos] & 0x01)
    return Vp8Descriptor(
        start_of_partition=start,
        partition_id=partition,
        picture_id=picture_id,
        picture_id_bits=picture_id_bits,
        picture_id_at=picture_id_at,
        tl0picidx=tl0,
        tl0picidx_at=tl0_at,
        size=pos,
        keyframe=keyframe,
    )


def rewrite_descriptor(
    payload: bytes | memoryview, desc: Vp8Descriptor, picture_id_offset: int, tl0_offset: int
) -> bytes:
    """Return ``payload`` with PictureID and TL0PICIDX shifted back by the offsets.

    Chromium and aiortc send 15-bit ids; a 7-bit one is shifted modulo 128.
    """
    if (picture_id_offset == 0 or desc.picture_id is None) and (tl0_offset == 0 or desc.tl0picidx is None):
        return bytes(payload)
    out = bytearray(payload)
    patch_descriptor(out, 0, desc, picture_id_offset, tl0_offset)
    return bytes(out)


def patch_descriptor(
    buf: bytearray | memoryview, at: int, desc: Vp8Descriptor, picture_id_offset: int, tl0_offset: int
) -> None:
    """Shift PictureID and TL0PICIDX back by the offsets in place, in a payload copied to ``buf[at:]``."""
    if desc.picture_id is not None and picture_id_offset:
        if desc.picture_id_bits == 15:
            value = (desc.picture_id - picture_id_offset) & 0x7FFF
            buf[at + desc.picture_id_at] = 0x80 | (value >> 8)
            buf[at + desc.picture_id_at + 1] = value & 0xFF
        else:
            buf[at + desc.picture_id_at] = (desc.picture_id - picture_id_offset) & 0x7F
    if desc.tl0picidx is not None and tl0_offset:
        buf[at + desc.tl0picidx_at] = (desc.tl0picidx - tl0_offset) & 0xFF


def is_vp8_keyframe(payload: bytes | memoryview) -> bool:
    try:
        return parse_descriptor(payload).keyframe
    except ValueError:
        return False

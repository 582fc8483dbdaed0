"""RTP packet reading and per-consumer rewriting, on plain bytes.

Nothing here allocates objects per packet beyond the output ``bytes``: the SFU
reads the few fields it needs by offset and builds each consumer's packet from a
precomputed header template (see :class:`LegWriter`).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

RTP_HEADER = struct.Struct("!BBHII")
ONE_BYTE_PROFILE = 0xBEDE

# URIs of the header extensions the SFU reads or writes.
EXT_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
EXT_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
EXT_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"


@dataclass(slots=True)
class RtpView:
    """The fields of one RTP packet the SFU needs, read by offset."""

    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload_offset: int
    payload_end: int
    mid: bytes | None
    audio_level: int | None  # 0..127, -dBov; None when absent
    voice: bool


def read_packet(data: bytes, mid_id: int, audio_level_id: int) -> RtpView:
    """Parse the fixed header and the extensions ``mid_id`` and ``audio_level_id``.

    Raises ``ValueError`` on anything that is not a well-formed RTP packet.
    """
    size = len(data)
    if size < 12:
        raise ValueError("RTP packet too short")
    b0, b1, sequence, timestamp, ssrc = RTP_HEADER.unpack_from(data)
    if b0 >> 6 != 2:
        raise ValueError("not RTP version 2")
    offset = 12 + 4 * (b0 & 0x0F)
    mid: bytes | None = None
    audio_level: int | None = None
    voice = False
    if b0 & 0x10:
        if offset + 4 > size:
            raise ValueError("truncated RTP extension header")
        profile, words = struct.unpack_from("!HH", data, offset)
        start = offset + 4
        offset = start + 4 * words
        if offset > size:
            raise ValueError("truncated RTP extension block")
        if profile == ONE_BYTE_PROFILE:
            pos = start
            while pos < offset:
                head = data[pos]
                if head == 0:  # padding
                    pos += 1
                    continue
                ext_id = head >> 4
                length = (head & 0x0F) + 1
                if ext_id == 15:
                    break
                value_at = pos + 1
                if value_at + length > offset:
                    raise ValueError("truncated one-byte extension")
                if ext_id == mid_id:
                    mid = data[value_at : value_at + length]
                elif ext_id == audio_level_id:
                    level = data[value_at]
                    voice = bool(level & 0x80)
                    audio_level = level & 0x7F
                pos = value_at + length
        elif profile & 0xFFF0 == 0x1000:
            pos = start
            while pos + 1 < offset:
                ext_id = data[pos]
                if ext_id == 0:
                    pos += 1
                    continue
                length = data[pos + 1]
                value_at = pos + 2
                if value_at + length > offset:
                    raise ValueError("truncated two-byte extension")
                if ext_id == mid_id:
                    mid = data[value_at : value_at + length]
                elif ext_id == audio_level_id and length:
                    level = data[value_at]
                    voice = bool(level & 0x80)
                    audio_level = level & 0x7F
                pos = value_at + length
    end = size
    if b0 & 0x20:
        if size == 0 or data[-1] == 0 or data[-1] > size - offset:
            raise ValueError("bad RTP padding")
        end = size - data[-1]
    if offset > end:
        raise ValueError("RTP header longer than packet")
    return RtpView(
        marker=bool(b1 & 0x80),
        payload_type=b1 & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload_offset=offset,
        payload_end=end,
        mid=mid,
        audio_level=audio_level,
        voice=voice,
    )


def abs_send_time_now() -> bytes:
    """abs-send-time: 6.18 fixed-point seconds, 24 bits."""
    value = int(time.time() * (1 << 18)) & 0xFFFFFF
    return value.to_bytes(3, "big")


@dataclass(frozen=True, slots=True)
class ExtensionIds:
    """The header-extension ids one consumer leg negotiated (0 = not negotiated)."""

    mid: int = 0
    abs_send_time: int = 0
    audio_level: int = 0


class LegWriter:
    """Builds the RTP packets of one consumer leg.

    The extension block (MID, abs-send-time, audio level) is rebuilt for every
    leg with that leg's ids: copying the publisher's block would carry the
    publisher's MID and ids, and the browser would put the media in the wrong tile.
    """

    __slots__ = ("_ast_id", "_is_audio", "_level_id", "_mid_part", "payload_type", "ssrc")

    def __init__(self, ssrc: int, payload_type: int, mid: str, ids: ExtensionIds, is_audio: bool):
        self.ssrc = ssrc
        self.payload_type = payload_type
        mid_bytes = mid.encode("ascii")
        if not 1 <= len(mid_bytes) <= 16:
            raise ValueError("MID must be 1 to 16 bytes for a one-byte extension")
        self._mid_part = bytes([(ids.mid << 4) | (len(mid_bytes) - 1)]) + mid_bytes if ids.mid else b""
        self._ast_id = ids.abs_send_time
        self._level_id = ids.audio_level if is_audio else 0
        self._is_audio = is_audio

    def extension_block(self, audio_level: int | None, voice: bool) -> bytes:
        body = self._mid_part
        if self._ast_id:
            body += bytes([(self._ast_id << 4) | 2]) + abs_send_time_now()
        if self._level_id and audio_level is not None:
            body += bytes([self._level_id << 4, (0x80 if voice else 0) | audio_level])
        if not body:
            return b""
        pad = -len(body) % 4
        return struct.pack("!HH", ONE_BYTE_PROFILE, (len(body) + pad) // 4) + body + b"\x00" * pad

    def write(
        self,
        marker: bool,
        sequence: int,
        timestamp: int,
        audio_level: int | None,
        voice: bool,
        payload: bytes | memoryview,
    ) -> bytes:
        ext = self.extension_block(audio_level, voice)
        b0 = 0x90 if ext else 0x80
        b1 = (0x80 if marker else 0) | self.payload_type
        return RTP_HEADER.pack(b0, b1, sequence, timestamp, self.ssrc) + ext + bytes(payload)


def unwrap_rtx(data: bytes, view: RtpView, media_ssrc: int, media_pt: int) -> bytes | None:
    """Turn an RTX packet (RFC 4588) back into the original packet, or None for padding."""
    start, end = view.payload_offset, view.payload_end
    if end - start < 2:
        return None  # padding-only probe
    original_seq = int.from_bytes(data[start : start + 2], "big")
    b0 = data[0] & ~0x20  # the original packet's padding is gone
    b1 = (data[1] & 0x80) | media_pt
    header = RTP_HEADER.pack(b0, b1, original_seq, view.timestamp, media_ssrc)
    return header + data[12:start] + data[start + 2 : end]


def seq_newer(a: int, b: int) -> bool:
    """True if 16-bit sequence number ``a`` comes after ``b`` (RFC 3550 wrap rules)."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000

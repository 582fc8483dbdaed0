"""RTP packet reading and per-consumer rewriting, on plain bytes.

The SFU reads the few fields it needs by offset and builds each consumer's packet
from a precomputed header template (see :class:`LegWriter`), straight into the
scratch buffer of the leg's sink when it has one (:class:`ScratchSink`).
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


class ScratchSink:
    """Where a consumer leg's packets go: ``sink(packet)`` sends one, True if it went out.

    A sink also takes a packet built in place in its scratch ``buffer`` (``capacity``
    bytes): ``send_built(length)`` sends ``buffer[:length]``, which saves building a
    ``bytes`` per leg. The buffer is only valid until the next send.
    """

    buffer: memoryview
    capacity = 0

    def __call__(self, packet: bytes) -> bool:
        raise NotImplementedError

    def send_built(self, length: int) -> bool:
        raise NotImplementedError


_B1_SEQ_TS = struct.Struct("!BHI")  # header bytes 1-7: marker and payload type, sequence number, timestamp


class LegWriter:
    """Builds the RTP packets of one consumer leg.

    The extension block (MID, abs-send-time, audio level) is rebuilt for every
    leg with that leg's ids: copying the publisher's block would carry the
    publisher's MID and ids, and the browser would put the media in the wrong tile.
    The whole header is prepared once as a template (with and without an audio
    level); per packet only the marker, sequence number, timestamp, abs-send-time
    and level are written into a copy of it.
    """

    __slots__ = ("_b1", "_layouts", "payload_type", "ssrc")

    def __init__(self, ssrc: int, payload_type: int, mid: str, ids: ExtensionIds, is_audio: bool):
        self.ssrc = ssrc
        self.payload_type = payload_type
        self._b1 = (payload_type, 0x80 | payload_type)  # indexed by the marker bit
        mid_bytes = mid.encode("ascii")
        if not 1 <= len(mid_bytes) <= 16:
            raise ValueError("MID must be 1 to 16 bytes for a one-byte extension")
        mid_part = bytes([(ids.mid << 4) | (len(mid_bytes) - 1)]) + mid_bytes if ids.mid else b""
        level_id = ids.audio_level if is_audio else 0
        # (header template, offset of the abs-send-time value, offset of the level byte; 0: absent),
        # indexed by "the packet has an audio level"
        without = self._layout(mid_part, ids.abs_send_time, 0)
        self._layouts = (without, self._layout(mid_part, ids.abs_send_time, level_id) if level_id else without)

    def _layout(self, mid_part: bytes, ast_id: int, level_id: int) -> tuple[bytes, int, int]:
        ext = mid_part
        ast_at = level_at = 0
        if ast_id:
            ast_at = 16 + len(ext) + 1
            ext += bytes([(ast_id << 4) | 2]) + b"\x00\x00\x00"
        if level_id:
            level_at = 16 + len(ext) + 1
            ext += bytes([level_id << 4, 0])
        if not ext:
            return RTP_HEADER.pack(0x80, self.payload_type, 0, 0, self.ssrc), 0, 0
        ext += b"\x00" * (-len(ext) % 4)
        header = RTP_HEADER.pack(0x90, self.payload_type, 0, 0, self.ssrc)
        return header + struct.pack("!HH", ONE_BYTE_PROFILE, len(ext) // 4) + ext, ast_at, level_at

    def write_into(
        self,
        buf: memoryview | bytearray,
        marker: bool,
        sequence: int,
        timestamp: int,
        audio_level: int | None,
        voice: bool,
        ast: bytes | None = None,
    ) -> int:
        """Write this leg's header at the start of ``buf``; returns its length (where the payload goes)."""
        template, ast_at, level_at = self._layouts[audio_level is not None]
        size = len(template)
        buf[0:size] = template
        _B1_SEQ_TS.pack_into(buf, 1, self._b1[marker], sequence, timestamp)
        if ast_at:
            buf[ast_at : ast_at + 3] = ast if ast is not None else abs_send_time_now()
        if level_at:
            buf[level_at] = (0x80 if voice else 0) | (audio_level or 0)
        return size

    def write(
        self,
        marker: bool,
        sequence: int,
        timestamp: int,
        audio_level: int | None,
        voice: bool,
        payload: bytes | memoryview,
        ast: bytes | None = None,
    ) -> bytes:
        """One packet of this leg; ``ast`` is the abs-send-time shared by all legs of a packet."""
        out = bytearray(len(self._layouts[audio_level is not None][0]) + len(payload))
        size = self.write_into(out, marker, sequence, timestamp, audio_level, voice, ast)
        out[size:] = payload
        return bytes(out)


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

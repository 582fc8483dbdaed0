"""The programme's RTP output: H.264 (RFC 6184, packetization mode 1) and Opus (RFC 7587).

H.264 access units come from the encoder in annex-B form (start codes, SPS and
PPS before each IDR picture). Each NAL unit goes alone in a packet when it fits,
else in FU-A fragments; the last packet of the picture carries the marker bit.
"""

from __future__ import annotations

import secrets
import struct

MTU = 1200
RTP_HEADER = struct.Struct("!BBHII")
NAL_FU_A = 28
FU_START = 0x80
FU_END = 0x40
RTCP_SR = 200
NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (POSIX)


def split_nals(annexb: bytes) -> list[bytes]:
    """The NAL units of an annex-B byte stream (3- or 4-byte start codes), without their start codes."""
    nals: list[bytes] = []
    start = annexb.find(b"\x00\x00\x01")
    while start >= 0:
        begin = start + 3
        start = annexb.find(b"\x00\x00\x01", begin)
        # Zeros before a start code are its leading byte or trailing_zero_8bits, never NAL data.
        nal = annexb[begin:start].rstrip(b"\x00") if start >= 0 else annexb[begin:]
        if nal:
            nals.append(nal)
    return nals


def fragment_nal(nal: bytes, max_payload: int) -> list[bytes]:
    """One NAL unit as RTP payloads: itself if it fits, else FU-A fragments (RFC 6184 section 5.8)."""
    if len(nal) <= max_payload:
        return [nal]
    header = nal[0]
    indicator = (header & 0xE0) | NAL_FU_A
    nal_type = header & 0x1F
    chunk = max_payload - 2
    body = nal[1:]
    payloads = []
    for offset in range(0, len(body), chunk):
        flags = (FU_START if offset == 0 else 0) | (FU_END if offset + chunk >= len(body) else 0)
        payloads.append(bytes((indicator, flags | nal_type)) + body[offset : offset + chunk])
    return payloads


class RtpStream:
    """Numbers and stamps the packets of one outgoing stream (random initial sequence number and timestamp)."""

    def __init__(self, payload_type: int, ssrc: int, mtu: int = MTU) -> None:
        self.payload_type = payload_type
        self.ssrc = ssrc
        self.max_payload = mtu - RTP_HEADER.size
        self.sequence = secrets.randbelow(0x10000)
        self.timestamp_base = secrets.randbelow(0x1_0000_0000)
        self.packets = 0
        self.octets = 0

    def packet(self, payload: bytes, timestamp: int, marker: bool) -> bytes:
        """One RTP packet; ``timestamp`` counts from the start of the programme in the stream's clock."""
        header = RTP_HEADER.pack(
            0x80,
            (0x80 if marker else 0) | self.payload_type,
            self.sequence,
            (self.timestamp_base + timestamp) & 0xFFFF_FFFF,
            self.ssrc,
        )
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.packets += 1
        self.octets += len(payload)
        return header + payload

    def sender_report(self, wall_time: float, timestamp: int) -> bytes:
        """RTCP SR (RFC 3550 6.4.1): ``timestamp`` (this stream's clock, from the programme's start)
        is the RTP time of ``wall_time``; with it receivers put sound and picture in sync."""
        seconds = wall_time + NTP_EPOCH_OFFSET
        ntp = (int(seconds) << 32) | int((seconds % 1) * (1 << 32))
        rtp = (self.timestamp_base + timestamp) & 0xFFFF_FFFF
        return struct.pack("!BBHIQIII", 0x80, RTCP_SR, 6, self.ssrc, ntp, rtp, self.packets, self.octets)

    def h264(self, access_unit: bytes, timestamp: int) -> list[bytes]:
        """The packets of one encoded picture; the marker on the last."""
        payloads = [p for nal in split_nals(access_unit) for p in fragment_nal(nal, self.max_payload)]
        return [self.packet(p, timestamp, i == len(payloads) - 1) for i, p in enumerate(payloads)]

"""RTCP feedback the SFU sends to publishers, built on bytes (RFC 3550, 4585, 5104).

Also :class:`ReceiveStats`, the per-stream reception statistics behind receiver
reports, and :class:`NackTracker`, which finds upstream holes to ask for.
"""

from __future__ import annotations

import struct
import time

from .rtp import seq_newer


def pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    return struct.pack("!BBHII", 0x81, 206, 2, sender_ssrc, media_ssrc)


def nack(sender_ssrc: int, media_ssrc: int, lost: list[int]) -> bytes:
    """Generic NACK with (PID, BLP) pairs covering ``lost``."""
    items: list[tuple[int, int]] = []
    for seq in sorted(set(lost), key=lambda s: (s - lost[0]) & 0xFFFF):
        if items:
            pid, blp = items[-1]
            delta = (seq - pid) & 0xFFFF
            if 1 <= delta <= 16:
                items[-1] = (pid, blp | (1 << (delta - 1)))
                continue
        items.append((seq, 0))
    fci = b"".join(struct.pack("!HH", pid, blp) for pid, blp in items)
    length = 2 + len(items)
    return struct.pack("!BBHII", 0x81, 205, length, sender_ssrc, media_ssrc) + fci


def remb(sender_ssrc: int, bitrate: int, media_ssrcs: list[int]) -> bytes:
    exponent = 0
    mantissa = bitrate
    while mantissa > 0x3FFFF:
        mantissa >>= 1
        exponent += 1
    fci = b"REMB" + struct.pack("!BBH", len(media_ssrcs), (exponent << 2) | (mantissa >> 16), mantissa & 0xFFFF)
    fci += b"".join(struct.pack("!I", s) for s in media_ssrcs)
    length = 2 + len(fci) // 4
    return struct.pack("!BBHII", 0x8F, 206, length, sender_ssrc, 0) + fci


MAX_RTCP_PACKET = 1100  # bytes of a compound packet of sender reports (below any path's MTU with SRTCP)


def sender_reports(reports: list[tuple[int, int, int, int, int]], cname: bytes) -> list[bytes]:
    """Compound RTCP packets for the streams one connection sends: an SR per SSRC (RFC 8108
    section 5.3 allows several in one compound packet), then an SDES (CNAME) per SSRC.

    ``reports``: (ssrc, ntp, rtp timestamp, packets, octets). As few packets as fit in
    ``MAX_RTCP_PACKET`` bytes (16 streams with a 36-byte CNAME): a subscriber's connection sends
    one or two a second, not one per m-line.
    """
    parts = []
    for ssrc, ntp, ts, count, octets in reports:
        sr = struct.pack(
            "!BBHIIIIII", 0x80, 200, 6, ssrc, (ntp >> 32) & 0xFFFFFFFF, ntp & 0xFFFFFFFF,
            ts & 0xFFFFFFFF, count & 0xFFFFFFFF, octets & 0xFFFFFFFF,
        )  # fmt: skip
        # one SDES per stream: aiortc's parser misreads the chunks after the first of an SDES
        item = struct.pack("!IBB", ssrc, 1, len(cname)) + cname
        item += b"\0" * (4 - len(item) % 4)  # the end of the item list, padded to 32 bits
        parts.append((sr, struct.pack("!BBH", 0x81, 202, len(item) // 4) + item))
    packets: list[bytes] = []
    group: list[tuple[bytes, bytes]] = []
    size = 0
    for sr, sdes in parts:
        if group and size + len(sr) + len(sdes) > MAX_RTCP_PACKET:
            packets.append(b"".join([r for r, _ in group] + [d for _, d in group]))
            group, size = [], 0
        group.append((sr, sdes))
        size += len(sr) + len(sdes)
    if group:
        packets.append(b"".join([r for r, _ in group] + [d for _, d in group]))
    return packets


class ReceiveStats:
    """Reception statistics of one incoming stream (RFC 3550 appendix A)."""

    __slots__ = (
        "base_seq",
        "clock_rate",
        "cycles",
        "expected_prior",
        "jitter",
        "last_arrival",
        "lsr",
        "lsr_time",
        "max_seq",
        "received",
        "received_prior",
        "transit",
    )

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.base_seq = -1
        self.max_seq = 0
        self.cycles = 0
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.jitter = 0.0
        self.transit: float | None = None
        self.lsr = 0
        self.lsr_time = 0.0
        self.last_arrival = 0.0

    def add(self, seq: int, timestamp: int, arrival: float) -> None:
        self.last_arrival = arrival
        if self.base_seq < 0:
            self.base_seq = seq
            self.max_seq = seq
        elif seq_newer(seq, self.max_seq):
            if seq < self.max_seq:
                self.cycles += 1 << 16
            self.max_seq = seq
        self.received += 1
        transit = arrival * self.clock_rate - timestamp
        if self.transit is not None:
            d = abs(transit - self.transit)
            self.jitter += (d - self.jitter) / 16
        self.transit = transit

    def on_sender_report(self, ntp: int) -> None:
        self.lsr = (ntp >> 16) & 0xFFFFFFFF
        self.lsr_time = time.monotonic()

    @property
    def expected(self) -> int:
        return 0 if self.base_seq < 0 else self.cycles + self.max_seq - self.base_seq + 1

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)

    def report_block(self, ssrc: int) -> bytes:
        expected = self.expected
        interval_expected = expected - self.expected_prior
        interval_received = self.received - self.received_prior
        self.expected_prior = expected
        self.received_prior = self.received
        lost_interval = interval_expected - interval_received
        fraction = 0 if interval_expected <= 0 or lost_interval <= 0 else (lost_interval << 8) // interval_expected
        lost = min(self.lost, 0x7FFFFF)
        dlsr = int((time.monotonic() - self.lsr_time) * 65536) if self.lsr else 0
        return struct.pack(
            "!IB3sIIII",
            ssrc,
            min(fraction, 255),
            lost.to_bytes(3, "big"),
            (self.cycles + self.max_seq) & 0xFFFFFFFF,
            int(self.jitter) & 0xFFFFFFFF,
            self.lsr,
            dlsr & 0xFFFFFFFF,
        )


def receiver_report(sender_ssrc: int, blocks: list[bytes]) -> bytes:
    blocks = blocks[:31]
    length = 1 + 6 * len(blocks)
    return struct.pack("!BBHI", 0x80 | len(blocks), 201, length, sender_ssrc) + b"".join(blocks)


class NackTracker:
    """Remembers the sequence numbers missing upstream, to NACK them a few times."""

    MAX_MISSING = 256
    MAX_TRIES = 4

    __slots__ = ("highest", "missing")

    def __init__(self) -> None:
        self.highest = -1
        self.missing: dict[int, int] = {}  # seq -> tries left

    def add(self, seq: int) -> list[int]:
        """Record an arrival; return the sequence numbers newly found missing."""
        if self.highest < 0:
            self.highest = seq
            return []
        if seq_newer(seq, self.highest):
            gap = (seq - self.highest - 1) & 0xFFFF
            new = [(self.highest + i) & 0xFFFF for i in range(1, min(gap, self.MAX_MISSING) + 1)]
            self.highest = seq
            for s in new:
                self.missing[s] = self.MAX_TRIES
            while len(self.missing) > self.MAX_MISSING:
                self.missing.pop(next(iter(self.missing)))
            return new
        self.missing.pop(seq, None)
        return []

    def due(self) -> list[int]:
        """The holes to ask for again, spending one try each."""
        out = []
        for seq, tries in list(self.missing.items()):
            if tries <= 1:
                del self.missing[seq]
            else:
                self.missing[seq] = tries - 1
            out.append(seq)
        return out

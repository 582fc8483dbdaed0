"""Counting SRTP at the UDP protocol of a subscriber's ICE connection.

Every subscriber in the load generator gets a :class:`RtpCounter` on the aioice
socket of its receiving peer connection. It reads the clear RTP header of each
SRTP datagram (SSRC, sequence number: SRTP encrypts only the payload) and counts
packets and sequence-number progress per SSRC, without decrypting.

* For a **sink** (``drop=True``) the RTP datagrams stop there: aiortc never sees
  them, so the subscriber costs a few µs per packet. STUN (ICE consent), DTLS and
  RTCP still go through, so the connection stays up.
* For a **full** subscriber (``drop=False``) every datagram is passed on to aiortc,
  which decrypts, depacketizes and decodes it.
"""

from __future__ import annotations

from typing import Any


class SsrcCount:
    __slots__ = ("highest", "packets")

    def __init__(self, seq: int) -> None:
        self.packets = 0
        self.highest = seq - 1  # extended sequence number of the newest packet seen

    def add(self, seq: int) -> None:
        self.packets += 1
        delta = (seq - self.highest) & 0xFFFF
        if 0 < delta < 0x8000:  # newer (handles the 16-bit wrap)
            self.highest += delta


class RtpCounter:
    """Per-SSRC counters of the RTP datagrams reaching one subscriber."""

    def __init__(self, kinds: dict[int, str] | None = None) -> None:
        self.kinds = kinds or {}
        self.by_ssrc: dict[int, SsrcCount] = {}
        self.rtcp = 0
        self.bytes = 0

    def feed(self, data: bytes) -> bool:
        """Count one datagram; True if it is RTP (or RTCP), i.e. SRTP-family."""
        if len(data) < 12:
            return False
        b0 = data[0]
        if not 128 <= b0 <= 191:
            return False
        b1 = data[1]
        if 192 <= b1 <= 223:
            self.rtcp += 1
            return True
        ssrc = int.from_bytes(data[8:12], "big")
        seq = data[2] << 8 | data[3]
        entry = self.by_ssrc.get(ssrc)
        if entry is None:
            entry = self.by_ssrc[ssrc] = SsrcCount(seq)
        entry.add(seq)
        self.bytes += len(data)
        return True

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Per kind: packets received and packets expected (sequence-number progress)."""
        out: dict[str, dict[str, int]] = {}
        for ssrc, entry in self.by_ssrc.items():
            kind = self.kinds.get(ssrc, "other")
            row = out.setdefault(kind, {"packets": 0, "highest": 0, "streams": 0})
            row["packets"] += entry.packets
            row["highest"] += entry.highest
            row["streams"] += 1
        return out


def ice_connection(pc: Any) -> Any:
    """The aioice Connection under a BUNDLEd RTCPeerConnection."""
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        if dtls is not None:
            return dtls.transport._connection
    raise RuntimeError("peer connection has no transport yet")


def install_counter(pc: Any, counter: RtpCounter, drop: bool) -> int:
    """Hook every host socket of ``pc``'s ICE connection (call after setLocalDescription).

    Returns the number of sockets hooked.
    """
    connection = ice_connection(pc)
    hooked = 0
    for protocol in connection._protocols:
        original = protocol.datagram_received
        feed = counter.feed

        if drop:

            def received(data: bytes, addr: Any, original: Any = original, feed: Any = feed) -> None:
                if not feed(data):
                    original(data, addr)  # STUN and DTLS go to aioice/aiortc
                elif 192 <= data[1] <= 223:
                    original(data, addr)  # RTCP too (cheap: ~1/s); RTP is dropped here

        else:

            def received(data: bytes, addr: Any, original: Any = original, feed: Any = feed) -> None:
                feed(data)
                original(data, addr)

        protocol.datagram_received = received
        hooked += 1
    return hooked

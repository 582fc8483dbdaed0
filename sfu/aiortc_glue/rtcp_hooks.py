"""RTCP as aiortc parses it: a subscriber's feedback on a parked sender routed to the SFU,
the publishers' RTCP parsed for the SFU, and the sender-report values of a sender."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpTransceiver
from aiortc.rtp import RtcpPacket, RtcpPsfbPacket, RtcpRrPacket, RtcpRtpfbPacket, RtcpSrPacket

from .. import udp_batch


def hook_sender_rtcp(transceiver: RTCRtpTransceiver, handler: Callable[[str, Any], None]) -> None:
    """Route a subscriber's RTCP about this sender to ``handler(kind, value)``.

    kinds: ``"pli"``, ``"nack"`` (list of seqs), ``"rr"`` (fraction lost 0..255),
    ``"remb"`` (bitrate). Reports still reach aiortc for its statistics.
    """
    sender = transceiver.sender
    original = sender._handle_rtcp_packet

    async def on_rtcp(packet: Any) -> None:
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == 1:
            with udp_batch.held():  # the retransmissions leave together (muxed port)
                handler("nack", list(packet.lost))
            return
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (1, 4):
            handler("pli", None)
            return
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == 15:
            from aiortc.rtp import unpack_remb_fci

            try:
                bitrate, _ = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            handler("remb", bitrate)
            return
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for report in packet.reports:
                if report.ssrc == sender._ssrc:
                    handler("rr", report.fraction_lost)
        await original(packet)

    sender._handle_rtcp_packet = on_rtcp  # type: ignore[method-assign]


def parse_rtcp(data: bytes) -> list[Any]:
    try:
        return list(RtcpPacket.parse(data))
    except ValueError:
        return []


def is_rtcp_sr(packet: Any) -> bool:
    return isinstance(packet, RtcpSrPacket)


def fir_targets(packet: Any) -> list[int]:
    """SSRCs named in a standard FIR (RFC 5104: header media SSRC 0, targets in the FCI).

    A FIR whose header names the media SSRC is routed by aiortc itself, so it is skipped.
    """
    if not (isinstance(packet, RtcpPsfbPacket) and packet.fmt == 4 and packet.media_ssrc == 0):
        return []
    fci = packet.fci
    return [int.from_bytes(fci[i : i + 4], "big") for i in range(0, len(fci) - 7, 8)]


def set_sender_report(transceiver: RTCRtpTransceiver, ntp: int, rtp_ts: int, packets: int, octets: int) -> None:
    """Make the parked sender's periodic SR carry translated values (lip-sync)."""
    sender = transceiver.sender
    sender._RTCRtpSender__ntp_timestamp = ntp  # type: ignore[attr-defined]
    sender._RTCRtpSender__rtp_timestamp = rtp_ts  # type: ignore[attr-defined]
    sender._RTCRtpSender__packet_count = packets  # type: ignore[attr-defined]
    sender._RTCRtpSender__octet_count = octets  # type: ignore[attr-defined]

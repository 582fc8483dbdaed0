"""The DTLS tap: aiortc's DTLS transport with its decrypted RTP/RTCP handed to the SFU,
installed once in every RTCPeerConnection, after checking that the pinned aiortc/aioice
still have every private name this package uses."""

from __future__ import annotations

from collections.abc import Callable

import aioice.ice
import aiortc
import aiortc.rtcpeerconnection
from aiortc import RTCRtpSender, RTCRtpTransceiver
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpreceiver import RTCRtpReceiver

PINNED_AIORTC = "1.16.0"
PINNED_AIOICE = "0.13.0"

RtpTap = Callable[[bytes, int], None]
RtcpTap = Callable[[bytes], None]


class TappedDtlsTransport(RTCDtlsTransport):
    """A DTLS transport whose decrypted RTP goes to the SFU instead of aiortc's receivers.

    With no tap set it behaves exactly like aiortc's own transport.
    """

    rtp_tap: RtpTap | None = None
    rtcp_tap: RtcpTap | None = None

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        tap = self.rtp_tap
        if tap is None:
            await super()._handle_rtp_data(data, arrival_time_ms)
        else:
            tap(data, arrival_time_ms)

    async def _handle_rtcp_data(self, data: bytes) -> None:
        tap = self.rtcp_tap
        if tap is not None:
            tap(data)
        await super()._handle_rtcp_data(data)


_installed = False


def install() -> None:
    """Make every RTCPeerConnection use :class:`TappedDtlsTransport`. Idempotent."""
    global _installed
    if not _installed:
        check_private_hooks()
        setattr(aiortc.rtcpeerconnection, "RTCDtlsTransport", TappedDtlsTransport)  # noqa: B010
        _installed = True


def check_private_hooks() -> None:
    """Fail loudly at start-up if aiortc/aioice changed under us."""
    problems = []
    if aiortc.__version__ != PINNED_AIORTC:
        problems.append(f"aiortc {aiortc.__version__} (pinned {PINNED_AIORTC})")
    if getattr(aioice, "__version__", PINNED_AIOICE) != PINNED_AIOICE:
        problems.append(f"aioice {aioice.__version__} (pinned {PINNED_AIOICE})")
    needed = [
        (RTCDtlsTransport, "_handle_rtp_data"),
        (RTCDtlsTransport, "_handle_rtcp_data"),
        (RTCDtlsTransport, "_send_rtp"),
        (RTCRtpSender, "_handle_rtcp_packet"),
        (RTCRtpSender, "_run_rtcp"),
        (RTCRtpReceiver, "_RTCRtpReceiver__stop_decoder"),
        (aioice.ice, "get_host_addresses"),
        (aioice.ice.Connection, "local_username"),
        (aioice.ice.Connection, "get_component_candidates"),
        (aiortc.rtcpeerconnection, "RTCDtlsTransport"),
    ]
    for owner, name in needed:
        if not hasattr(owner, name):
            problems.append(f"{getattr(owner, '__name__', owner)}.{name} is missing")
    if problems:
        raise RuntimeError("aiortc internals changed: " + "; ".join(problems))


def dtls_of(transceiver: RTCRtpTransceiver) -> TappedDtlsTransport:
    transport = transceiver.receiver.transport
    assert isinstance(transport, TappedDtlsTransport), "aiortc_glue.install() was not called"
    return transport


async def send_rtcp(dtls: TappedDtlsTransport, packet: bytes) -> None:
    try:
        await dtls._send_rtp(packet)
    except ConnectionError:
        pass


"""Every touch of aiortc's and aioice's private internals lives in this module.

aiortc keeps handling SDP, ICE, DTLS and SRTP keying; the SFU takes over the media:
it taps decrypted RTP/RTCP on each DTLS transport, parks the senders of
subscribing connections (they never encode anything), and sends rewritten
packets itself. The names used here are private, so the versions are pinned in
``pyproject.toml`` and :func:`check_private_hooks` verifies them at start-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aioice.ice
import aiortc
import aiortc.rtcpeerconnection
import pylibsrtp
from aiortc import MediaStreamTrack, RTCRtpSender, RTCRtpTransceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtcpPacket, RtcpPsfbPacket, RtcpRrPacket, RtcpRtpfbPacket, RtcpSrPacket
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

from . import udp_batch
from .rtp import ScratchSink
from .sdp_lines import MediaLine as MediaLine
from .sdp_lines import describe_sdp as describe_sdp
from .udp_mux import MuxedTransport, SharedUdpPort
from .udp_ports import HostEndpoint, LoopWithHostEndpoints, PortRange

log = logging.getLogger(__name__)

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
_pending: set[asyncio.Task[None]] = set()


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


def restrict_host_addresses(addresses: list[str]) -> None:
    """Gather ICE host candidates only on ``addresses`` (loopback included, unlike aioice)."""
    fixed = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in fixed if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


def dtls_of(transceiver: RTCRtpTransceiver) -> TappedDtlsTransport:
    transport = transceiver.receiver.transport
    assert isinstance(transport, TappedDtlsTransport), "aiortc_glue.install() was not called"
    return transport


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[Any]:
    return list(transceiver._codecs)


def keep_codecs(transceiver: RTCRtpTransceiver, keep: Callable[[Any], bool]) -> None:
    """Drop negotiated codecs before the answer is created (aiortc has no other hook)."""
    kept = [c for c in transceiver._codecs if keep(c)]
    primary = {c.payloadType for c in kept if c.mimeType.lower() != "video/rtx"}
    transceiver._codecs = [c for c in kept if c.mimeType.lower() != "video/rtx" or c.parameters.get("apt") in primary]


def negotiated_extensions(transceiver: RTCRtpTransceiver) -> dict[str, int]:
    return {ext.uri: ext.id for ext in transceiver._headerExtensions}


def stop_receiver_decoder(transceiver: RTCRtpTransceiver) -> None:
    """The SFU never decodes: stop the idle decoder thread aiortc started."""
    transceiver.receiver._RTCRtpReceiver__stop_decoder()  # type: ignore[attr-defined]


def slim_receiver(transceiver: RTCRtpTransceiver) -> None:
    """Drop the state of an aiortc receiver that never sees RTP (the SFU taps it on publishing
    connections; nothing arrives on a subscriber's m-lines): a video receiver's bandwidth
    estimator holds 1000 bucket objects (``RateCounter``), which every full garbage collection
    walks: at 45 members (~2200 video m-lines) ~2 M objects and ~1 s per full collection."""
    receiver = transceiver.receiver
    receiver._RTCRtpReceiver__remote_bitrate_estimator = None  # type: ignore[attr-defined]
    receiver._RTCRtpReceiver__jitter_buffer = JitterBuffer(capacity=16, prefetch=4)  # type: ignore[attr-defined]


class IdleTrack(MediaStreamTrack):
    """A track that never yields a frame: it parks aiortc's RTP loop for a sender."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def recv(self) -> Any:
        await self._never
        raise aiortc.mediastreams.MediaStreamError

    def stop(self) -> None:
        super().stop()
        if not self._never.done():
            self._never.cancel()


def park_sender(transceiver: RTCRtpTransceiver) -> None:
    """The SFU sends on this m-line itself: aiortc's RTP loop waits on a track that never yields,
    and its RTCP loop does not run (one task per m-line sending an SR every second whether the
    slot carries anything or not: ~20 % of a core at 45 members). The transport sends the SRs
    of the slots that carry media, all in one compound packet (``rtcp.sender_reports``)."""
    sender = transceiver.sender
    sender.replaceTrack(IdleTrack(transceiver.kind))
    slim_receiver(transceiver)

    async def no_rtcp_loop() -> None:  # what aiortc's stop() waits for, at once
        sender._RTCRtpSender__rtcp_started.set()  # type: ignore[attr-defined]
        sender._RTCRtpSender__rtcp_exited.set()  # type: ignore[attr-defined]

    sender._run_rtcp = no_rtcp_loop  # type: ignore[method-assign]


def sender_cname(transceiver: RTCRtpTransceiver) -> bytes:
    """The CNAME the connection announced (set once the sender started), for SDES."""
    cname = transceiver.sender._RTCRtpSender__cname  # type: ignore[attr-defined]
    return (cname or "").encode()[:255]


def set_stream_id(transceiver: RTCRtpTransceiver, stream_id: str, track_id: str) -> None:
    """Give the slot the msid of its current publisher, so browsers keep lip-sync."""
    transceiver.sender._stream_id = stream_id
    transceiver.sender._track_id = track_id


def sender_ssrc(transceiver: RTCRtpTransceiver) -> int:
    return int(transceiver.sender._ssrc)


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


# One scratch buffer for every leg (the event loop sends one packet at a time): a packet is
# built in it, protected in place by libsrtp (which appends its tag) and copied out to sendto.
SCRATCH_CAPACITY = 2048  # largest plaintext packet; a browser's are below 1300 bytes
_scratch = srtp_ffi.new("unsigned char[]", SCRATCH_CAPACITY + pylibsrtp.SRTP_MAX_SRTCP_TRAILER_LEN)
_scratch_bytes = srtp_ffi.buffer(_scratch)
_scratch_view = memoryview(_scratch_bytes)
_length = srtp_ffi.new("int *")
_CONNECTED = DtlsState.CONNECTED  # an enum member read per packet: looked up once


class SrtpSender(ScratchSink):
    """Protects packets with a DTLS transport's SRTP keys and sends them on its nominated ICE pair.

    Calls libsrtp directly on the shared scratch buffer (pylibsrtp's ``protect`` allocates and
    copies twice per packet) and ``sendto``s on the pair's socket: no task, no await; on the
    muxed port the datagram goes to the socket's batch instead (sfu/udp_batch.py). The
    route (SRTP context, socket, address) is looked up once and kept while the nominated pair
    and the SRTP session stay the same. Returns False when the transport is not (or no
    longer) connected; ``drop`` (loss injection in tests) makes it drop a packet yet say it went.
    """

    buffer = _scratch_view
    capacity = SCRATCH_CAPACITY

    def __init__(self, dtls: TappedDtlsTransport | None = None, rtcp: bool = False) -> None:
        self.drop: Callable[[], bool] | None = None
        self._protect = srtp_lib.srtp_protect_rtcp if rtcp else srtp_lib.srtp_protect
        self._dtls: TappedDtlsTransport | None = None
        self._nominated: dict[int, Any] = {}
        self._pair: Any = None
        self._session: pylibsrtp.Session | None = None
        self._context: Any = None
        self._sendto: Callable[[bytes, Any], object] = _nowhere
        self._addr: Any = None
        self._batch: udp_batch.UdpBatch | None = None  # on the muxed port: its batch, the peer's sockaddr
        self._to: Any = None
        self._muxed: Any = None
        if dtls is not None:
            self.attach(dtls)

    def attach(self, dtls: TappedDtlsTransport) -> None:
        """Send on ``dtls`` from now on (once it is connected)."""
        self._dtls = dtls
        self._nominated = dtls.transport._connection._nominated
        self.reroute()

    def reroute(self) -> None:
        """Look the route up again before the next packet."""
        self._pair = self._session = None

    def __call__(self, packet: bytes) -> bool:
        size = len(packet)
        if size > SCRATCH_CAPACITY:
            return False
        _scratch_view[0:size] = packet
        return self.send_built(size)

    def send_built(self, length: int) -> bool:
        drop = self.drop
        if drop is not None and drop():
            return True  # counted as sent: the loss is on the wire
        dtls = self._dtls
        if dtls is None or dtls._state is not _CONNECTED:
            return False
        pair = self._nominated.get(1)
        if (pair is not self._pair or dtls._tx_srtp is not self._session) and not self._route(dtls, pair):
            return False
        _length[0] = length
        if self._protect(self._context, _scratch, _length):
            return False  # a libsrtp error (e.g. the key's packet limit)
        batch = self._batch
        if batch is None:
            self._sendto(_scratch_bytes[0 : _length[0]], self._addr)
        elif not self._muxed._closing:
            batch.add(_scratch, _length[0], self._to)
        return True

    def _route(self, dtls: TappedDtlsTransport, pair: Any) -> bool:
        session = dtls._tx_srtp
        if pair is None or session is None:
            return False
        protocol = pair.protocol
        transport = getattr(protocol, "transport", None)
        self._batch = None
        if type(protocol) is aioice.ice.StunProtocol and transport is not None:
            self._sendto = transport.sendto
            if type(transport) is MuxedTransport and transport.mux.batch is not None:
                self._to = transport.mux.batch.destination(pair.remote_addr)
                self._batch, self._muxed = (transport.mux.batch, transport) if self._to is not None else (None, None)
        else:  # a TURN allocation: its protocol frames the data itself

            def relay(data: bytes, addr: Any) -> None:
                task = asyncio.get_running_loop().create_task(protocol.send_data(data, addr))
                _pending.add(task)
                task.add_done_callback(_pending.discard)

            self._sendto = relay
        self._context = session._srtp[0]
        self._session, self._pair, self._addr = session, pair, pair.remote_addr
        return True


def _nowhere(data: bytes, addr: Any) -> None:
    pass


make_sender = SrtpSender  # make_sender(dtls, rtcp=False)(packet) -> bool: protect and send one packet


async def send_rtcp(dtls: TappedDtlsTransport, packet: bytes) -> None:
    try:
        await dtls._send_rtp(packet)
    except ConnectionError:
        pass


def _shim_aioice_loop(host_endpoint: HostEndpoint) -> None:
    class _AsyncioForAioice:
        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

        @staticmethod
        def get_running_loop() -> Any:
            return LoopWithHostEndpoints(asyncio.get_running_loop(), host_endpoint)

    setattr(aioice.ice, "asyncio", _AsyncioForAioice())  # noqa: B010  (only aioice sees the shim)


def restrict_udp_ports(low: int, high: int) -> None:
    """Bind every ICE host candidate in ``low``-``high`` (a firewall opens just that range)."""
    ports = PortRange(low, high)
    allow_any_udp_port()
    _shim_aioice_loop(ports.bind)


_shared_port: SharedUdpPort | None = None


async def share_udp_port(port: int, addresses: list[str]) -> SharedUdpPort:
    """Give every ICE host candidate the one UDP ``port`` (a firewall opens just that port).

    The port is bound now on each of ``addresses``: an OSError at start-up if it is taken.
    """
    global _shared_port
    if not 1024 <= port <= 65535:
        raise ValueError("the shared UDP port must be within 1024-65535")
    allow_any_udp_port()
    shared = SharedUdpPort(port)
    try:
        await shared.open(addresses)
    except OSError:
        shared.close()
        raise
    _shared_port = shared

    async def muxed_endpoint(loop: asyncio.AbstractEventLoop, factory: Any, address: str) -> Any:
        mux = await shared.mux_for(address)
        protocol = factory()  # an aioice StunProtocol, for the ICE connection protocol.receiver
        connection = protocol.receiver
        # The ufrag routes STUN requests: if another connection on the port has it, this one gets
        # a fresh one now, before the SDP carries it (aiortc writes it once candidates are gathered).
        ufrag = shared.unique_ufrag(connection.local_username, owner=connection)
        if ufrag != connection.local_username:
            connection._local_username = ufrag
        transport = mux.attach(protocol, ufrag, owner=connection, remote_ufrag=lambda: connection.remote_username)
        protocol.connection_made(transport)
        return transport, protocol

    _shim_aioice_loop(muxed_endpoint)
    return shared


def shared_udp_port() -> SharedUdpPort | None:
    """The shared port in use (its routing tables, its dropped datagrams), if any."""
    return _shared_port


def allow_any_udp_port() -> None:
    """Undo :func:`restrict_udp_ports` or :func:`share_udp_port` (closing the shared sockets)."""
    global _shared_port
    setattr(aioice.ice, "asyncio", asyncio)  # noqa: B010
    if _shared_port is not None:
        _shared_port.close()
        _shared_port = None


def answer_as_sender(transceiver: RTCRtpTransceiver) -> None:
    """A transceiver made from a remote recvonly offer (WHEP): answer sendonly, sender parked."""
    transceiver.direction = "sendonly"
    park_sender(transceiver)

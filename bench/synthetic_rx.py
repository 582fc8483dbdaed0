"""The receiving side of synthetic members and of WHEP viewers: counting, latency, decoding.

Every receiving connection gets a hook on its aioice socket (``bench.sinks``' way):
each SRTP datagram is counted by SSRC from its clear header. Then:

* a **sink** drops it there (aiortc never sees it; RTCP from the server too); for a sample of packets (the last
  packet of each video frame, one audio packet in :data:`AUDIO_SAMPLE`) it decrypts a
  copy with the connection's own SRTP keys and reads the send-time stamp
  (bench/synthetic_media.py): latency = arrival at the socket − send time. The arrival is
  the kernel's stamp of the datagram reaching the socket (``SIOCGSTAMPNS``), not the
  moment this process reads it: a load generator busy with other members' packets reads
  late, which is not the server's latency;
* a **decoder** passes the packets of the videos it decodes to aiortc (and drops the
  rest): aiortc decrypts and decodes them, the stamped frame number is checked on every
  picture, and the latency of sampled packets is read after aiortc's decryption (with
  the arrival time taken at the socket).

aiortc's receivers of a sink connection never see RTP, so they would send no RTCP:
instead each connection sends one compound receiver report per second, as a browser
does (:meth:`Reception.send_report`). Their idle decoder threads are stopped.
"""

from __future__ import annotations

import asyncio
import fcntl
import re
import struct
import time
from collections.abc import Callable
from typing import Any

import av
import pylibsrtp
from aiortc import RTCPeerConnection
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

from sfu import aiortc_glue as glue
from tests.peers import read_stamp

from .common import luma
from .sinks import RtpCounter, ice_connection
from .synthetic_media import read_stamp_ns

AUDIO_SAMPLE = 5  # one audio packet in 5 is decrypted by sinks for latency
MAX_LATENCY_SAMPLES = 200_000
MAX_PENDING_ARRIVALS = 10_000


SIOCGSTAMPNS = 0x8907  # Linux: when the last datagram read from a socket reached it (struct timespec)


def enable_arrival_stamps(fd: int) -> bool:
    """Ask the kernel to stamp each datagram as it reaches this socket; False where it cannot."""
    try:
        fcntl.ioctl(fd, SIOCGSTAMPNS, bytes(16))  # the first call turns stamping on (and has none yet)
    except OSError as exc:
        return exc.errno == 2  # ENOENT: on, nothing stamped yet
    return True


def arrival_ns(fd: int) -> int:
    """When the datagram just read from ``fd`` reached the socket, on ``time.monotonic_ns()``'s clock.

    The kernel stamps it on the wall clock as it queues it (on loopback: inside the server's
    send), so the figure does not include how late this busy load generator read it."""
    try:
        sec, nsec = struct.unpack("qq", fcntl.ioctl(fd, SIOCGSTAMPNS, bytes(16)))
    except OSError:
        return time.monotonic_ns()
    return sec * 1_000_000_000 + nsec - (time.time_ns() - time.monotonic_ns())


class LatencyLog:
    """Send-to-receive delays in µs since the last reset (bounded: the latest are kept)."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    def add(self, sent_ns: int, arrived_ns: int) -> None:
        self.samples.append((arrived_ns - sent_ns) / 1000)
        if len(self.samples) > MAX_LATENCY_SAMPLES:
            del self.samples[: MAX_LATENCY_SAMPLES // 2]

    def reset(self) -> None:
        self.samples = []


def install_quiet_receivers() -> None:
    """aiortc receivers on a transport marked ``bench_sink`` stop their decoder thread at once."""
    if getattr(RTCRtpReceiver, "bench_patched", False):
        return
    original = RTCRtpReceiver.receive

    async def receive(self: RTCRtpReceiver, parameters: Any) -> None:
        await original(self, parameters)
        if getattr(self.transport, "bench_sink", False):
            self._RTCRtpReceiver__stop_decoder()  # type: ignore[attr-defined]

    RTCRtpReceiver.receive = receive  # type: ignore[method-assign]
    RTCRtpReceiver.bench_patched = True  # type: ignore[attr-defined]


def ssrc_lines(sdp: str) -> dict[int, tuple[str, str]]:
    """Each SSRC announced in an SDP -> (mid, kind) of its m-line."""
    out: dict[int, tuple[str, str]] = {}
    kind = mid = ""
    for line in sdp.splitlines():
        if line.startswith("m="):
            kind, mid = line[2:].split(" ", 1)[0], ""
        elif line.startswith("a=mid:"):
            mid = line[6:].strip()
        else:
            match = re.match(r"a=ssrc:(\d+) ", line)
            if match:
                out.setdefault(int(match.group(1)), (mid, kind))
    return out


def header_size(packet: bytes) -> int:
    """Length of a plain RTP packet's header, CSRCs and extension block included."""
    size = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        size += 4 + 4 * int.from_bytes(packet[size + 2 : size + 4], "big")
    return size


class Reception:
    """One receiving connection: its counter, its hook, its latency probes, its checks."""

    def __init__(
        self, pc: RTCPeerConnection, latency: LatencyLog | None, decode: bool = False, clip_frames: int = 0
    ) -> None:
        self.pc = pc
        self.latency = latency  # None: nothing stamped to read (the programme is re-encoded)
        self.decode = decode
        self.clip_frames = clip_frames
        self.counter = RtpCounter()
        self.ssrcs: dict[int, tuple[str, str]] = {}  # ssrc -> (mid, kind)
        self.decoded: set[int] = set()  # SSRCs passed to aiortc (decoders only)
        self.arrivals: dict[tuple[int, int], int] = {}  # (ssrc, seq) -> arrival ns, for decoded samples
        self.dtls: Any = None
        self._send_rtcp: Callable[[bytes], bool] | None = None
        self.report_ssrc = 0
        # decoder checks
        self.frames = 0
        self.skips = 0
        self.bad_size = 0
        self._consuming: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ negotiation

    def learn(self, sdp: str) -> None:
        """The SSRCs of a (re)offer, before the answer."""
        self.ssrcs = ssrc_lines(sdp)
        self.counter.kinds.update({ssrc: kind for ssrc, (_, kind) in self.ssrcs.items()})

    def after_first_description(self) -> None:
        """Call right after the first ``setRemoteDescription``/``setLocalDescription`` pair."""
        transceivers = self.pc.getTransceivers()
        self.dtls = transceivers[0].receiver.transport
        self.dtls.bench_sink = not self.decode
        self.report_ssrc = int(transceivers[0].sender._ssrc)
        connection = ice_connection(self.pc)
        for protocol in connection._protocols:
            sock = protocol.transport.get_extra_info("socket")
            fd = sock.fileno() if sock is not None and enable_arrival_stamps(sock.fileno()) else -1
            protocol.datagram_received = self._hook(protocol.datagram_received, fd)
        if self.decode:
            self.dtls._handle_rtp_data = self._decrypted(self.dtls._handle_rtp_data)

    def decode_mids(self, mids: set[str]) -> None:
        """Decoders: decode the video of these m-lines (their SSRCs go to aiortc)."""
        self.decoded = {ssrc for ssrc, (mid, kind) in self.ssrcs.items() if mid in mids and kind == "video"}
        for transceiver in self.pc.getTransceivers():
            track = transceiver.receiver.track
            if transceiver.mid in mids and transceiver.mid not in self._consuming and track is not None:
                self._consuming.add(transceiver.mid)
                self._tasks.append(asyncio.get_running_loop().create_task(self._consume(track)))

    # ------------------------------------------------------------------ the socket

    def _hook(self, original: Callable[[bytes, Any], None], fd: int) -> Callable[[bytes, Any], None]:
        """``fd``: the socket, for the kernel's arrival stamps (-1: the time it is read instead)."""
        feed = self.counter.feed
        kinds = self.counter.kinds
        probe = self.latency is not None
        decode = self.decode

        def received(data: bytes, addr: Any) -> None:
            if not feed(data):
                original(data, addr)  # STUN and DTLS go to aioice/aiortc
                return
            if 192 <= data[1] <= 223:
                if decode:
                    original(data, addr)  # a sink's receivers need no sender reports
                return
            ssrc = int.from_bytes(data[8:12], "big")
            seq = data[2] << 8 | data[3]
            sample = data[1] & 0x80 if kinds.get(ssrc) == "video" else seq % AUDIO_SAMPLE == 0
            if ssrc in self.decoded:
                if sample:
                    if len(self.arrivals) > MAX_PENDING_ARRIVALS:
                        self.arrivals.clear()  # aiortc dropped some (undecryptable): forget them
                    self.arrivals[(ssrc, seq)] = arrival_ns(fd) if fd >= 0 else time.monotonic_ns()
                original(data, addr)
            elif sample and probe:
                self._probe(data, arrival_ns(fd) if fd >= 0 else time.monotonic_ns())

        return received

    def _probe(self, data: bytes, arrived: int) -> None:
        srtp = None if self.dtls is None else self.dtls._rx_srtp
        if srtp is None:
            return
        try:
            plain = srtp.unprotect(data)
        except pylibsrtp.Error:
            return  # a retransmission already seen, or not yet keyed
        sent = read_stamp_ns(memoryview(plain)[header_size(plain) :])
        if sent is not None and self.latency is not None:
            self.latency.add(sent, arrived)

    def _decrypted(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def handle(data: bytes, arrival_time_ms: int) -> None:
            key = (int.from_bytes(data[8:12], "big"), data[2] << 8 | data[3])
            arrived = self.arrivals.pop(key, None)
            if arrived is not None:
                sent = read_stamp_ns(memoryview(data)[header_size(data) :])
                if sent is not None and self.latency is not None:
                    self.latency.add(sent, arrived)
            await original(data, arrival_time_ms)

        return handle

    # ------------------------------------------------------------------ RTCP and decoding

    def send_report(self) -> None:
        """One compound receiver report for every SSRC seen (a browser sends about one per second)."""
        if self.dtls is None or self.dtls.state != "connected":
            return
        if self._send_rtcp is None:
            self._send_rtcp = glue.make_sender(self.dtls, rtcp=True)
        blocks = [
            RtcpReceiverInfo(ssrc=ssrc, fraction_lost=0, packets_lost=0, highest_sequence=entry.highest & 0xFFFFFFFF,
                             jitter=0, lsr=0, dlsr=0)
            for ssrc, entry in self.counter.by_ssrc.items()
        ]  # fmt: skip
        if blocks:
            packets = [RtcpRrPacket(ssrc=self.report_ssrc, reports=blocks[i : i + 31]) for i in range(0, len(blocks), 31)]
            self._send_rtcp(b"".join(bytes(p) for p in packets))

    async def _consume(self, track: Any) -> None:
        last: int | None = None
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            if not isinstance(frame, av.VideoFrame):
                continue
            self.frames += 1
            value = read_stamp(luma(frame))
            if value >= self.clip_frames:
                self.bad_size += 1
                continue
            if last is not None and value != (last + 1) % self.clip_frames:
                self.skips += 1
            last = value

    def received_by_ssrc(self) -> dict[int, int]:
        return {ssrc: entry.packets for ssrc, entry in self.counter.by_ssrc.items()}

    def totals(self) -> dict[str, list[int]]:
        """Per kind: [packets, packets expected from sequence progress]."""
        return {kind: [row["packets"], row["highest"]] for kind, row in self.counter.snapshot().items()}

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

"""A plain-RTP transport on loopback: the SFU's link to a local worker process.

Like mediasoup's PlainTransport feeding FFmpeg: no ICE, no DTLS, no SRTP, one UDP
socket bound to 127.0.0.1. The worker (the programme, sfu/programme) is the only peer:
datagrams from any other address are dropped.

- Taps: consumers whose slot sends plain RTP to the worker (fixed SSRC and payload
  type per tap, no header extensions). The worker's PLI/FIR for a tap's SSRC reaches
  the tap's consumer, which asks the producer for a keyframe.
- Injected producers: the worker sends RTP back (the composed programme); packets are
  routed by SSRC to producers like any publisher's, so ordinary consumers (WHEP
  viewers) forward them. The producer's keyframe requests go back to the worker as PLIs.
"""

from __future__ import annotations

import asyncio
import logging
import time

from . import rtcp
from .consumer import Slot
from .producer import Producer
from .rtp import ExtensionIds, read_packet

log = logging.getLogger(__name__)

TICK = 0.1
SOCKET_BUFFER = 4 * 1024 * 1024
RTCP_PSFB = 206
RTCP_SR = 200


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, owner: PlainTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.owner.datagram_received(data, (str(addr[0]), int(addr[1])))


class PlainTransport:
    def __init__(self, transport_id: str) -> None:
        self.id = transport_id
        self.slots: list[Slot] = []
        self.by_ssrc: dict[int, Producer] = {}
        self.peer: tuple[str, int] | None = None
        self.closed = False
        self.connected = False  # a peer address is known
        self.last_activity = time.monotonic()
        self.feedback_ssrc = 1
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self, host: str = "127.0.0.1") -> int:
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(lambda: _Endpoint(self), local_addr=(host, 0))
        sock = udp.get_extra_info("socket")
        for option in (8, 7):  # SO_RCVBUF, SO_SNDBUF: a programme frame is a burst of packets
            try:
                sock.setsockopt(1, option, SOCKET_BUFFER)
            except OSError:
                pass
        self._udp = udp
        self.port = int(udp.get_extra_info("sockname")[1])
        self._task = loop.create_task(self._tick_loop())
        return self.port

    def connect(self, host: str, port: int) -> None:
        """The worker's address: the only one we send to and accept from."""
        self.peer = (host, port)
        self.connected = True

    # ------------------------------------------------------------------ taps (SFU -> worker)

    def add_slot(self, kind: str, ssrc: int, payload_type: int, clock_rate: int) -> Slot:
        slot = Slot(mid=f"tap{len(self.slots)}", kind=kind, handle=None)
        slot.configure(ssrc, payload_type, ExtensionIds(), clock_rate)
        self.slots.append(slot)
        return slot

    def send(self, packet: bytes) -> bool:
        if self._udp is None or self.peer is None or self.closed:
            return False
        self._udp.sendto(packet, self.peer)
        return True

    # ------------------------------------------------------------------ injected producers (worker -> SFU)

    def add_producer(self, producer: Producer) -> None:
        if producer.ssrc is not None:
            self.by_ssrc[producer.ssrc] = producer
        producer.on_close.append(self._forget)

    def _forget(self, producer: Producer) -> None:
        if producer.ssrc is not None and self.by_ssrc.get(producer.ssrc) is producer:
            del self.by_ssrc[producer.ssrc]

    def send_rtcp(self, packet: bytes) -> None:
        self.send(packet)

    # ------------------------------------------------------------------ receive

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr != self.peer or len(data) < 12:
            return
        self.last_activity = time.monotonic()
        if 192 <= data[1] <= 223:  # RTCP (RFC 5761 demultiplexing)
            self._on_rtcp(data)
            return
        try:
            view = read_packet(data, 0, 0)
        except ValueError:
            return
        producer = self.by_ssrc.get(view.ssrc)
        if producer is not None:
            producer.receive(data, view)

    def _on_rtcp(self, data: bytes) -> None:
        """PLI and FIR from the worker name one of our taps' SSRCs; its SRs time its own streams."""
        pos = 0
        while pos + 12 <= len(data):
            fmt, packet_type = data[pos] & 0x1F, data[pos + 1]
            length = (int.from_bytes(data[pos + 2 : pos + 4], "big") + 1) * 4
            if packet_type == RTCP_SR and pos + 20 <= len(data):
                producer = self.by_ssrc.get(int.from_bytes(data[pos + 4 : pos + 8], "big"))
                if producer is not None:  # translated to each viewer, who then lip-syncs the programme
                    ntp = int.from_bytes(data[pos + 8 : pos + 16], "big")
                    producer.on_sender_report(ntp, int.from_bytes(data[pos + 16 : pos + 20], "big"))
            elif packet_type == RTCP_PSFB and fmt in (1, 4):
                target = int.from_bytes(data[pos + 8 : pos + 12], "big")
                if fmt == 4 and pos + 16 <= len(data):
                    target = int.from_bytes(data[pos + 12 : pos + 16], "big")  # FIR names it in the FCI
                for slot in self.slots:
                    if slot.writer is not None and slot.writer.ssrc == target:
                        slot.on_rtcp("pli", None)
            pos += length

    # ------------------------------------------------------------------ ticking and close

    async def _tick_loop(self) -> None:
        while not self.closed:
            await asyncio.sleep(TICK)
            for producer in list(self.by_ssrc.values()):
                try:
                    producer.tick()
                except Exception:
                    log.exception("plain transport %s tick failed", self.id)

    def free_slot(self, kind: str) -> Slot | None:
        return next((s for s in self.slots if s.kind == kind and s.free), None)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for slot in self.slots:
            if slot.consumer is not None:
                slot.consumer.close()
        for producer in list(self.by_ssrc.values()):
            producer.close()
        if self._task is not None:
            self._task.cancel()
        if self._udp is not None:
            self._udp.close()


def pli_for(ssrc: int) -> bytes:
    """The PLI a worker sends to ask a tap for a keyframe (tests, and the worker itself)."""
    return rtcp.pli(1, ssrc)

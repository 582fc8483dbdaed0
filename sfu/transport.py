"""Transports: one peer connection each, publishing (browser offers) or subscribing (SFU offers).

aiortc does ICE, DTLS and SRTP keying; media goes through the taps and senders of :mod:`sfu.aiortc_glue`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy

from . import aiortc_glue as glue
from . import rtcp
from .codecs import WANTED, choose_publish_codec, describe, is_baseline, keeping, negotiated_payload_types
from .consumer import Slot
from .errors import NegotiationError
from .producer import Producer, ProducerSpec
from .rtp import EXT_ABS_SEND_TIME, EXT_AUDIO_LEVEL, EXT_MID, ExtensionIds, read_packet
from .sdp_munging import as_announced, drop_unusable_candidates, improve_answer

log = logging.getLogger(__name__)

TICK = 0.1
SLOT_BLOCK_MIN = 4  # free slots a subscriber's connection grows by, at least (RecvTransport.grow)


def _configuration(ice_servers: list[dict[str, Any]]) -> RTCConfiguration:
    servers = [RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
               for s in ice_servers]
    return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


class Transport:
    """Common part: the peer connection, liveness and close."""

    def __init__(self, transport_id: str, ice_servers: list[dict[str, Any]]) -> None:
        self.id = transport_id
        self.pc = RTCPeerConnection(_configuration(ice_servers))
        self.closed = False
        self.created = time.monotonic()
        self.last_activity = time.monotonic()
        self.on_failed: Callable[[Transport], object] | None = None
        self._task: asyncio.Task[None] | None = None
        self.was_connected = False  # connected once (ICE and DTLS up), whatever its state now
        self.slim_pending = False  # a negotiation ended: slim aiortc's descriptions once it is applied
        self.pc.on("connectionstatechange", self._on_state)

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state in ("failed", "closed") and self.on_failed is not None and not self.closed:
            self.on_failed(self)  # closed without us closing it: ICE consent expired
        elif state == "connected":
            self.was_connected = True
            self.on_connected()

    def on_connected(self) -> None:
        pass

    @property
    def connected(self) -> bool:
        return self.pc.connectionState == "connected"

    def _start_ticking(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._tick_loop())

    async def _tick_loop(self) -> None:
        rounds = 0
        while not self.closed:
            await asyncio.sleep(TICK)
            rounds += 1
            try:
                if self.slim_pending and glue.slim_descriptions(self.pc) >= 0:  # applied: aiortc started its parts
                    self.slim_pending = False  # its parsed descriptions: only what it reads again
                self.tick(rounds)
            except Exception:  # a bug in one tick must not kill the loop
                log.exception("transport %s tick failed", self.id)

    def tick(self, rounds: int) -> None:
        pass

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._task is not None:
            self._task.cancel()
        try:
            await self.pc.close()
        except Exception:  # a peer connection left half-made by a bad SDP must not stop the clean-up
            log.warning("transport %s did not close cleanly", self.id, exc_info=True)


class SendTransport(Transport):
    """A member's publishing connection: each offered m-line becomes a Producer."""

    def __init__(self, transport_id: str, ice_servers: list[dict[str, Any]], bitrate_caps: dict[str, int]) -> None:
        super().__init__(transport_id, ice_servers)
        self.by_ssrc: dict[int, Producer] = {}
        self.by_mid: dict[str, Producer] = {}
        self.mid_ext_id = 0
        self.audio_level_ext_id = 0
        self.feedback_ssrc = 0
        self.bitrate_caps = bitrate_caps
        self._send_rtcp: Callable[[bytes], bool] = lambda _packet: False
        self.upstream_drop: Callable[[], bool] | None = None  # loss injection for tests

    async def accept_offer(self, sdp: str, allowed_mids: set[str]) -> tuple[str, list[glue.MediaLine]]:
        """Apply the publisher's offer; return our answer and the usable m-lines.

        Each m-line is answered with one codec (:func:`sfu.codecs.choose_publish_codec`) and its RTX.
        """
        try:
            lines = glue.describe_sdp(sdp)
        except ValueError as exc:
            raise NegotiationError("bad_sdp", str(exc)) from exc
        chosen = {line.mid: choose_publish_codec(line.kind, line.codecs) for line in lines}
        usable = [line for line in lines if line.mid in allowed_mids]
        for line in usable:
            if chosen[line.mid] is None:
                raise NegotiationError("no_codec", f"m-line {line.mid}: no {WANTED.get(line.kind, 'usable')} codec")
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=drop_unusable_candidates(sdp), type="offer"))
        except Exception as exc:
            for line in usable:  # aiortc refuses an m-line whose only codec it cannot match
                codec = chosen[line.mid]
                if codec is not None and codec[1] == "h264" and not is_baseline(codec):
                    message = f"m-line {line.mid}: {describe(codec)} unsupported: send constrained baseline (42e01f)"
                    raise NegotiationError("no_codec", message) from exc
            raise NegotiationError("bad_sdp", f"offer refused: {exc}") from exc
        for transceiver in self.pc.getTransceivers():
            codec = chosen.get(transceiver.mid)
            glue.keep_codecs(transceiver, keeping(None if codec is None else codec[0]))
            glue.stop_receiver_decoder(transceiver)
            glue.slim_receiver(transceiver)  # the tap takes its RTP: aiortc's receiver never sees any
            if codec is not None and transceiver.mid in allowed_mids and not glue.negotiated_codecs(transceiver):
                raise NegotiationError("no_codec", f"m-line {transceiver.mid}: cannot answer {describe(codec)}")
        try:
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(answer)
        except Exception as exc:
            raise NegotiationError("no_codec", f"cannot answer: {exc}") from exc
        for line in lines:
            self.mid_ext_id = self.mid_ext_id or line.extensions.get(EXT_MID, 0)
            if line.kind == "audio":
                self.audio_level_ext_id = self.audio_level_ext_id or line.extensions.get(EXT_AUDIO_LEVEL, 0)
        transceivers = self.pc.getTransceivers()
        if transceivers:
            dtls = glue.dtls_of(transceivers[0])
            dtls.rtp_tap = self._on_rtp
            dtls.rtcp_tap = self._on_rtcp
            self._send_rtcp = glue.make_sender(dtls, rtcp=True)
            self.feedback_ssrc = glue.sender_ssrc(transceivers[0])
        self._start_ticking()
        self.last_activity = time.monotonic()  # no media can come before the answer: silence counts from now
        self.slim_pending = True  # the answer is read here, before the descriptions are slimmed
        return as_announced(improve_answer(self.pc.localDescription.sdp, self.bitrate_caps)), usable

    def add_producer(self, producer: Producer) -> None:
        self.by_mid[producer.spec.mid] = producer
        if producer.spec.ssrc is not None:
            self.by_ssrc[producer.spec.ssrc] = producer
        if producer.spec.rtx_ssrc is not None:
            self.by_ssrc[producer.spec.rtx_ssrc] = producer
        producer.on_close.append(self._forget)

    def _forget(self, producer: Producer) -> None:
        if self.by_mid.get(producer.spec.mid) is producer:
            del self.by_mid[producer.spec.mid]
        for ssrc in [s for s, p in self.by_ssrc.items() if p is producer]:
            del self.by_ssrc[ssrc]

    def send_rtcp(self, packet: bytes) -> None:
        self._send_rtcp(packet)

    # ------------------------------------------------------------------ taps

    def _on_rtp(self, data: bytes, arrival_ms: int) -> None:
        self.last_activity = time.monotonic()
        if self.upstream_drop is not None and self.upstream_drop():
            return
        try:
            view = read_packet(data, self.mid_ext_id, self.audio_level_ext_id)
        except ValueError:
            return
        producer = self.by_ssrc.get(view.ssrc)
        if producer is None:
            producer = self._learn_ssrc(view.ssrc, view.mid, view.payload_type)
            if producer is None:
                return
        producer.receive(data, view)

    def _learn_ssrc(self, ssrc: int, mid: bytes | None, payload_type: int) -> Producer | None:
        """An SSRC the SDP did not announce: identify it by its MID extension."""
        if mid is None:
            return None
        producer = self.by_mid.get(mid.decode("ascii", "replace"))
        if producer is None:
            return None
        if producer is None:
            return None
        if payload_type == producer.spec.rtx_payload_type:
            if producer.spec.rtx_ssrc is None:
                producer.spec = _with(producer.spec, rtx_ssrc=ssrc)
        elif payload_type == producer.spec.payload_type and producer.ssrc is None:
            producer.ssrc = ssrc
            producer.spec = _with(producer.spec, ssrc=ssrc)
        else:
            return None
        self.by_ssrc[ssrc] = producer
        return producer

    def _on_rtcp(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        for packet in glue.parse_rtcp(data):
            if glue.is_rtcp_sr(packet):
                producer = self.by_ssrc.get(packet.ssrc)
                if producer is not None and producer.ssrc == packet.ssrc:
                    info = packet.sender_info
                    producer.on_sender_report(info.ntp_timestamp, info.rtp_timestamp)

    def tick(self, rounds: int) -> None:
        producers = list(self.by_mid.values())
        for producer in producers:
            producer.tick()
        if rounds % 10 == 0 and producers and self.connected:
            blocks = [p.stats.report_block(p.ssrc) for p in producers if p.ssrc is not None and p.stats.received]
            if blocks:
                self._send_rtcp(rtcp.receiver_report(self.feedback_ssrc, blocks))
            for kind in ("camera", "screen"):
                ssrcs = [p.ssrc for p in producers if p.spec.source == kind and p.ssrc is not None]
                if ssrcs:
                    self._send_rtcp(rtcp.remb(self.feedback_ssrc, self.bitrate_caps[kind], ssrcs))


def _one_byte_id(ext_id: int) -> int:
    """A header-extension id the SFU can write in the one-byte form (RFC 8285), else 0: not sent."""
    return ext_id if 1 <= ext_id <= 14 else 0


def _with(spec: ProducerSpec, **changes: Any) -> ProducerSpec:
    return dataclasses.replace(spec, **changes)


class RecvTransport(Transport):
    """A member's subscribing connection: a pool of slots the SFU offers and re-points."""

    def __init__(self, transport_id: str, ice_servers: list[dict[str, Any]]) -> None:
        super().__init__(transport_id, ice_servers)
        self.slots: list[Slot] = []
        self.paused = False  # nothing is forwarded to this subscriber
        self.revision = 0
        self.pending_revision: int | None = None
        self.sink = glue.SrtpSender()  # sends nothing until the answer is applied (accept_answer)
        self._send_rtcp: glue.SrtpSender | None = None  # sender reports (tick), once negotiated

    def free_slot(self, kind: str) -> Slot | None:
        for slot in self.slots:
            if slot.kind == kind and slot.free:
                return slot
        return None

    def add_slot(self, kind: str) -> Slot:
        transceiver = self.pc.addTransceiver(kind, direction="sendonly")
        glue.park_sender(transceiver)
        slot = Slot(mid="", kind=kind, handle=transceiver)
        self.slots.append(slot)
        return slot

    def grow(self, kind: str) -> Slot:
        """Add a block of free slots of ``kind`` (a third more, 4 at least) and return the first.

        Each new m-line costs every subscriber a renegotiation (at 45 members, ~50 ms of server CPU
        each for aiortc's offer and answer); slots in reserve take the next arrivals with a slot
        table message only, so a sitting of N members renegotiates O(log N) times, not N times.
        """
        have = sum(1 for slot in self.slots if slot.kind == kind)
        added = [self.add_slot(kind) for _ in range(max(SLOT_BLOCK_MIN, have // 3))]
        return added[0]

    def negotiated_slots(self) -> list[Slot]:
        """The slots the subscriber knows of (in an offer it answered, or is answering)."""
        return [slot for slot in self.slots if slot.mid]

    def on_connected(self) -> None:
        """Media can flow now: consumers waiting for a keyframe ask for one at once."""
        for slot in self.slots:
            consumer = slot.consumer
            if consumer is not None and consumer.waiting_sync and consumer.writer is not None and slot.kind == "video":
                consumer.producer.request_keyframe()

    @property
    def send(self) -> glue.SrtpSender:
        """What consumers send with: ``send(packet) -> bool``, or packets built in its buffer."""
        return self.sink

    @property
    def downstream_drop(self) -> Callable[[], bool] | None:
        """Loss injection (tests): when it returns True a packet is dropped, yet counted as sent."""
        return self.sink.drop

    @downstream_drop.setter
    def downstream_drop(self, drop: Callable[[], bool] | None) -> None:
        self.sink.drop = drop

    async def create_offer(self, stream_ids: dict[Slot, tuple[str, str]]) -> tuple[str, list[Slot]]:
        """A new offer; ``stream_ids`` gives each busy slot's msid.

        Returns the SDP and the slots it describes, taken at once after the offer
        is set: a slot added meanwhile has no mid yet and waits for the next offer.
        """
        for slot, (stream_id, track_id) in stream_ids.items():
            glue.set_stream_id(slot.handle, stream_id, track_id)
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        offered = [slot for slot in self.slots if slot.handle.mid is not None]
        for slot in offered:
            slot.mid = slot.handle.mid
        self.revision += 1
        self.pending_revision = self.revision
        return as_announced(self.pc.localDescription.sdp), offered

    async def accept_answer(self, revision: int, sdp: str) -> None:
        if revision != self.pending_revision:
            raise NegotiationError("bad_message", f"answer for revision {revision}, expected {self.pending_revision}")
        try:
            lines = glue.describe_sdp(sdp)  # refused before it changes anything: the client may answer again
        except ValueError as exc:
            raise NegotiationError("bad_sdp", str(exc)) from exc
        bad = next((line for line in lines if any(not 1 <= i <= 14 for i in line.extensions.values())), None)
        if bad is not None:
            raise NegotiationError("bad_sdp", f"m-line {bad.mid}: header extension ids must be 1 to 14, as offered")
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=drop_unusable_candidates(sdp), type="answer"))
        except Exception as exc:
            raise NegotiationError("bad_sdp", f"answer refused: {exc}") from exc
        self.pending_revision = None
        self.slim_pending = True
        self._configure_slots()
        if self.connected:  # new slots on a live connection: their consumers need a keyframe now
            self.on_connected()

    def _configure_slots(self) -> None:
        """After negotiation: each slot's SSRC, payload type per codec and extension ids; the sender."""
        for slot in self.slots:
            transceiver = slot.handle
            codecs = negotiated_payload_types(glue.negotiated_codecs(transceiver))
            if not codecs:
                continue
            ext = glue.negotiated_extensions(transceiver)
            uris = (EXT_MID, EXT_ABS_SEND_TIME, EXT_AUDIO_LEVEL)
            ids = ExtensionIds(*(_one_byte_id(ext.get(uri, 0)) for uri in uris))
            payload_type, clock_rate = next(iter(codecs.values()))
            payload_types = {name: pt for name, (pt, _) in codecs.items()}
            try:
                slot.configure(glue.sender_ssrc(transceiver), payload_type, ids, clock_rate, payload_types)
            except ValueError as exc:
                raise NegotiationError("bad_sdp", f"answer unusable for m-line {slot.mid}: {exc}") from exc
            if not slot.hooked:
                glue.hook_sender_rtcp(transceiver, slot.on_rtcp)
                slot.hooked = True
        transceivers = self.pc.getTransceivers()
        if transceivers:
            dtls = glue.dtls_of(transceivers[0])
            self.sink.attach(dtls)
            dtls.rtcp_tap = self._on_rtcp
            if self._send_rtcp is None:
                self._send_rtcp = glue.make_sender(dtls, rtcp=True)
        self._start_ticking()

    def _on_rtcp(self, data: bytes) -> None:
        """Standard FIRs name their target in the FCI, which aiortc does not route: do it here."""
        self.last_activity = time.monotonic()  # a live subscriber sends receiver reports every second or so
        for packet in glue.parse_rtcp(data):
            for ssrc in glue.fir_targets(packet):
                for slot in self.slots:
                    if slot.writer is not None and slot.writer.ssrc == ssrc:
                        slot.on_rtcp("pli", None)

    def tick(self, rounds: int) -> None:
        """Every second: a sender report for each slot that forwards media (lip-sync, RTT)."""
        if rounds % 10 != 0 or self._send_rtcp is None:
            return
        reports = []
        for slot in self.slots:
            consumer = slot.consumer
            if consumer is not None and consumer.active and slot.writer is not None:
                sr = consumer.translated_sr()
                if sr is not None:
                    reports.append((slot.writer.ssrc, *sr))
        if reports:
            cname = glue.sender_cname(self.slots[0].handle)
            for packet in rtcp.sender_reports(reports, cname):
                self._send_rtcp(packet)

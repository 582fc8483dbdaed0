"""A Consumer: one producer's media sent on one slot of a subscriber's connection.

A :class:`Slot` is an m-line of the subscribing peer connection: it owns the
outgoing SSRC and the continuity of what it sends (sequence numbers, timestamps,
VP8 picture ids), because a slot is re-pointed from one producer to another
without renegotiating its SSRC. Each rewrite below keeps the subscriber's view
gapless across packets the SFU drops on purpose.

A slot may have negotiated several codecs (VP8 and H.264): one writer per codec,
same SSRC, each with its payload type. A consumer takes the writer of its
producer's codec when it is made and after each negotiation, never per packet;
when the slot has none (Firefox without OpenH264, an H.264 producer) it sends
nothing and says so (``codec_missing``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .rtp import ExtensionIds, LegWriter, RtpView, ScratchSink
from .vp8 import Vp8Descriptor, patch_descriptor, rewrite_descriptor

if TYPE_CHECKING:
    from .producer import Producer

SENT_RING = 512


class Slot:
    """One outgoing m-line and the continuity state of what it has sent."""

    def __init__(self, mid: str, kind: str, handle: Any) -> None:
        self.mid = mid
        self.kind = kind
        self.handle = handle  # the aiortc transceiver, opaque here
        self.consumer: Consumer | None = None
        self.writer: LegWriter | None = None  # the first negotiated codec's: set once the slot can send
        self.writers: dict[str, LegWriter] | None = None  # codec name -> writer; None: ``writer`` for any codec
        self.clock_rate = 90000 if kind == "video" else 48000
        self.sent_any = False
        self.last_seq = random.randrange(0, 0x8000)
        self.last_ts = random.randrange(0, 0x7FFFFFFF)
        self.last_time = 0.0
        self.last_picture_id = -1
        self.last_tl0 = -1
        self.hooked = False  # the subscriber's RTCP about this m-line reaches on_rtcp

    def configure(
        self, ssrc: int, payload_type: int, ids: ExtensionIds, clock_rate: int, codecs: Mapping[str, int] | None = None
    ) -> None:
        """Set what the slot sends with: ``codecs`` maps each negotiated codec name ("vp8", "h264",
        "opus") to its payload type; without it ``payload_type`` serves whatever the producer's codec
        (a tap to a local worker, which is told the codec apart)."""
        audio = self.kind == "audio"
        self.writer = writer = LegWriter(ssrc, payload_type, self.mid, ids, audio)
        if codecs is None:
            self.writers = None
        else:
            self.writers = {
                name: writer if pt == payload_type else LegWriter(ssrc, pt, self.mid, ids, audio)
                for name, pt in codecs.items()
            }
        self.clock_rate = clock_rate
        if self.consumer is not None:
            self.consumer.bind()

    def writer_for(self, codec: str) -> LegWriter | None:
        """The writer for media in ``codec``; None if not negotiated (yet, or at all)."""
        if self.writers is None:
            return self.writer
        return self.writers.get(codec)

    def on_rtcp(self, kind: str, value: Any) -> None:
        """Feedback from the subscriber about this slot goes to its current consumer."""
        if self.consumer is not None:
            self.consumer.on_rtcp(kind, value)

    @property
    def free(self) -> bool:
        return self.consumer is None


class Consumer:
    """Forwards one producer on one slot, rewriting SSRC, PT, seq, ts and extensions.

    ``send`` takes each packet of the leg; a :class:`~sfu.rtp.ScratchSink` (a subscriber's
    SRTP sender) gets them built in place in its buffer instead.

    The producer calls only its *active* consumers (not paused, not closed, a writer for its
    codec): a paused consumer costs nothing per packet. Pause and resume with
    :meth:`set_paused` (or by setting ``paused``), which keeps the producer's list right.
    """

    def __init__(self, consumer_id: str, producer: Producer, slot: Slot, send: Callable[[bytes], bool]) -> None:
        self.id = consumer_id
        self.producer = producer
        self.slot = slot
        self._send = send
        self._sink = send if isinstance(send, ScratchSink) else None
        self.closed = False
        self._paused = False
        self.waiting_sync = True
        self.seq_offset = 0
        self.ts_offset = 0
        # Input seqs older than `floor` are late packets from before the last sync: dropped.
        self.floor = 0
        self.highest_in = 0
        # Which input seq each recent output seq carried: NACKs are answered only
        # for what this leg really sent (never media dropped while muted).
        self._sent: list[int] = [-1] * SENT_RING
        self.picture_id_offset = 0
        self.tl0_offset = 0
        self.packets_out = 0
        self.bytes_out = 0
        self.retransmits = 0
        self.send_failures = 0  # sends refused once the leg was up (metrics)
        self.fraction_lost = 0
        self.remb: int | None = None
        self.on_close: list[Callable[[Consumer], None]] = []
        self.writer: LegWriter | None = None
        self.codec_missing = False  # the slot is negotiated but not in this producer's codec: nothing is sent
        slot.consumer = self
        producer.consumers.add(self)
        self.bind()

    def bind(self) -> None:
        """Take the slot's writer for the producer's codec (at creation and after each negotiation)."""
        writer = self.slot.writer_for(self.producer.spec.codec)
        if writer is None:
            self.waiting_sync = True  # if the codec comes back, start again on a keyframe
        self.writer = writer
        self.codec_missing = writer is None and self.slot.writer is not None
        self.producer.refresh_active()

    @property
    def paused(self) -> bool:
        return self._paused

    @paused.setter
    def paused(self, paused: bool) -> None:
        self.set_paused(paused)

    def set_paused(self, paused: bool) -> None:
        """Stop (or restart) forwarding on this leg. After a pause, :meth:`resync` before media flows again."""
        if paused != self._paused:
            self._paused = paused
            self.producer.refresh_active()

    def hold(self, held: bool) -> None:
        """Pause or resume the leg on purpose (a choice of videos, the programme's scene): a
        resumed leg restarts its numbering on the next packet (video: on a keyframe it asks for)."""
        if held != self._paused:
            self.set_paused(held)
            if not held:
                self.resync()

    @property
    def active(self) -> bool:
        """The producer forwards to this consumer (it is not paused, not closed, and has a writer)."""
        return not self._paused and not self.closed and self.writer is not None

    # ------------------------------------------------------------------ forwarding

    def forward(self, view: RtpView, desc: Vp8Descriptor | None, payload: bytes, ast: bytes, now: float) -> None:
        """Send one of the producer's packets on this leg (``payload``: after the RTP header).

        Called by the producer for its active consumers only; ``now`` is ``time.monotonic()``.
        """
        writer = self.writer
        if writer is None:
            return  # not negotiated yet, or the subscriber cannot decode this codec
        slot = self.slot
        if self.waiting_sync:
            if desc is not None and not desc.keyframe:
                self.producer.request_keyframe()
                return
            self._sync(view, desc)
        in_seq = view.sequence
        ahead = (in_seq - self.floor) & 0xFFFF
        if ahead >= 0x8000:
            return  # older than the sync point: its output seq was already used
        if ahead > 0x4000:
            self.floor = (in_seq - 0x2000) & 0xFFFF
        if ((in_seq - self.highest_in) & 0xFFFF) < 0x8000:
            self.highest_in = in_seq
        seq = (in_seq + self.seq_offset) & 0xFFFF
        self._sent[seq % SENT_RING] = (seq << 16) | in_seq
        ts = (view.timestamp + self.ts_offset) & 0xFFFFFFFF
        shifted = False
        if desc is not None:
            shifted = bool(self.picture_id_offset or self.tl0_offset)
            if desc.picture_id is not None:
                slot.last_picture_id = (desc.picture_id - self.picture_id_offset) & 0x7FFF
            if desc.tl0picidx is not None:
                slot.last_tl0 = (desc.tl0picidx - self.tl0_offset) & 0xFF
        sink = self._sink
        if sink is not None:  # built in place in the sink's buffer: no bytes per leg
            buf = sink.buffer
            at = writer.write_into(buf, view.marker, seq, ts, view.audio_level, view.voice, ast)
            size = at + len(payload)
            if size <= sink.capacity:
                buf[at:size] = payload
                if shifted and desc is not None:
                    patch_descriptor(buf, at, desc, self.picture_id_offset, self.tl0_offset)
                sent = sink.send_built(size)
            else:
                sent = False
        else:
            if shifted and desc is not None:
                payload = rewrite_descriptor(payload, desc, self.picture_id_offset, self.tl0_offset)
            packet = writer.write(view.marker, seq, ts, view.audio_level, view.voice, payload, ast)
            size = len(packet)
            sent = self._send(packet)
        if sent:
            self.packets_out += 1
            self.bytes_out += size
        elif self.packets_out == 0:
            self.waiting_sync = True  # the leg is not up yet: start again on a later keyframe
            return
        else:
            self.send_failures += 1
        if ((seq - slot.last_seq) & 0xFFFF) < 0x8000:
            slot.last_seq = seq
            slot.last_ts = ts
            slot.last_time = now
        slot.sent_any = True

    def _sync(self, view: RtpView, desc: Vp8Descriptor | None) -> None:
        """Start (or restart) the slot's continuous numbering on this packet."""
        slot = self.slot
        self.seq_offset = (slot.last_seq + 1 - view.sequence) & 0xFFFF
        self.floor = self.highest_in = view.sequence
        self._sent = [-1] * SENT_RING
        elapsed = time.monotonic() - slot.last_time if slot.sent_any else 0.0
        ticks = max(1, int(elapsed * slot.clock_rate)) if slot.sent_any else 0
        self.ts_offset = (slot.last_ts + ticks - view.timestamp) & 0xFFFFFFFF
        if desc is not None:
            if desc.picture_id is not None and slot.last_picture_id >= 0:
                self.picture_id_offset = (desc.picture_id - slot.last_picture_id - 1) & 0x7FFF
            else:
                self.picture_id_offset = 0
            if desc.tl0picidx is not None and slot.last_tl0 >= 0:
                self.tl0_offset = (desc.tl0picidx - slot.last_tl0 - 1) & 0xFF
            else:
                self.tl0_offset = 0
        self.waiting_sync = False

    def skip(self, in_seq: int) -> None:
        """The producer dropped input ``in_seq`` (padding): close the gap in the output."""
        if not self.waiting_sync and 0 < ((in_seq - self.highest_in) & 0xFFFF) < 0x8000:
            self.highest_in = in_seq
            self.seq_offset = (self.seq_offset - 1) & 0xFFFF

    def resync(self) -> None:
        """After a gap made on purpose: restart numbering on the next (key)frame."""
        self.waiting_sync = True
        if self.producer.kind == "video":
            self.producer.request_keyframe()

    # ------------------------------------------------------------------ feedback

    def retransmit(self, sequences: list[int]) -> None:
        """Answer a subscriber's NACK from the producer's packet cache."""
        for out_seq in sequences:
            sent = self._sent[out_seq % SENT_RING]
            if sent >> 16 != out_seq:
                continue  # not sent by this leg (dropped on purpose, or too old)
            entry = self.producer.cached(sent & 0xFFFF)
            if entry is None:
                continue
            data, view, desc = entry
            writer = self.writer
            if writer is None:
                return
            payload: bytes | memoryview = memoryview(data)[view.payload_offset : view.payload_end]
            if desc is not None and (self.picture_id_offset or self.tl0_offset):
                payload = rewrite_descriptor(payload, desc, self.picture_id_offset, self.tl0_offset)
            ts = (view.timestamp + self.ts_offset) & 0xFFFFFFFF
            packet = writer.write(view.marker, out_seq, ts, view.audio_level, view.voice, payload)
            if self._send(packet):
                self.retransmits += 1

    def on_rtcp(self, kind: str, value: Any) -> None:
        if kind == "pli":
            self.producer.request_keyframe()
        elif kind == "nack":
            self.retransmit(value)
        elif kind == "rr":
            self.fraction_lost = int(value)
        elif kind == "remb":
            self.remb = int(value)

    def on_publisher_sr(self, ntp: int, rtp_ts: int) -> None:
        """Hook replaced by the transport to translate sender reports."""

    def translated_sr(self) -> tuple[int, int, int, int] | None:
        sr = self.producer.last_sr
        if sr is None or self.waiting_sync:
            return None
        ntp, rtp_ts = sr
        return ntp, (rtp_ts + self.ts_offset) & 0xFFFFFFFF, self.packets_out, self.bytes_out

    # ------------------------------------------------------------------ state

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.producer.consumers.discard(self)
        self.producer.refresh_active()
        if self.slot.consumer is self:
            self.slot.consumer = None
        for callback in self.on_close:
            callback(self)
        self.on_close.clear()

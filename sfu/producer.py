"""A Producer: one incoming track (a member's microphone, camera or screen).

It receives the publisher's decrypted RTP, unwraps RTX, drops padding, keeps a
small packet cache for NACKs, reads the audio level, and hands every packet to
its consumers. It never decodes anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import h264, rtcp, rtp, udp_batch
from .rtp import RtpView, read_packet, unwrap_rtx
from .vp8 import Vp8Descriptor, parse_descriptor

if TYPE_CHECKING:
    from .consumer import Consumer

CACHE_SIZE = 1024
KEYFRAME_REQUEST_INTERVAL = 0.5


@dataclass(frozen=True, slots=True)
class ProducerSpec:
    """What the publishing SDP told us about one track."""

    mid: str
    kind: str  # "audio" | "video"
    source: str  # "mic" | "camera" | "screen"
    payload_type: int
    clock_rate: int
    codec: str  # "opus" | "vp8" | "h264"
    ssrc: int | None
    rtx_ssrc: int | None
    rtx_payload_type: int | None
    stream_id: str
    app_data: dict[str, Any] = field(default_factory=dict)


class Producer:
    def __init__(
        self,
        producer_id: str,
        spec: ProducerSpec,
        mid_ext_id: int,
        audio_level_ext_id: int,
        send_rtcp: Callable[[bytes], None],
        feedback_ssrc: int,
    ) -> None:
        self.id = producer_id
        self.spec = spec
        self.kind = spec.kind
        self.ssrc = spec.ssrc
        self.closed = False
        self.paused = False
        self.consumers: set[Consumer] = set()
        self._active: tuple[Consumer, ...] = ()  # the consumers packets go to (see refresh_active)
        self.mid_ext_id = mid_ext_id
        self.audio_level_ext_id = audio_level_ext_id
        self._send_rtcp = send_rtcp
        self.feedback_ssrc = feedback_ssrc
        self._is_vp8 = spec.codec == "vp8"
        self._is_h264 = spec.codec == "h264"
        # The NACK cache holds bytes and ints only: objects the cyclic GC does not track, so the
        # packets it keeps alive (seconds of video) never push the collector into full collections.
        self._cache_seq: list[int] = [-1] * CACHE_SIZE
        self._cache_data: list[bytes | None] = [None] * CACHE_SIZE
        self.stats = rtcp.ReceiveStats(spec.clock_rate)
        self.nacks = rtcp.NackTracker() if spec.kind == "video" else None
        self.last_sr: tuple[int, int] | None = None  # (ntp, rtp timestamp)
        self._last_keyframe_request = 0.0
        self._keyframe_request_pending = False
        self.audio_level_listener: Callable[[Producer, int], None] | None = None
        self.on_close: list[Callable[[Producer], None]] = []
        # counters for metrics
        self.packets_in = 0
        self.bytes_in = 0
        self.keyframe_requests = 0

    # ------------------------------------------------------------------ receive path

    def receive(self, data: bytes, view: RtpView) -> None:
        """One packet from the publisher (already routed here by SSRC)."""
        if view.ssrc == self.spec.rtx_ssrc and self.ssrc is not None and self.ssrc != view.ssrc:
            unwrapped = unwrap_rtx(data, view, self.ssrc, self.spec.payload_type)
            if unwrapped is None:
                return
            data = unwrapped
            view = read_packet(data, self.mid_ext_id, self.audio_level_ext_id)
        elif view.payload_type != self.spec.payload_type:
            return
        self.packets_in += 1
        self.bytes_in += len(data)
        now = time.monotonic()
        self.stats.add(view.sequence, view.timestamp, now)
        if self.nacks is not None:
            missing = self.nacks.add(view.sequence)
            if missing and self.ssrc is not None:
                self._send_rtcp(rtcp.nack(self.feedback_ssrc, self.ssrc, missing))
        if view.payload_end <= view.payload_offset:
            for consumer in self._active:  # padding only: nothing to forward
                consumer.skip(view.sequence)
            return
        try:
            desc = self._describe(data, view)
        except ValueError:
            return
        at = view.sequence % CACHE_SIZE
        self._cache_seq[at] = view.sequence
        self._cache_data[at] = data
        if self.paused:
            return
        if view.audio_level is not None and self.audio_level_listener is not None:
            self.audio_level_listener(self, view.audio_level)
        active = self._active
        if active:
            # once per packet, shared by every consumer
            payload = data[view.payload_offset : view.payload_end]
            ast = rtp.abs_send_time_now()
            udp_batch.hold()  # legs on the muxed port: one sendmmsg for them all, at the release
            try:
                for consumer in active:
                    consumer.forward(view, desc, payload, ast, now)
            finally:
                udp_batch.release()

    def refresh_active(self) -> None:
        """Rebuild the list of consumers packets go to: called by a consumer when it is added,
        closed, paused, resumed or (re)bound to a writer."""
        self._active = tuple(c for c in self.consumers if c.active)

    def cached(self, seq: int) -> tuple[bytes, RtpView, Vp8Descriptor | None] | None:
        """A cached packet for a retransmission, parsed again (NACKs are rare; forwarding is not)."""
        at = seq % CACHE_SIZE
        data = self._cache_data[at]
        if data is None or self._cache_seq[at] != seq:
            return None
        view = read_packet(data, self.mid_ext_id, self.audio_level_ext_id)
        return data, view, self._describe(data, view)

    def _describe(self, data: bytes, view: RtpView) -> Vp8Descriptor | None:
        """The VP8 descriptor (or H.264 description) of a packet's payload; ValueError if malformed."""
        payload = memoryview(data)[view.payload_offset : view.payload_end]
        if self._is_vp8:
            return parse_descriptor(payload)
        if self._is_h264:
            return h264.describe(payload)
        return None

    def on_sender_report(self, ntp: int, rtp_ts: int) -> None:
        self.last_sr = (ntp, rtp_ts)
        self.stats.on_sender_report(ntp)
        for consumer in self.consumers:
            consumer.on_publisher_sr(ntp, rtp_ts)

    # ------------------------------------------------------------------ feedback upstream

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, at most once per 500 ms (a later request waits)."""
        if self.kind != "video" or self.ssrc is None or self.closed:
            return
        now = time.monotonic()
        if now - self._last_keyframe_request >= KEYFRAME_REQUEST_INTERVAL:
            self._last_keyframe_request = now
            self._keyframe_request_pending = False
            self.keyframe_requests += 1
            self._send_rtcp(rtcp.pli(self.feedback_ssrc, self.ssrc))
        else:
            self._keyframe_request_pending = True

    def tick(self) -> None:
        """Periodic work (every ~100 ms): deferred keyframe requests, NACK retries."""
        if self._keyframe_request_pending:
            self.request_keyframe()
        if self.nacks is not None and self.nacks.missing and self.ssrc is not None:
            due = self.nacks.due()
            if due:
                self._send_rtcp(rtcp.nack(self.feedback_ssrc, self.ssrc, due))

    # ------------------------------------------------------------------ state

    def pause(self) -> None:
        """Drop this track's media at the SFU (server-enforced mute, camera off)."""
        self.paused = True

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            for consumer in self.consumers:
                consumer.resync()
            self.request_keyframe()

    def close(self) -> None:
        """Close the producer and, in cascade, every consumer of it."""
        if self.closed:
            return
        self.closed = True
        for consumer in list(self.consumers):
            consumer.close()
        self.consumers.clear()
        self._active = ()
        for callback in self.on_close:
            callback(self)
        self.on_close.clear()

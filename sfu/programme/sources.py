"""The programme's input: member tracks as plain RTP, decoded only when wanted.

Audio sources each keep a FIFO of mono 48 kHz PCM; ``mix`` plays them out on
the programme's wall clock with a small jitter buffer, trimming a queue that
grows (the sender's clock runs faster than ours) so latency stays bounded.
Opus DTX (a silent microphone sends a packet per 400 ms, the timestamp jumping)
is silence, not loss nor a slow clock: the packet after a jump starts a talkspurt,
one jitter buffer behind, and the queue running dry before it is no underrun.
Only the wanted video source is decoded, from its first keyframe on: VP8 from
members' browsers, H.264 from a WHIP encoder (the chamber's OBS).

Two locks: ``_state_lock`` guards every field read by ``mix``/``video``/``stats``
and is never held while decoding; ``_decode_lock`` serialises ``on_rtp`` calls so
a decoder is only ever used by one thread at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import av
import numpy as np
import numpy.typing as npt

from sfu.programme.depacketize import (
    OPUS_TIME_BASE,
    VIDEO_TIME_BASE,
    DecodeJob,
    DecodeOutcome,
    Decoder,
    DtxTracker,
    EncodedFrame,
    H264Assembler,
    Pcm,
    SequenceTracker,
    Vp8Assembler,
    decode,
    parse_rtp,
)
from sfu.rtp import RtpView

log = logging.getLogger(__name__)

SAMPLES_PER_MS = 48  # 48 kHz
KEYFRAME_REQUEST_INTERVAL_S = 0.5
DRIFT_DEADBAND_SAMPLES = 5 * SAMPLES_PER_MS
MAX_HELD_PICTURES = 30  # pictures waiting for their turn (the video delay): a second at 30 fps
Codec = Literal["opus", "vp8", "h264"]
DECODE_ERRORS = (av.error.FFmpegError, ValueError)


class PcmQueue:
    """A FIFO of mono int16 samples, kept as the chunks pushed."""

    def __init__(self) -> None:
        self._chunks: deque[Pcm] = deque()
        self.size = 0

    def push(self, samples: Pcm) -> None:
        if len(samples):
            self._chunks.append(samples)
            self.size += len(samples)

    def pop(self, count: int) -> Pcm:
        """Remove and return the oldest ``count`` samples, or all of them if fewer are queued."""
        parts: list[Pcm] = []
        needed = count
        while needed and self._chunks:
            head = self._chunks[0]
            if len(head) <= needed:
                parts.append(self._chunks.popleft())
                needed -= len(head)
            else:
                parts.append(head[:needed])
                self._chunks[0] = head[needed:]
                needed = 0
        self.size -= count - needed
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)

    def clear(self) -> None:
        self._chunks.clear()
        self.size = 0


@dataclass(slots=True)
class Source:
    """One member track: its decoder, buffers and counters."""

    ssrc: int
    kind: Literal["audio", "video"]
    codec: Codec
    payload_type: int
    wanted: bool = False
    generation: int = 0  # bumped whenever decoding state is reset: late decode results are discarded
    decoder: Decoder | None = None
    sequence: SequenceTracker = field(default_factory=SequenceTracker)  # audio
    assembler: Vp8Assembler | H264Assembler = field(default_factory=Vp8Assembler)  # video
    queue: PcmQueue = field(default_factory=PcmQueue)
    playing: bool = False
    latest: av.VideoFrame | None = None
    pictures: deque[tuple[float, av.VideoFrame]] = field(default_factory=lambda: deque(maxlen=MAX_HELD_PICTURES))
    last_keyframe_request: float = float("-inf")
    packets: int = 0
    malformed: int = 0
    late: int = 0
    frames_decoded: int = 0
    decode_errors: int = 0
    keyframe_requests: int = 0
    underruns: int = 0
    dropped_samples: int = 0
    resampled_ms: float = 0.0  # played faster or slower than it came, to follow the sender's clock
    dtx: DtxTracker = field(default_factory=DtxTracker)  # audio
    fed: bool = False  # audio: a packet came since the last mix

    def reset(self, wanted: bool) -> None:
        """Start over: no decoder, nothing queued, no picture; the next video frame must be a keyframe."""
        self.wanted = wanted
        self.generation += 1
        self.decoder = None
        self.sequence.reset()
        self.assembler.reset()
        self.queue.clear()
        self.playing = False
        self.dtx.reset()
        self.fed = False
        self.latest = None
        self.pictures.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "codec": self.codec,
            "payload_type": self.payload_type,
            "wanted": self.wanted,
            "packets": self.packets,
            "malformed": self.malformed,
            "lost": self.sequence.lost + self.assembler.sequence.lost,
            "late": self.late,
            "frames_decoded": self.frames_decoded,
            "decode_errors": self.decode_errors,
            "keyframe_requests": self.keyframe_requests,
            "waiting_keyframe": self.kind == "video" and self.wanted and self.assembler.broken,
            "playing": self.playing,
            "underruns": self.underruns,
            "dropped_ms": self.dropped_samples / SAMPLES_PER_MS,
            "resampled_ms": round(self.resampled_ms, 1),
            "dtx_gaps": self.dtx.gaps,
            "queued_ms": self.queue.size / SAMPLES_PER_MS,
        }


class Sources:
    """Every member track the SFU forwards to the programme, and the mix and picture taken from them."""

    def __init__(
        self,
        request_keyframe: Callable[[int], None],
        *,
        jitter_ms: int = 60,
        max_queue_ms: int = 200,
        video_delay_ms: int = 0,
    ) -> None:
        """request_keyframe(ssrc) is called when a video source needs a keyframe, at most every 500 ms per ssrc."""
        self._request_keyframe = request_keyframe
        self._jitter_samples = max(0, jitter_ms) * SAMPLES_PER_MS
        # Pictures are held this long before they are shown: the sound waits in its jitter buffer,
        # the picture must wait as much, or the programme shows lips moving before the words.
        self._video_delay = max(0, video_delay_ms) / 1000
        self._max_samples = max(jitter_ms, max_queue_ms) * SAMPLES_PER_MS
        self._state_lock = threading.Lock()
        self._decode_lock = threading.Lock()
        self._sources: dict[int, Source] = {}
        self._wanted_audio: frozenset[int] = frozenset()
        self._wanted_video: int | None = None
        self._malformed = 0
        self._unknown = 0

    def add(self, ssrc: int, kind: Literal["audio", "video"], codec: Codec, payload_type: int) -> None:
        """Start accepting ``ssrc`` (replacing any source of that ssrc)."""
        source = Source(ssrc, kind, codec, payload_type)
        if codec == "h264":
            source.assembler = H264Assembler()
        with self._state_lock:
            old = self._sources.get(ssrc)
            if old is not None:
                old.reset(False)
            self._sources[ssrc] = source
            source.wanted = self._is_wanted(source)
            request = source.wanted and kind == "video" and self._may_request(source)
        if request:
            self._call_request_keyframe(ssrc)

    def remove(self, ssrc: int) -> None:
        with self._state_lock:
            source = self._sources.pop(ssrc, None)
            if source is not None:
                source.reset(False)

    def set_wanted(self, audio: Iterable[int], video: int | None) -> None:
        """Decode and mix only these; a newly wanted video source asks for a keyframe at once."""
        requests: list[int] = []
        with self._state_lock:
            self._wanted_audio = frozenset(audio)
            self._wanted_video = video
            for source in self._sources.values():
                wanted = self._is_wanted(source)
                if wanted == source.wanted:
                    continue
                source.reset(wanted)
                if wanted and source.kind == "video" and self._may_request(source):
                    requests.append(source.ssrc)
        for ssrc in requests:
            self._call_request_keyframe(ssrc)

    def on_rtp(self, data: bytes) -> None:
        """Take one datagram; anything unusable is counted and ignored."""
        try:
            packet = parse_rtp(data)
        except (ValueError, TypeError):
            with self._state_lock:
                self._malformed += 1
            return
        payload = bytes(data[packet.payload_offset : packet.payload_end])
        with self._decode_lock:
            with self._state_lock:
                source = self._sources.get(packet.ssrc)
                if source is None or source.payload_type != packet.payload_type:
                    self._unknown += 1
                    return
                source.packets += 1
                if source.kind == "audio":
                    job = self._accept_audio(source, packet, payload)
                else:
                    job = self._accept_video(source, packet, payload)
                generation = source.generation
            outcome: DecodeOutcome | Exception = None
            if job is not None:
                try:
                    outcome = decode(*job)
                except DECODE_ERRORS as error:
                    outcome = error
            with self._state_lock:
                if source.generation == generation:
                    self._store(source, outcome)
                request = source.wanted and source.kind == "video" and source.assembler.broken
                request = request and self._may_request(source)
            if request:
                self._call_request_keyframe(source.ssrc)

    def mix(self, samples: int = 960) -> npt.NDArray[np.int16]:
        """The next ``samples`` of the wanted sources summed: int16, mono, 48 kHz."""
        total = np.zeros(samples, np.int32)
        with self._state_lock:
            for source in self._sources.values():
                if source.kind != "audio" or not source.wanted:
                    continue
                if not source.playing:
                    if source.queue.size == 0 or source.queue.size < self._jitter_samples:
                        continue
                    source.playing = True
                excess = source.queue.size - self._jitter_samples
                if excess < 0 and (source.dtx.silent or not source.fed):
                    excess = 0  # draining because nothing was sent (DTX) or yet came: no clock to follow
                source.fed = False
                take = samples + self._clock_correction(excess, samples)
                chunk = source.queue.pop(take)
                if len(chunk) < take:  # the rest is silence; wait for a full jitter buffer again
                    total[: len(chunk)] += chunk[:samples]
                    source.underruns += not source.dtx.silent
                    source.playing = False
                elif take != samples:  # play `take` samples in `samples`' time: the sender's clock, followed
                    source.resampled_ms += abs(take - samples) / SAMPLES_PER_MS
                    positions = np.linspace(0, take - 1, samples)
                    total += np.interp(positions, np.arange(take), chunk).astype(np.int32)
                else:
                    total += chunk
        return np.clip(total, -32768, 32767).astype(np.int16)

    @staticmethod
    def _clock_correction(excess: int, samples: int) -> int:
        """How many samples more (or fewer) than ``samples`` to take from a queue that is ``excess``
        samples above (below) its target: at most 2 % (a third of a semitone, while it lasts), and
        nothing within 5 ms of the target. Browsers' audio clocks drift by well under 1 %."""
        if abs(excess) <= DRIFT_DEADBAND_SAMPLES:
            return 0
        limit = max(1, samples // 50)
        return max(-limit, min(limit, excess // 50))

    def video(self) -> av.VideoFrame | None:
        """The latest picture of the wanted video source, None if none was decoded since it became wanted."""
        with self._state_lock:
            source = self._sources.get(self._wanted_video) if self._wanted_video is not None else None
            if source is None or not source.wanted:
                return None
            shown_before = time.monotonic() - self._video_delay
            while source.pictures and source.pictures[0][0] <= shown_before:
                source.latest = source.pictures.popleft()[1]
            return source.latest

    def stats(self) -> dict[str, Any]:
        """JSON-able counters: ``sources`` keyed by str(ssrc), plus the packets no source took."""
        with self._state_lock:
            return {
                "sources": {str(ssrc): source.stats() for ssrc, source in self._sources.items()},
                "malformed_packets": self._malformed,
                "unknown_packets": self._unknown,
                "wanted_audio": sorted(self._wanted_audio),
                "wanted_video": self._wanted_video,
            }

    # Under _state_lock.

    def _is_wanted(self, source: Source) -> bool:
        if source.kind == "audio":
            return source.ssrc in self._wanted_audio
        return source.ssrc == self._wanted_video

    def _may_request(self, source: Source) -> bool:
        now = time.monotonic()
        if now - source.last_keyframe_request < KEYFRAME_REQUEST_INTERVAL_S:
            return False
        source.last_keyframe_request = now
        source.keyframe_requests += 1
        return True

    def _accept_audio(self, source: Source, packet: RtpView, payload: bytes) -> DecodeJob | None:
        """What to decode for one audio packet, or None to drop it (not wanted, late, empty)."""
        if not source.wanted:
            return None
        missing = source.sequence.advance(packet.sequence)
        if missing is None:
            source.late += 1
            return None
        if not payload:  # an empty packet would put the decoder in draining mode
            return None
        try:
            after_silence = source.dtx.advance(packet.timestamp, missing, payload)
        except ValueError:
            source.malformed += 1
            return None
        source.fed = True
        if after_silence:  # it plays a jitter buffer after it came, as in a steady stream: silence before it
            source.queue.push(np.zeros(max(0, self._jitter_samples - source.dtx.samples - source.queue.size), np.int16))
        if source.decoder is None:
            source.decoder = av.CodecContext.create("opus", "r")
        return source.decoder, payload, packet.timestamp, OPUS_TIME_BASE

    def _accept_video(self, source: Source, packet: RtpView, payload: bytes) -> DecodeJob | None:
        """Assemble a VP8 frame or H.264 access unit; return it for decoding when it is whole and its
        references are intact."""
        if not source.wanted:
            source.assembler.sequence.advance(packet.sequence)
            return None
        try:
            frame: EncodedFrame | None = source.assembler.push(
                packet.sequence, packet.timestamp, packet.marker, payload
            )
        except ValueError:
            source.malformed += 1
            return None
        if frame is None or source.assembler.broken or not frame.data:
            return None
        if source.decoder is None:
            h264 = source.codec == "h264"
            source.decoder = av.CodecContext.create("h264", "r") if h264 else av.CodecContext.create("vp8", "r")
        return source.decoder, frame.data, frame.timestamp, VIDEO_TIME_BASE

    def _store(self, source: Source, outcome: DecodeOutcome | Exception) -> None:
        if isinstance(outcome, Exception):
            source.decode_errors += 1
            if source.kind == "video":  # a fresh decoder from the next keyframe
                source.decoder = None
                source.assembler.broken = True
        elif isinstance(outcome, av.VideoFrame):
            source.frames_decoded += 1
            source.pictures.append((time.monotonic(), outcome))
        elif outcome is not None:
            source.frames_decoded += 1
            source.queue.push(outcome)
            if source.queue.size > self._max_samples:  # the sender's clock runs fast: back to the jitter target
                excess = source.queue.size - self._jitter_samples
                source.queue.pop(excess)
                source.dropped_samples += excess

    # Outside the locks.

    def _call_request_keyframe(self, ssrc: int) -> None:
        try:
            self._request_keyframe(ssrc)
        except Exception:
            log.exception("request_keyframe(%d) failed", ssrc)

"""RTP in, raw media out: the per-packet half of the programme's input.

The programme receives plain RTP from the SFU on loopback. Opus needs no
depacketization (one packet, one frame); VP8 frames are split over several
packets with an RFC 7741 payload descriptor, reassembled here. ``decode``
turns either into mono 48 kHz PCM or a picture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt
from av.audio.codeccontext import AudioCodecContext
from av.video.codeccontext import VideoCodecContext

from sfu.rtp import RtpView, read_packet
from sfu.vp8 import parse_descriptor

OPUS_TIME_BASE = Fraction(1, 48000)
VP8_TIME_BASE = Fraction(1, 90000)

Pcm = npt.NDArray[np.int16]
Decoder = AudioCodecContext | VideoCodecContext
DecodeJob = tuple[Decoder, bytes, int, Fraction]  # decoder, encoded frame, pts, time base
DecodeOutcome = Pcm | av.VideoFrame | None  # None: nothing came out


def parse_rtp(data: bytes) -> RtpView:
    """Read an RTP packet's header generically (CSRCs, extensions, padding); ValueError if malformed."""
    return read_packet(data, 0, 0)  # 0: no extension of interest


@dataclass(slots=True)
class SequenceTracker:
    """Counts lost packets from the 16-bit sequence numbers, and tells late or repeated ones apart."""

    MAX_MISORDER = 100  # further back than this, the sender has restarted its numbering (RFC 3550 A.1)

    expected: int | None = None
    lost: int = 0
    restarts: int = 0

    def advance(self, sequence: int) -> int | None:
        """Take one packet's sequence number: how many packets are missing just before it (a restart
        of the numbering counts as one gap, not as a loss), or None if it is late or a duplicate."""
        if self.expected is None:
            self.expected = (sequence + 1) & 0xFFFF
            return 0
        ahead = (sequence - self.expected) & 0xFFFF
        if ahead >= 0x8000:
            if 0x10000 - ahead <= self.MAX_MISORDER:
                return None
            self.expected = (sequence + 1) & 0xFFFF
            self.restarts += 1
            return 1
        self.expected = (sequence + 1) & 0xFFFF
        self.lost += ahead
        return ahead

    def reset(self) -> None:
        self.expected = None


@dataclass(frozen=True, slots=True)
class Vp8Frame:
    data: bytes
    keyframe: bool
    timestamp: int


@dataclass(slots=True)
class Vp8Assembler:
    """Joins the packets of one VP8 frame: same timestamp, from S=1/PID=0 to the marker, no gap.

    ``push`` returns a complete frame, or None. After any loss (a gap inside a
    frame or between frames) ``broken`` is set: the references are gone and the
    caller should not decode until a keyframe; a keyframe that arrives whole clears it.
    """

    broken: bool = True  # nothing decodable before the first keyframe
    sequence: SequenceTracker = field(default_factory=SequenceTracker)
    _parts: list[bytes] = field(default_factory=list)
    _timestamp: int = 0
    _keyframe: bool = False

    def push(self, sequence: int, timestamp: int, marker: bool, payload: bytes) -> Vp8Frame | None:
        """Add one packet's payload; ValueError on a malformed descriptor (the packet is then ignored)."""
        descriptor = parse_descriptor(payload)
        missing = self.sequence.advance(sequence)
        if missing is None:
            return None
        if missing:
            self._parts.clear()
            self.broken = True
        if descriptor.starts_frame:
            if self._parts:  # the previous frame never ended
                self.broken = True
            self._parts = [payload[descriptor.size :]]
            self._timestamp = timestamp
            self._keyframe = descriptor.keyframe
        elif self._parts and timestamp == self._timestamp:
            self._parts.append(payload[descriptor.size :])
        else:  # the middle of a frame whose start we never saw
            self._parts.clear()
            return None
        if not marker:
            return None
        frame = Vp8Frame(b"".join(self._parts), self._keyframe, self._timestamp)
        self._parts.clear()
        if frame.keyframe:
            self.broken = False
        return frame

    def reset(self) -> None:
        """Forget everything: the next decodable frame is a keyframe."""
        self._parts.clear()
        self.sequence.reset()
        self.broken = True


def to_mono_int16(frame: av.AudioFrame) -> Pcm:
    """One decoded audio frame (float, s16 or s32) as mono int16: channels averaged."""
    array = frame.to_ndarray()
    channels = max(1, frame.layout.nb_channels)
    if not frame.format.is_planar:
        array = array.reshape(-1, channels).T
    if np.issubdtype(array.dtype, np.floating):
        mono = array.astype(np.float32).mean(axis=0) * 32767.0
    else:
        mono = array.astype(np.float32).mean(axis=0) * (1 / 65536 if array.dtype == np.int32 else 1.0)
    pcm: Pcm = np.clip(np.round(mono), -32768, 32767).astype(np.int16)
    return pcm


def decode(decoder: Decoder, data: bytes, pts: int, time_base: Fraction) -> DecodeOutcome:
    """Decode one frame: the mono PCM of an audio packet, or the last picture of a video one."""
    packet = av.Packet(data)
    packet.pts = pts
    packet.time_base = time_base
    if isinstance(decoder, VideoCodecContext):
        pictures = decoder.decode(packet)
        return pictures[-1] if pictures else None
    pcm = [to_mono_int16(frame) for frame in decoder.decode(packet)]
    return np.concatenate(pcm) if pcm else None

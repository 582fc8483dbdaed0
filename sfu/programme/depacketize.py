"""RTP in, raw media out: the per-packet half of the programme's input.

The programme receives plain RTP from the SFU on loopback. Opus needs no
depacketization (one packet, one frame); VP8 frames are split over several
packets with an RFC 7741 payload descriptor, H.264 access units over single
NAL unit, STAP-A and FU-A packets (RFC 6184, packetization mode 1): both are
reassembled here. ``decode`` turns a frame into mono 48 kHz PCM or a picture.
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
VP8_TIME_BASE = VIDEO_TIME_BASE = Fraction(1, 90000)

Pcm = npt.NDArray[np.int16]
Decoder = AudioCodecContext | VideoCodecContext
DecodeJob = tuple[Decoder, bytes, int, Fraction]  # decoder, encoded frame, pts, time base
DecodeOutcome = Pcm | av.VideoFrame | None  # None: nothing came out


def parse_rtp(data: bytes) -> RtpView:
    """Read an RTP packet's header generically (CSRCs, extensions, padding); ValueError if malformed."""
    return read_packet(data, 0, 0)  # 0: no extension of interest


OPUS_FRAME_SAMPLES = (
    (480, 960, 1920, 2880),  # configs 0-11, SILK: 10, 20, 40, 60 ms
    (480, 960),  # configs 12-15, hybrid: 10, 20 ms
    (120, 240, 480, 960),  # configs 16-31, CELT: 2.5, 5, 10, 20 ms
)


def opus_samples(payload: bytes) -> int:
    """How many 48 kHz samples one Opus packet codes, from its TOC byte (RFC 6716 section 3.1): what
    its RTP timestamp advances by. A DTX packet (the TOC alone) counts its frame. ValueError if malformed."""
    if not payload:
        raise ValueError("empty Opus packet")
    config, code = payload[0] >> 3, payload[0] & 3
    sizes = OPUS_FRAME_SAMPLES[0 if config < 12 else 1 if config < 16 else 2]
    frame = sizes[config % len(sizes)]
    if code == 0:
        return frame
    if code in (1, 2):
        return 2 * frame
    if len(payload) < 2:
        raise ValueError("Opus code 3 packet without its frame count")
    return frame * (payload[1] & 0x3F)


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


@dataclass(slots=True)
class DtxTracker:
    """Tells Opus DTX silences from the RTP timestamps: a packet whose timestamp is further on than its
    lost predecessors account for comes after a silence the sender did not send (sequence numbers
    stay contiguous across one). A browser's packet of the TOC byte alone says DTX begins."""

    next_timestamp: int | None = None  # what follows the last packet's samples
    samples: int = 0  # the last packet's
    silent: bool = False  # the sender is in DTX: its last packet came after a silence, or was a TOC alone
    gaps: int = 0

    def advance(self, timestamp: int, missing: int, payload: bytes) -> bool:
        """Take one packet (``missing``: how many were lost just before it): True if a silence came
        before it. ValueError if the payload is not an Opus packet."""
        self.samples = opus_samples(payload)
        silence = 0
        if self.next_timestamp is not None:
            ahead = (timestamp - self.next_timestamp) & 0xFFFFFFFF
            if ahead < 0x80000000:  # else from before the last packet: nothing to follow
                silence = ahead - missing * self.samples
        self.next_timestamp = (timestamp + self.samples) & 0xFFFFFFFF
        after_silence = silence >= self.samples
        self.gaps += after_silence
        self.silent = after_silence or len(payload) <= 2
        return after_silence

    def reset(self) -> None:
        self.next_timestamp = None
        self.silent = False


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One whole video frame: VP8 as is, H.264 as an annex-B access unit."""

    data: bytes
    keyframe: bool
    timestamp: int


Vp8Frame = EncodedFrame


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


NAL_IDR = 5
STAP_A = 24
FU_A = 28
START_CODE = b"\x00\x00\x00\x01"
Fragment = tuple[bool, bool, int, bytes]  # FU-A: start, end, the NAL unit header, the bytes after it


def h264_units(payload: bytes) -> tuple[list[bytes], Fragment | None]:
    """The whole NAL units of one H.264 RTP payload, or the FU-A fragment it carries; ValueError if malformed.

    Packetization mode 1 allows single NAL units (types 1-23), STAP-A (24) and FU-A (28) only.
    """
    if not payload:
        raise ValueError("empty H.264 payload")
    nal_type = payload[0] & 0x1F
    if 1 <= nal_type <= 23:
        return [payload], None
    if nal_type == STAP_A:
        units, pos = [], 1
        while pos < len(payload):
            size = int.from_bytes(payload[pos : pos + 2], "big")
            pos += 2
            if size == 0 or pos + size > len(payload):
                raise ValueError("STAP-A unit size beyond the packet")
            units.append(payload[pos : pos + size])
            pos += size
        if not units:
            raise ValueError("empty STAP-A")
        return units, None
    if nal_type == FU_A:
        if len(payload) < 3:
            raise ValueError("truncated FU-A")
        start, end = bool(payload[1] & 0x80), bool(payload[1] & 0x40)
        if start and end:
            raise ValueError("FU-A with both start and end bits")
        return [], (start, end, (payload[0] & 0xE0) | (payload[1] & 0x1F), payload[2:])
    raise ValueError(f"NAL unit type {nal_type} is not in packetization mode 1")


def _starts_access_unit(units: list[bytes], fragment: Fragment | None) -> bool:
    """True if the packet begins an access unit: SEI, SPS, PPS, delimiter, or a slice with first_mb_in_slice 0."""
    if units:
        nal_type, after = units[0][0] & 0x1F, units[0][1:2]
    elif fragment is not None and fragment[0]:
        nal_type, after = fragment[2] & 0x1F, fragment[3][:1]
    else:
        return False
    return nal_type in (6, 7, 8, 9) or (nal_type in (1, 5) and bool(after) and after[0] & 0x80 != 0)


@dataclass(slots=True)
class H264Assembler:
    """Joins the packets of one H.264 access unit into annex-B: same timestamp, up to the marker.

    A sender that never sets the marker has each access unit end when the next
    timestamp starts. Loss is handled as by :class:`Vp8Assembler`: an access unit
    with a gap is dropped and ``broken`` stays set until a whole one with an IDR slice.
    """

    broken: bool = True
    sequence: SequenceTracker = field(default_factory=SequenceTracker)
    _parts: list[bytes] = field(default_factory=list)  # start codes and NAL units
    _fragment: bytearray | None = None  # the FU-A NAL unit being joined
    _open: bool = False  # some of the access unit at ``_timestamp`` was seen
    _damaged: bool = False
    _timestamp: int = 0
    _keyframe: bool = False

    def push(self, sequence: int, timestamp: int, marker: bool, payload: bytes) -> EncodedFrame | None:
        """Add one packet's payload; ValueError on a malformed one (the packet is then ignored)."""
        units, fragment = h264_units(payload)
        missing = self.sequence.advance(sequence)
        if missing is None:
            return None
        if missing:
            self.broken = True  # the references are gone
            self._damaged = self._damaged or self._open  # the open access unit may have lost its end
        done = self._finish() if self._open and timestamp != self._timestamp else None
        if not self._open:  # after a gap, whole only if this packet is its start
            damaged = bool(missing) and not _starts_access_unit(units, fragment)
            self._open, self._damaged, self._keyframe, self._timestamp = True, damaged, False, timestamp
        for unit in units:
            self._add(unit)
        if fragment is not None:
            self._add_fragment(*fragment)
        if marker and done is None:  # else it ends with the next timestamp: one frame out per packet
            done = self._finish()
        return done

    def _add(self, nal: bytes) -> None:
        self._parts += (START_CODE, nal)
        self._keyframe = self._keyframe or nal[0] & 0x1F == NAL_IDR

    def _add_fragment(self, start: bool, end: bool, header: int, body: bytes) -> None:
        if start:
            if self._fragment is not None:
                self._damaged = True  # the previous fragmented NAL unit never ended
            self._fragment = bytearray((header,))
        elif self._fragment is None:
            self._damaged = True  # the rest of a NAL unit whose start was lost
            return
        self._fragment += body
        if end:
            self._add(bytes(self._fragment))
            self._fragment = None

    def _finish(self) -> EncodedFrame | None:
        damaged = self._damaged or self._fragment is not None
        frame = EncodedFrame(b"".join(self._parts), self._keyframe, self._timestamp)
        self._parts.clear()
        self._fragment = None
        self._open = False
        if damaged:
            self.broken = True
            return None
        if not frame.data:
            return None
        if frame.keyframe:
            self.broken = False
        return frame

    def reset(self) -> None:
        """Forget everything: the next decodable access unit has an IDR slice."""
        self._parts.clear()
        self._fragment = None
        self._open = False
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

"""Pre-encoded media for synthetic members: encoded once with PyAV, then only copied into RTP.

* camera: a VP8 clip (default 640x360, 3 s at 30 fps, a keyframe every second), a
  smooth picture with a moving shape and light sensor noise, the frame number stamped
  in the top-left blocks (``common.stamp_counter``, read back with ``tests.peers.read_stamp``);
  libvpx in real-time mode with libwebrtc's keyframe cap (``max-intra-rate`` 450 %);
* camera off: the same clip size in black (what a disabled ``MediaStreamTrack`` sends);
* voice: Opus 20 ms frames of a 440 Hz tone (libopus, ``application=voip`` like libwebrtc);
* silence: one Opus 20 ms frame of digital silence.

Every frame is split into RTP payload chunks here; the per-member parts (VP8 payload
descriptor with its PictureID, the send-time stamp) are added at send time
(:func:`vp8_payload`, :func:`opus_payload`). The send-time stamp is :data:`STAMP_MAGIC`
and 8 bytes of ``time.monotonic_ns()``: after the last VP8 partition of a frame (the
decoder never reads past the frame's own data) and as Opus padding (RFC 6716 §3.2.5:
a code 3 packet with one frame and 12 bytes of padding, which decoders ignore). The SFU
forwards payloads untouched, so a receiver reads the stamp after decryption.

The encoded clips are cached in memory and on disk (``$TMPDIR/hemicycle-bench-media/``).
"""

from __future__ import annotations

import fractions
import hashlib
import math
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from .common import stamp_counter

STAMP_MAGIC = b"HMCY"
STAMP_SIZE = len(STAMP_MAGIC) + 8
MAX_VP8_CHUNK = 1176  # payload bytes per packet besides the 4-byte descriptor, as libwebrtc's ~1200
OPUS_FRAME = 960  # 20 ms at 48 kHz
VIDEO_CLOCK = 90000
CACHE_FORMAT = 2  # bump when the clip content or layout changes


@dataclass(frozen=True)
class VideoClip:
    """VP8 frames, each as (keyframe?, payload chunks without the descriptor)."""

    frames: list[tuple[bool, list[bytes]]]
    fps: int

    @property
    def bitrate(self) -> float:
        size = sum(len(chunk) for _, chunks in self.frames for chunk in chunks)
        return size * 8 * self.fps / len(self.frames)


@dataclass(frozen=True)
class AudioClip:
    """Opus frames (code 0 packets, 20 ms each) and the audio level of the sound (0..127, -dBov)."""

    frames: list[bytes]
    level: int


@dataclass(frozen=True)
class MediaSet:
    camera: VideoClip
    camera_off: VideoClip
    voice: AudioClip
    silence: AudioClip


_memo: dict[str, MediaSet] = {}


def media_set(width: int = 640, height: int = 360, fps: int = 30, seconds: float = 3.0,
              bitrate: int = 500_000) -> MediaSet:
    """The clips for these parameters: from memory, the disk cache, or encoded now (a few seconds)."""
    key = hashlib.sha256(repr((CACHE_FORMAT, width, height, fps, seconds, bitrate, av.__version__)).encode())
    name = key.hexdigest()[:16]
    if name in _memo:
        return _memo[name]
    path = Path(tempfile.gettempdir()) / "hemicycle-bench-media" / f"{name}.pickle"
    try:
        media = pickle.loads(path.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
        frames = round(fps * seconds)
        media = MediaSet(
            camera=encode_vp8([camera_picture(width, height, i) for i in range(frames)], fps, bitrate),
            camera_off=encode_vp8([np.zeros((height, width, 3), np.uint8)] * fps, fps, bitrate),
            voice=encode_opus(tone(440.0, 50)),
            silence=encode_opus(np.zeros((1, OPUS_FRAME), np.int16)),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(pickle.dumps(media))
        temporary.replace(path)
    _memo[name] = media
    return media


# ---------------------------------------------------------------------------- encoding


def camera_picture(width: int, height: int, index: int) -> np.ndarray:
    """A talking-head-like picture: gradient, a moving ellipse, light noise, the frame number."""
    rng = np.random.default_rng(index)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([60 + xx * 0.15, 80 + yy * 0.2, np.full_like(xx, 120)], -1)
    cx, cy = width / 2 + width / 16 * math.sin(index / 15), height * 0.55 + height / 36 * math.cos(index / 11)
    image[((xx - cx) / (width / 8)) ** 2 + ((yy - cy) / (height / 3.6)) ** 2 < 1] = (200, 160, 140)
    image += rng.normal(0, 3, image.shape)
    picture = np.clip(image, 0, 255).astype(np.uint8)
    stamp_counter(picture, index)
    return picture


def encode_vp8(pictures: list[np.ndarray], fps: int, bitrate: int) -> VideoClip:
    height, width = pictures[0].shape[:2]
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = fractions.Fraction(1, fps)
    encoder.framerate = fps
    encoder.bit_rate = bitrate
    encoder.gop_size = fps
    encoder.options = {
        "deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "error-resilient": "1",
        "auto-alt-ref": "0", "max-intra-rate": "450",
    }  # fmt: skip
    packets: list[av.Packet] = []
    for index, picture in enumerate(pictures):
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        if index % fps == 0:
            frame.pict_type = av.video.frame.PictureType.I
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    if len(packets) != len(pictures) or not packets[0].is_keyframe:
        raise RuntimeError(f"libvpx gave {len(packets)} packets for {len(pictures)} pictures")
    return VideoClip([(p.is_keyframe, split(bytes(p), MAX_VP8_CHUNK)) for p in packets], fps)


def split(data: bytes, limit: int) -> list[bytes]:
    """``data`` in as few chunks of at most ``limit`` bytes as possible, of nearly equal sizes."""
    count = max(1, -(-len(data) // limit))
    size = -(-len(data) // count)
    return [data[i : i + size] for i in range(0, len(data), size)]


def tone(frequency: float, frames: int) -> np.ndarray:
    """``frames`` 20 ms frames of a sine at -10 dBov; shape (frames, 960), int16."""
    t = np.arange(frames * OPUS_FRAME) / 48000
    samples = (0.3 * 32767 * np.sin(2 * math.pi * frequency * t)).astype(np.int16)
    return samples.reshape(frames, OPUS_FRAME)


def encode_opus(frames: np.ndarray) -> AudioClip:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "mono", "s16"
    encoder.bit_rate = 32000
    encoder.time_base = fractions.Fraction(1, 48000)
    encoder.options = {"application": "voip", "vbr": "on"}
    packets: list[av.Packet] = []
    for index, samples in enumerate(frames):
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48000, index * OPUS_FRAME
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    payloads = [bytes(p) for p in packets][: len(frames)]
    if any(p[0] & 0x03 for p in payloads):
        raise RuntimeError("libopus gave a packet that is not one frame (code 0)")
    rms = float(np.sqrt(np.mean(frames.astype(np.float64) ** 2))) / 32768
    level = 127 if rms == 0 else min(127, max(0, round(-20 * math.log10(rms))))
    return AudioClip(payloads, level)


# ---------------------------------------------------------------------------- payloads at send time


def vp8_payload(chunk: bytes, first: bool, picture_id: int, stamp: bytes | None) -> bytes:
    """RFC 7741 descriptor as libwebrtc writes it without temporal layers (X, I with a
    15-bit PictureID; S on the first packet of a frame), the chunk, and the stamp if any."""
    head = bytes((0x90 if first else 0x80, 0x80, 0x80 | (picture_id >> 8 & 0x7F), picture_id & 0xFF))
    return head + chunk + stamp if stamp is not None else head + chunk


def opus_payload(frame: bytes, stamp: bytes) -> bytes:
    """A code 0 Opus packet rewritten as code 3 (one CBR frame) with the stamp as padding."""
    return bytes((frame[0] | 0x03, 0x41, STAMP_SIZE)) + frame[1:] + stamp


def make_stamp(monotonic_ns: int) -> bytes:
    return STAMP_MAGIC + monotonic_ns.to_bytes(8, "big")


def read_stamp_ns(payload: bytes | memoryview) -> int | None:
    """The send time stamped at the end of a payload, or None."""
    if len(payload) < STAMP_SIZE or bytes(payload[-STAMP_SIZE:-8]) != STAMP_MAGIC:
        return None
    return int.from_bytes(payload[-8:], "big")

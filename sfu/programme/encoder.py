"""The programme encoded once: one H.264 encoder, one Opus and one AAC encoder, their packets to every output.

- RTP to the SFU (WebRTC viewers): H.264 and Opus, see packetize.py;
- HLS (the live HLS and the recording): MPEG-TS segments and an EVENT playlist;
- RTMP (optional): FLV to a PeerTube or Owncast instance, through rtmp.py.

Timestamps come from the caller's clock: a video frame's index (1/fps) and an
audio frame's index (20 ms); the outputs derive everything else from them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from av.video.frame import PictureType
from numpy.typing import NDArray

from .packetize import RtpStream
from .rtmp import RtmpPush

SAMPLE_RATE = 48000
AUDIO_FRAME = 960  # 20 ms
AUDIO_TIME_BASE = Fraction(1, SAMPLE_RATE)
RTP_VIDEO_CLOCK = 90000


@dataclass(frozen=True, slots=True)
class EncoderSettings:
    width: int
    height: int
    fps: int
    video_bitrate: int
    opus_bitrate: int = 64000
    aac_bitrate: int = 96000
    keyframe_interval_s: float = 2.0  # HLS segments can only start on one


def h264_encoder(settings: EncoderSettings) -> av.VideoCodecContext:
    """libx264 for live: no B-frames, no lookahead, constrained baseline, periodic keyframes, SPS/PPS in band."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height = settings.width, settings.height
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, settings.fps)
    encoder.framerate = Fraction(settings.fps)
    encoder.bit_rate = settings.video_bitrate
    encoder.gop_size = max(1, round(settings.keyframe_interval_s * settings.fps))
    encoder.max_b_frames = 0
    encoder.profile = "Constrained Baseline"
    encoder.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "forced-idr": "1",  # a requested keyframe is an IDR picture, where a decoder can start
        "maxrate": str(settings.video_bitrate),
        "bufsize": str(settings.video_bitrate),  # a 1 s VBV buffer: no bursts beyond what a viewer's link takes
    }
    encoder.open()
    return encoder


def audio_encoder(
    codec: Literal["libopus", "aac"], bitrate: int, options: dict[str, str] | None = None
) -> av.AudioCodecContext:
    encoder = av.CodecContext.create(codec, "w")
    encoder.sample_rate = SAMPLE_RATE
    encoder.layout = "mono"
    encoder.format = "s16" if codec == "libopus" else "fltp"
    encoder.bit_rate = bitrate
    encoder.time_base = AUDIO_TIME_BASE
    encoder.options = options or {}
    encoder.open()
    return encoder


def pcm_frame(samples: NDArray[np.int16], pts: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    frame.pts = pts
    frame.time_base = AUDIO_TIME_BASE
    return frame


class HlsWriter:
    """MPEG-TS segments and an EVENT playlist that keeps them all: the live HLS, and the recording.

    Segments and the playlist are written to a temporary name and renamed when
    complete, so a killed process leaves only whole segments, all listed.
    """

    def __init__(self, directory: Path, settings: EncoderSettings, segment_s: float) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.container = av.open(
            str(directory / "programme.m3u8"),
            "w",
            format="hls",
            options={
                "hls_time": str(segment_s),
                "hls_playlist_type": "event",
                "hls_segment_filename": str(directory / "seg%05d.ts"),
                "hls_flags": "program_date_time+independent_segments+temp_file",
            },
        )
        self.video = self.container.add_mux_stream("h264", rate=settings.fps, width=settings.width,
                                                   height=settings.height)
        # A stream with its own (idle) AAC context: how the muxer learns the AudioSpecificConfig for ADTS.
        self.audio = self.container.add_stream("aac", rate=SAMPLE_RATE, layout="mono", bit_rate=settings.aac_bitrate)

    def describe(self, started_at: float, **info: object) -> None:
        """Write ``recording.json``: ``started_at`` (POSIX time of the first frame) and ``info``."""
        write_json(self.directory / "recording.json", {"started_at": started_at, **info})

    def write(self, packet: av.Packet[av.stream.Stream], stream: av.stream.Stream) -> None:
        packet.stream = stream
        self.container.mux(packet)

    def close(self) -> None:
        """Write what is buffered and the ``#EXT-X-ENDLIST`` tag."""
        self.container.close()


def write_json(path: Path, value: dict[str, object]) -> None:
    """Write ``path`` whole or not at all."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(value))
    os.replace(temporary, path)


class Encoder:
    """Encodes each programme frame once and hands the packets to RTP, HLS and RTMP."""

    def __init__(
        self,
        settings: EncoderSettings,
        video_rtp: RtpStream,
        audio_rtp: RtpStream,
        send: Callable[[bytes], None],
        hls: HlsWriter | None = None,
        rtmp: RtmpPush | None = None,
    ) -> None:
        self.settings = settings
        self.video_rtp, self.audio_rtp = video_rtp, audio_rtp
        self.send = send
        self.hls, self.rtmp = hls, rtmp
        self.h264 = h264_encoder(settings)
        self.opus = audio_encoder("libopus", settings.opus_bitrate, {"application": "audio", "frame_duration": "20"})
        self.aac = audio_encoder("aac", settings.aac_bitrate)
        self.aac_fifo = av.AudioFifo()
        self.video_frames = 0
        self.keyframes = 0
        self.last_keyframe = -(1 << 30)  # index of the last IDR picture
        self.audio_frames = 0

    def video(self, frame: av.VideoFrame, index: int, keyframe: bool = False) -> None:
        """Encode picture number ``index`` of the programme (an IDR picture if ``keyframe``)."""
        frame.pts = index
        frame.time_base = self.h264.time_base
        frame.pict_type = PictureType.I if keyframe else PictureType.NONE
        self.video_frames += 1
        self._video_packets(self.h264.encode(frame))

    def audio(self, samples: NDArray[np.int16], index: int) -> None:
        """Encode 20 ms of sound number ``index`` (960 mono samples at 48 kHz)."""
        self.audio_frames += 1
        for packet in self.opus.encode(pcm_frame(samples, index * AUDIO_FRAME)):
            self.send(self.audio_rtp.packet(bytes(packet), index * AUDIO_FRAME, False))
        self.aac_fifo.write(pcm_frame(samples, index * AUDIO_FRAME))
        while self.aac_fifo.samples >= self.aac.frame_size:
            self._aac_packets(self.aac.encode(self.aac_fifo.read(self.aac.frame_size)))

    def close(self) -> None:
        """Drain the encoders into the outputs and close them (HLS gets its ENDLIST)."""
        self._video_packets(self.h264.encode(None))
        self._aac_packets(self.aac.encode(None))
        if self.hls is not None:
            self.hls.close()
        if self.rtmp is not None:
            self.rtmp.close()

    def _video_packets(self, packets: list[av.Packet[av.stream.Stream]]) -> None:
        for packet in packets:
            if packet.pts is None:
                continue
            if packet.is_keyframe:
                self.keyframes += 1
                self.last_keyframe = packet.pts
            timestamp = packet.pts * RTP_VIDEO_CLOCK // self.settings.fps
            access_unit = bytes(packet)
            for rtp in self.video_rtp.h264(access_unit, timestamp):
                self.send(rtp)
            if self.rtmp is not None:
                self.rtmp.push("video", access_unit, packet.pts, packet.is_keyframe)
            if self.hls is not None:
                self.hls.write(packet, self.hls.video)

    def _aac_packets(self, packets: list[av.Packet[av.stream.Stream]]) -> None:
        for packet in packets:
            if self.rtmp is not None and packet.pts is not None:
                self.rtmp.push("audio", bytes(packet), packet.pts, True)
            if self.hls is not None:
                self.hls.write(packet, self.hls.audio)

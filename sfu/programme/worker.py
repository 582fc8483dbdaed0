"""The programme's clock: control in, RTP in, one picture and one mix out, on time.

One monotonic clock drives everything: 20 ms of sound at every audio tick, one
picture every 1/fps. Both outputs are stamped from their tick index, so sound
and picture stay in step by construction. When a picture takes too long the
next ones are skipped (counted), never the sound.

Threads: the main thread runs the clock; one thread reads stdin (control), one
reads the UDP socket (members' RTP to :class:`Sources`, PLI/FIR for our video).
"""

from __future__ import annotations

import json
import os
import queue
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .compositor import Compositor
from .control import ControlMessage, Keyframe, Scene, SourceAdded, SourceRemoved, Stop, parse_line
from .encoder import AUDIO_FRAME, SAMPLE_RATE, Encoder, EncoderSettings, HlsWriter
from .packetize import RtpStream
from .rtmp import RtmpPush
from .sources import Sources

AUDIO_TICK_S = AUDIO_FRAME / SAMPLE_RATE
STATS_INTERVAL_S = 5.0
JITTER_MS = 60  # each member's sound is played out after this much is queued
SENDER_REPORT_S = 1.0
KEYFRAME_SPACING_S = 0.5  # requested keyframes closer than this wait (a storm of PLIs is one IDR)
RTCP_PSFB, FMT_PLI, FMT_FIR = 206, 1, 4


@dataclass(frozen=True, slots=True)
class Config:
    peer: tuple[str, int]
    sitting: str
    bind: str
    encoder: EncoderSettings
    video_pt: int
    video_ssrc: int
    audio_pt: int
    audio_ssrc: int
    hls_dir: Path | None
    segment_s: float
    rtmp: str | None


def log(message: str) -> None:
    print(f"programme: {message}", file=sys.stderr, flush=True)


def percentile(values: deque[float], q: float) -> float:
    return round(float(np.percentile(np.fromiter(values, float), q)), 2) if values else 0.0


class Programme:
    def __init__(self, config: Config, sock: socket.socket, out: TextIO, control_fd: int = 0) -> None:
        self.config = config
        self.sock = sock
        self.out = out
        self.control_fd = control_fd
        self.fps = config.encoder.fps
        # pictures wait as long as the sound does in its jitter buffer: lips and words together
        self.sources = Sources(self._request_source_keyframe, jitter_ms=JITTER_MS, video_delay_ms=JITTER_MS)
        self.compositor = Compositor(config.encoder.width, config.encoder.height)
        self.scene = Scene(title=config.sitting, audio=(), video=None)
        self.control: queue.Queue[ControlMessage] = queue.Queue()
        self.stopping = threading.Event()
        self.keyframe_requested = False
        self.hls = HlsWriter(config.hls_dir, config.encoder, config.segment_s) if config.hls_dir else None
        rtmp = None
        if config.rtmp:
            settings = config.encoder
            rtmp = RtmpPush(config.rtmp, settings.width, settings.height, settings.fps, settings.aac_bitrate)
        self.encoder = Encoder(config.encoder, RtpStream(config.video_pt, config.video_ssrc),
                               RtpStream(config.audio_pt, config.audio_ssrc), self._send, self.hls, rtmp)
        self.audio_index = self.video_index = 0
        self.video_skipped = 0
        self.errors = 0
        self.garbage = 0
        self.keyframe_requests = 0
        self.encode_ms: deque[float] = deque(maxlen=int(STATS_INTERVAL_S * self.fps))
        self.compose_ms: deque[float] = deque(maxlen=int(STATS_INTERVAL_S * self.fps))

    # ------------------------------------------------------------------ the clock

    def run(self) -> None:
        """Announce the UDP port, then run until ``stop``, stdin's end or :meth:`stop`; finish the outputs."""
        threading.Thread(target=self._read_control, name="programme-control", daemon=True).start()
        threading.Thread(target=self._receive, name="programme-rtp", daemon=True).start()
        self._emit({"type": "ready", "port": self.sock.getsockname()[1]})
        started_at, start = time.time(), time.monotonic()
        if self.hls is not None:
            settings = self.config.encoder
            self.hls.describe(started_at, sitting=self.config.sitting, width=settings.width, height=settings.height,
                              fps=settings.fps)
        next_stats = STATS_INTERVAL_S
        next_report = SENDER_REPORT_S
        while not self.stopping.is_set():
            self._apply_control()
            now = time.monotonic() - start
            if now >= next_report:
                next_report += SENDER_REPORT_S
                self._sender_reports(started_at + now, now)
            while self.audio_index * AUDIO_TICK_S <= now:  # sound is never skipped
                self._guarded(self._audio)
            if self.video_index <= now * self.fps:
                due = int(now * self.fps)
                if due > self.video_index:
                    self.video_skipped += due - self.video_index
                    self.video_index = due
                self._guarded(self._video)
            if now >= next_stats:
                next_stats += STATS_INTERVAL_S
                self._emit(self.stats(now))
            deadline = min(self.audio_index * AUDIO_TICK_S, self.video_index / self.fps)
            self.stopping.wait(max(0.0, deadline - (time.monotonic() - start)))
        self.encoder.close()
        self._emit(self.stats(time.monotonic() - start))

    def _sender_reports(self, wall_time: float, elapsed: float) -> None:
        """One SR per stream, both from the one clock: browsers lip-sync the programme by them."""
        video, audio = self.encoder.video_rtp, self.encoder.audio_rtp
        self._send(video.sender_report(wall_time, round(elapsed * 90000)))
        self._send(audio.sender_report(wall_time, round(elapsed * 48000)))

    def stop(self) -> None:
        """Finish at the next tick (SIGTERM)."""
        self.stopping.set()

    def _audio(self) -> None:
        index, self.audio_index = self.audio_index, self.audio_index + 1
        self.encoder.audio(self.sources.mix(AUDIO_FRAME), index)

    def _video(self) -> None:
        index, self.video_index = self.video_index, self.video_index + 1
        began = time.perf_counter()
        frame = self.compositor.compose(self.sources.video() if self.scene.shows_video else None, self.scene)
        composed = time.perf_counter()
        spacing = (index - self.encoder.last_keyframe) / self.fps
        keyframe = self.keyframe_requested and spacing >= KEYFRAME_SPACING_S
        if keyframe:
            self.keyframe_requested = False
        self.encoder.video(frame, index, keyframe)
        self.compose_ms.append((composed - began) * 1000)
        self.encode_ms.append((time.perf_counter() - composed) * 1000)

    def _guarded(self, step: Callable[[], None]) -> None:
        """One tick's work; an error costs that frame, not the programme (logged sparingly)."""
        try:
            step()
        except Exception as error:
            self.errors += 1
            if self.errors <= 10 or self.errors % 1000 == 0:
                log(f"error #{self.errors} in {step.__name__}: {error!r}")

    def stats(self, elapsed: float) -> dict[str, Any]:
        """Counters and timings, one JSON line on stdout every 5 s."""
        audio_s, video_s = self.audio_index * AUDIO_TICK_S, self.video_index / self.fps
        expected = (int(elapsed / AUDIO_TICK_S) + 1) * AUDIO_TICK_S - (int(elapsed * self.fps) + 1) / self.fps
        return {
            "type": "stats",
            "elapsed_s": round(elapsed, 3),
            "video_frames": self.encoder.video_frames,
            "video_skipped": self.video_skipped,
            "keyframes": self.encoder.keyframes,
            "keyframe_requests": self.keyframe_requests,
            "audio_frames": self.encoder.audio_frames,
            "av_offset_ms": round((audio_s - video_s - expected) * 1000, 2),
            "compose_ms_p50": percentile(self.compose_ms, 50),
            "encode_ms_p50": percentile(self.encode_ms, 50),
            "encode_ms_p99": percentile(self.encode_ms, 99),
            "rtp_packets": self.encoder.video_rtp.packets + self.encoder.audio_rtp.packets,
            "rtp_octets": self.encoder.video_rtp.octets + self.encoder.audio_rtp.octets,
            "rtmp_dropped": self.encoder.rtmp.dropped if self.encoder.rtmp is not None else None,
            "errors": self.errors,
            "garbage_datagrams": self.garbage,
            "sources": self.sources.stats(),
            "cpu_s": round(time.process_time(), 3),
        }

    def _emit(self, message: dict[str, Any]) -> None:
        try:
            self.out.write(json.dumps(message) + "\n")
            self.out.flush()
        except OSError:  # the parent is gone: stdin's end will stop us, after the HLS is finished
            pass

    # ------------------------------------------------------------------ control (stdin)

    def _read_control(self) -> None:
        """Parse stdin's lines into the control queue; its end is a stop.

        Plain ``os.read`` on the descriptor: a daemon thread blocked in a buffered
        ``sys.stdin`` read would abort the interpreter's shutdown.
        """
        pending = b""
        while chunk := os.read(self.control_fd, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                self._control_line(line)
        self._control_line(pending)
        self.control.put(Stop(type="stop"))  # the parent is gone, or done with us

    def _control_line(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            self.control.put(parse_line(line))
        except ValueError as error:
            log(f"ignored control line {line[:200]!r}: {str(error)[:300]}")

    def _apply_control(self) -> None:
        while True:
            try:
                message = self.control.get_nowait()
            except queue.Empty:
                return
            if isinstance(message, SourceAdded):
                self.sources.add(message.ssrc, message.kind, message.codec, message.payload_type)
            elif isinstance(message, SourceRemoved):
                self.sources.remove(message.ssrc)
            elif isinstance(message, Scene):
                self.scene = message
                self.sources.set_wanted(message.audio, message.video if message.shows_video else None)
            elif isinstance(message, Keyframe):
                self.keyframe_requested = True
            elif isinstance(message, Stop):
                self.stopping.set()

    # ------------------------------------------------------------------ UDP

    def _send(self, packet: bytes) -> None:
        try:
            self.sock.sendto(packet, self.config.peer)
        except OSError:  # a full buffer or the SFU gone for a moment: RTP tolerates loss
            pass

    def _request_source_keyframe(self, ssrc: int) -> None:
        self._send(struct.pack("!BBHII", 0x81, RTCP_PSFB, 2, 1, ssrc))  # PLI (sender SSRC 1)

    def _receive(self) -> None:
        """Members' RTP to the sources; PLI or FIR for our video SSRC asks for a keyframe; the rest is counted."""
        while not self.stopping.is_set():
            try:
                data, address = self.sock.recvfrom(65536)
            except OSError:  # the timeout, or the socket closed at exit
                continue
            if address[:2] != self.config.peer or len(data) < 12 or data[0] >> 6 != 2:
                self.garbage += 1
            elif 192 <= data[1] <= 223:
                self._on_rtcp(data)
            elif 96 <= data[1] & 0x7F <= 127:
                self.sources.on_rtp(data)
            else:
                self.garbage += 1

    def _on_rtcp(self, data: bytes) -> None:
        position = 0
        while position + 12 <= len(data):
            fmt, packet_type = data[position] & 0x1F, data[position + 1]
            media = int.from_bytes(data[position + 8 : position + 12], "big")
            if packet_type == RTCP_PSFB and fmt == FMT_FIR and position + 16 <= len(data):
                media = int.from_bytes(data[position + 12 : position + 16], "big")  # FIR names it in its FCI
            if packet_type == RTCP_PSFB and fmt in (FMT_PLI, FMT_FIR) and media == self.config.video_ssrc:
                self.keyframe_requests += 1
                self.keyframe_requested = True
            position += (int.from_bytes(data[position + 2 : position + 4], "big") + 1) * 4

"""The sending side of synthetic members: pre-built RTP written straight into SRTP.

Each of a member's streams (microphone, camera) is a :class:`Sender` that, when the
:class:`Pacer` says so, takes the next pre-encoded frame (bench/synthetic_media.py),
wraps it in RTP as Chromium would (its payload types and one-byte header extensions:
audio level with the V bit, abs-send-time, MID, whichever were negotiated), numbers it
for this member (SSRC, sequence, timestamp, VP8 PictureID; continuous across the loops of
the clip), stamps the send time in the payload, and hands it to
``sfu.aiortc_glue.make_sender``: SRTP-protected with the connection's keys and sent on
the nominated ICE pair's socket, without aiortc's encoder or packetizer.

One :class:`Pacer` task serves every stream of the process; members start at random
phases, like real people.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import struct
import time
from collections.abc import Callable
from typing import Any

from aiortc.clock import current_ntp_time

from sfu import aiortc_glue as glue
from sfu.rtp import EXT_ABS_SEND_TIME, EXT_AUDIO_LEVEL, EXT_MID

from .synthetic_media import OPUS_FRAME, VIDEO_CLOCK, AudioClip, MediaSet, make_stamp, opus_payload, vp8_payload

DTX_INTERVAL = 0.4  # a silent Opus encoder with DTX sends one (comfort-noise) frame per 400 ms
LATE_MS = 10.0  # a tick later than this counts as late (the load generator is falling behind)
SR_EVERY = 1.0  # seconds between updates of the sender report values


class RtpWriter:
    """The RTP header of one stream: a template with this stream's SSRC and extension block."""

    def __init__(self, ssrc: int, payload_type: int, extensions: dict[str, int], mid: str, audio: bool) -> None:
        self.payload_type = payload_type
        elements: list[bytes] = []
        at: dict[str, int] = {}
        level_id = extensions.get(EXT_AUDIO_LEVEL, 0) if audio else 0
        for uri, ext_id, value in (
            (EXT_AUDIO_LEVEL, level_id, b"\x00"),
            (EXT_ABS_SEND_TIME, extensions.get(EXT_ABS_SEND_TIME, 0), b"\x00\x00\x00"),
            (EXT_MID, extensions.get(EXT_MID, 0), mid.encode()),
        ):
            if ext_id:
                at[uri] = 16 + sum(map(len, elements)) + 1
                elements.append(bytes([ext_id << 4 | (len(value) - 1)]) + value)
        block = b"".join(elements)
        block += b"\x00" * (-len(block) % 4)
        first = 0x90 if block else 0x80
        extension = struct.pack("!HH", 0xBEDE, len(block) // 4) + block if block else b""
        self.template = struct.pack("!BBHII", first, payload_type, 0, 0, ssrc) + extension
        self.level_at = at.get(EXT_AUDIO_LEVEL, 0)
        self.ast_at = at.get(EXT_ABS_SEND_TIME, 0)

    def packet(self, marker: bool, seq: int, ts: int, payload: bytes, now_ns: int, level: int = 127,
               voice: bool = False) -> bytes:
        header = bytearray(self.template)
        struct.pack_into("!BHI", header, 1, (0x80 if marker else 0) | self.payload_type, seq, ts)
        if self.ast_at:
            value = (now_ns << 18) // 1_000_000_000 & 0xFFFFFF  # 6.18 fixed-point seconds
            header[self.ast_at : self.ast_at + 3] = value.to_bytes(3, "big")
        if self.level_at:
            header[self.level_at] = (0x80 if voice else 0) | level
        return bytes(header) + payload


class Sender:
    """One outgoing stream of a member; :meth:`tick` sends what is due and returns the next period."""

    def __init__(self, writer: RtpWriter, send: Callable[[bytes], bool], transceiver: Any) -> None:
        self.writer = writer
        self._send = send
        self.transceiver = transceiver
        self.seq = random.randrange(0x10000)
        self.ts = random.randrange(0x100000000)
        self.index = 0  # frames taken from the clip so far
        self.sent = 0
        self.octets = 0
        self.closed = False
        self._last_report = 0.0

    def emit(self, marker: bool, payload: bytes, now_ns: int, level: int = 127, voice: bool = False) -> None:
        packet = self.writer.packet(marker, self.seq, self.ts, payload, now_ns, level, voice)
        if self._send(packet):
            self.sent += 1
            self.octets += len(packet) - len(self.writer.template)
        self.seq = (self.seq + 1) & 0xFFFF

    def report(self, now: float) -> None:
        """Keep aiortc's periodic sender report truthful (the SFU translates it for lip-sync)."""
        if now - self._last_report >= SR_EVERY:
            self._last_report = now
            glue.set_sender_report(self.transceiver, current_ntp_time(), self.ts, self.sent, self.octets)

    def tick(self, now_ns: int) -> float:
        raise NotImplementedError


class AudioSender(Sender):
    """Opus every 20 ms: the voice while speaking, else silence (every frame, or one per 400 ms with DTX)."""

    def __init__(self, writer: RtpWriter, send: Callable[[bytes], bool], transceiver: Any, media: MediaSet,
                 mode: str) -> None:
        super().__init__(writer, send, transceiver)
        self.media = media
        self.mode = mode  # "voice", "silence" or "dtx"

    def tick(self, now_ns: int) -> float:
        clip: AudioClip = self.media.voice if self.mode == "voice" else self.media.silence
        frame = clip.frames[self.index % len(clip.frames)]
        self.emit(False, opus_payload(frame, make_stamp(now_ns)), now_ns, clip.level, self.mode == "voice")
        self.index += 1
        frames = round(DTX_INTERVAL * 50) if self.mode == "dtx" else 1
        self.ts = (self.ts + frames * OPUS_FRAME) & 0xFFFFFFFF
        self.report(now_ns / 1e9)
        return frames * OPUS_FRAME / 48000


class VideoSender(Sender):
    """One VP8 frame per period, all its packets at once; the camera clip or, camera off, black."""

    def __init__(self, writer: RtpWriter, send: Callable[[bytes], bool], transceiver: Any, media: MediaSet) -> None:
        super().__init__(writer, send, transceiver)
        self.media = media
        self.camera_on = True
        self.picture_id = random.randrange(0x8000)

    def set_camera(self, on: bool) -> None:
        if on != self.camera_on:
            self.camera_on = on
            self.index = 0  # both clips start with a keyframe

    def tick(self, now_ns: int) -> float:
        clip = self.media.camera if self.camera_on else self.media.camera_off
        _, chunks = clip.frames[self.index % len(clip.frames)]
        last = len(chunks) - 1
        for number, chunk in enumerate(chunks):
            stamp = make_stamp(time.monotonic_ns()) if number == last else None  # just before it leaves
            self.emit(number == last, vp8_payload(chunk, number == 0, self.picture_id, stamp), now_ns)
        self.index += 1
        self.picture_id = (self.picture_id + 1) & 0x7FFF
        self.ts = (self.ts + VIDEO_CLOCK // clip.fps) & 0xFFFFFFFF
        self.report(now_ns / 1e9)
        return 1 / clip.fps


class Pacer:
    """One task that calls every sender's :meth:`Sender.tick` on time; pausable (for exact counts)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Sender]] = []
        self._order = itertools.count()
        self._running = asyncio.Event()
        self._running.set()
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0
        self.late = 0  # ticks more than LATE_MS behind their schedule
        self.worst_ms = 0.0

    def add(self, sender: Sender) -> None:
        due = time.monotonic() + random.random() * 0.1
        heapq.heappush(self._heap, (due, next(self._order), sender))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def reset_counters(self) -> None:
        self.ticks = self.late = 0
        self.worst_ms = 0.0

    def pause(self) -> float:
        self._running.clear()
        return time.monotonic()

    def resume(self, paused_at: float) -> None:
        """Carry on where each stream was: the pause shifts every schedule (no catch-up burst)."""
        shift = time.monotonic() - paused_at
        self._heap = [(due + shift, order, sender) for due, order, sender in self._heap]
        heapq.heapify(self._heap)
        self._running.set()

    async def _run(self) -> None:
        burst = 0
        while True:
            await self._running.wait()
            now = time.monotonic()
            if not self._heap or self._heap[0][0] > now:
                burst = 0
                await asyncio.sleep(self._heap[0][0] - now if self._heap else 0.01)
                continue
            due, _, sender = heapq.heappop(self._heap)
            if sender.closed:
                continue
            behind = (now - due) * 1000
            self.ticks += 1
            self.late += behind > LATE_MS
            self.worst_ms = max(self.worst_ms, behind)
            period = sender.tick(time.monotonic_ns())
            heapq.heappush(self._heap, (due + period, next(self._order), sender))
            burst += 1
            if burst % 64 == 0:
                await asyncio.sleep(0)  # far behind: let the receivers run too

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

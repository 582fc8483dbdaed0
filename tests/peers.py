"""aiortc test peers that speak Hemicycle's wire protocol, for integration tests.

Each peer publishes a solid-colour video with a frame counter stamped in blocks,
and a pure tone; it records, per remote participant, the frames it decodes.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import math
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy

WIDTH, HEIGHT = 320, 240
BLOCK = 20  # the counter: 16 bits as black/white 20x20 blocks on the top rows
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30)}


def stamp(colour: tuple[int, int, int], counter: int) -> np.ndarray:
    image = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[:, :] = colour
    for bit in range(16):
        row, col = divmod(bit, 8)
        value = 255 if counter >> bit & 1 else 0
        y, x = 40 + row * BLOCK * 2, 10 + col * BLOCK * 2
        image[y : y + BLOCK, x : x + BLOCK] = value
    return image


def read_stamp(image: np.ndarray) -> int:
    counter = 0
    for bit in range(16):
        row, col = divmod(bit, 8)
        y, x = 40 + row * BLOCK * 2 + BLOCK // 2, 10 + col * BLOCK * 2 + BLOCK // 2
        if image[y - 3 : y + 3, x - 3 : x + 3].mean() > 128:
            counter |= 1 << bit
    return counter


def mean_colour(image: np.ndarray) -> str:
    sample = image[HEIGHT - 40 :, :].reshape(-1, 3).mean(axis=0)
    return min(COLOURS, key=lambda name: sum((a - b) ** 2 for a, b in zip(COLOURS[name], sample, strict=True)))


class CounterVideo(VideoStreamTrack):
    def __init__(self, colour: str) -> None:
        super().__init__()
        self.colour = COLOURS[colour]
        self.counter = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame.from_ndarray(stamp(self.colour, self.counter & 0xFFFF), format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        self.counter += 1
        return frame


class ToneAudio(AudioStreamTrack):
    def __init__(self, frequency: float) -> None:
        super().__init__()
        self.frequency = frequency
        self.sample = 0
        self.start: float | None = None

    async def recv(self) -> av.AudioFrame:
        loop = asyncio.get_running_loop()
        if self.start is None:
            self.start = loop.time()
        wait = self.start + self.sample / 48000 - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        pts = self.sample
        n = 960
        t = (np.arange(n) + self.sample) / 48000
        samples = (0.3 * 32767 * np.sin(2 * math.pi * self.frequency * t)).astype(np.int16)
        self.sample += n
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, pts, fractions.Fraction(1, 48000)
        return frame


@dataclass
class Received:
    counters: list[int] = field(default_factory=list)
    colours: list[str] = field(default_factory=list)
    audio_frames: int = 0
    audio_peak_hz: list[float] = field(default_factory=list)


class Peer:
    def __init__(self, base_url: str, token: str, colour: str = "red", tone: float = 440.0) -> None:
        self.base_url = base_url
        self.token = token
        self.colour = colour
        self.tone = tone
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.me: str | None = None
        self.welcome: dict[str, Any] | None = None
        self.messages: list[dict[str, Any]] = []
        self.participants: dict[str, dict[str, Any]] = {}
        self.slots: dict[str, dict[str, Any]] = {}
        self.received: dict[str, Received] = {}
        self.publish_pc: RTCPeerConnection | None = None
        self.subscribe_pc: RTCPeerConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.video = CounterVideo(colour)
        self.audio = ToneAudio(tone)
        self.answered = asyncio.Event()

    def _config(self) -> RTCConfiguration:
        return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps(message))

    async def join(self) -> dict[str, Any]:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.base_url.replace("http", "ws", 1) + "/ws")
        await self.send({"type": "hello", "version": 1, "token": self.token})
        first = await self.ws.receive_json(timeout=10)
        if first["type"] != "welcome":
            raise RuntimeError(f"join refused: {first}")
        self.welcome = first
        self.me = first["you"]["id"]
        for participant in first["participants"]:
            self.participants[participant["id"]] = participant
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return first

    async def publish(self, video: bool = True, audio: bool = True) -> None:
        pc = self.publish_pc = RTCPeerConnection(self._config())
        tracks = []
        if audio:
            t = pc.addTransceiver(self.audio, direction="sendonly")
            tracks.append((t, "mic"))
        if video:
            t = pc.addTransceiver(self.video, direction="sendonly")
            vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType in ("video/VP8", "video/rtx")]
            t.setCodecPreferences(vp8)
            tracks.append((t, "camera"))
        await pc.setLocalDescription(await pc.createOffer())
        await self.send(
            {
                "type": "publish",
                "sdp": pc.localDescription.sdp,
                "tracks": [{"mid": t.mid, "source": source} for t, source in tracks],
            }
        )
        await asyncio.wait_for(self.answered.wait(), 10)

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            self.messages.append(data)
            kind = data["type"]
            if kind == "publish_answer":
                assert self.publish_pc is not None
                await self.publish_pc.setRemoteDescription(RTCSessionDescription(data["sdp"], "answer"))
                self.answered.set()
            elif kind == "subscribe_offer":
                await self._on_offer(data)
            elif kind == "subscribe_slots":  # slots re-pointed without a new offer
                self.slots = {s["mid"]: s for s in data["slots"]}
            elif kind in ("participant_joined", "participant_updated"):
                self.participants[data["participant"]["id"]] = data["participant"]
            elif kind == "participant_left":
                self.participants.pop(data["participant_id"], None)

    async def _on_offer(self, data: dict[str, Any]) -> None:
        if self.subscribe_pc is None:
            self.subscribe_pc = RTCPeerConnection(self._config())
            self.subscribe_pc.on("track", self._on_track)
        pc = self.subscribe_pc
        self.slots = {s["mid"]: s for s in data["slots"]}
        await pc.setRemoteDescription(RTCSessionDescription(data["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await self.send({"type": "subscribe_answer", "revision": data["revision"], "sdp": pc.localDescription.sdp})

    def _on_track(self, track: MediaStreamTrack) -> None:
        assert self.subscribe_pc is not None
        mid = next(t.mid for t in self.subscribe_pc.getTransceivers() if t.receiver.track is track)
        self._tasks.append(asyncio.get_running_loop().create_task(self._consume(mid, track)))

    async def _consume(self, mid: str, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            slot = self.slots.get(mid)
            if slot is None or slot["participant_id"] is None:
                continue
            received = self.received.setdefault(slot["participant_id"], Received())
            if isinstance(frame, av.VideoFrame):
                image = frame.to_ndarray(format="rgb24")
                if image.shape[:2] == (HEIGHT, WIDTH):
                    received.counters.append(read_stamp(image))
                    received.colours.append(mean_colour(image))
            else:
                received.audio_frames += 1
                if received.audio_frames % 25 == 0:
                    received.audio_peak_hz.append(_peak_frequency(frame))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for pc in (self.publish_pc, self.subscribe_pc):
            if pc is not None:
                await pc.close()
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()


def _peak_frequency(frame: av.AudioFrame) -> float:
    samples = frame.to_ndarray().astype(np.float64)
    mono = samples.reshape(-1, frame.layout.nb_channels).mean(axis=1) if frame.format.is_packed else samples[0]
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.argmax(spectrum) * frame.sample_rate / len(mono))

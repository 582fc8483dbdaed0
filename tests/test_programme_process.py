"""``python -m sfu.programme`` as the SFU runs it: plain RTP in and out on loopback, control on stdin.

The test plays the SFU: its UDP socket is the ``--peer``; it sends two Opus tones
(440 and 880 Hz) and a VP8 clip (blue, with a noisy corner), answering the
programme's PLIs with keyframes, and reads back the programme's H.264 and Opus.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from sfu.h264 import starts_keyframe
from tests.unit.test_programme_encoder import annexb, reassemble

pytestmark = pytest.mark.asyncio

W, H, FPS = 320, 180, 15
VIDEO_SSRC, AUDIO_SSRC = 0x0B0B0B0B, 0x0A0A0A0A  # the programme's
TONES = {1001: 440.0, 1002: 880.0}  # members' microphones
CAMERA = 2001
BLUE = (30, 90, 200)


@dataclass
class Received:
    rtp: list[tuple[float, bytes]] = field(default_factory=list)
    plis: list[int] = field(default_factory=list)

    def of(self, ssrc: int) -> list[tuple[float, bytes]]:
        return [(t, p) for t, p in self.rtp if int.from_bytes(p[8:12], "big") == ssrc]


class Peer:
    """The SFU's end of the link: one UDP socket, read by a thread so that a busy event loop loses nothing."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.received = Received()
        self.closed = False
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self) -> None:
        while not self.closed:
            try:
                data = self.sock.recv(65536)
            except OSError:  # the timeout
                continue
            if 192 <= data[1] <= 223:
                if data[1] == 206 and data[0] & 0x1F == 1:
                    self.received.plis.append(int.from_bytes(data[8:12], "big"))
            else:
                self.received.rtp.append((time.monotonic(), data))

    def close(self) -> None:
        self.closed = True
        self.thread.join()
        self.sock.close()


def rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, pt | (0x80 if marker else 0), seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


class Members:
    """Sends the members' media in real time: a packet per tone every 20 ms, a VP8 picture every 1/15 s."""

    def __init__(self, send: Callable[[bytes], None], plis: list[int]) -> None:
        self.send, self.plis, self.answered = send, plis, 0
        self.opus = {ssrc: self._opus(hz) for ssrc, hz in TONES.items()}
        self.vp8 = av.CodecContext.create("libvpx", "w")
        self.vp8.width, self.vp8.height, self.vp8.pix_fmt = 320, 240, "yuv420p"
        self.vp8.time_base, self.vp8.gop_size, self.vp8.bit_rate = Fraction(1, FPS), 1000, 400_000
        self.vp8.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        self.seq = 0

    @staticmethod
    def _opus(hz: float) -> list[bytes]:
        encoder = av.CodecContext.create("libopus", "w")
        encoder.sample_rate, encoder.layout, encoder.format, encoder.bit_rate = 48000, "mono", "s16", 64000
        packets = []
        for index in range(250):  # 5 s: a whole number of periods, so the tones loop seamlessly
            t = np.arange(index * 960, (index + 1) * 960) / 48000
            frame = av.AudioFrame.from_ndarray((np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16).reshape(1, -1),
                                               format="s16", layout="mono")
            frame.sample_rate, frame.pts = 48000, index * 960
            packets += [bytes(p) for p in encoder.encode(frame)]
        return packets

    def _picture(self, index: int) -> None:
        rgb = np.full((240, 320, 3), BLUE, np.uint8)
        rgb[:60, :80] = np.random.default_rng(index).integers(0, 255, (60, 80, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        if CAMERA in self.plis[self.answered:]:  # the programme asked for a keyframe
            self.answered = len(self.plis)
            frame.pict_type = av.video.frame.PictureType.I
        for packet in self.vp8.encode(frame):
            data = bytes(packet)
            chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]
            for number, chunk in enumerate(chunks):
                descriptor = bytes((0x90 if number == 0 else 0x80, 0x80, 0x80 | (index >> 8) & 0x7F, index & 0xFF))
                self.send(rtp(96, self.seq, index * 6000, CAMERA, descriptor + chunk, number == len(chunks) - 1))
                self.seq += 1

    async def run(self) -> None:
        start, tick, picture = time.monotonic(), 0, 0
        while True:
            for ssrc, packets in self.opus.items():
                self.send(rtp(111, tick, tick * 960, ssrc, packets[tick % len(packets)]))
            while picture * 10 <= tick * 3:  # picture n is due at n/15 s, tick t at t/50 s
                self._picture(picture)
                picture += 1
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * 0.02 - time.monotonic()))


@dataclass
class Rig:
    process: asyncio.subprocess.Process
    peer: Peer
    address: tuple[str, int]
    hls: Path
    stderr: Path
    stdout: list[dict[str, Any]]

    async def control(self, message: dict[str, Any] | bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n")
        await self.process.stdin.drain()

    async def scene(self, audio: list[int]) -> float:
        """Show the camera with a caption and mix ``audio``; the wall-clock time it was sent."""
        caption = {"name": "Mme Éloïse Dupré", "detail": "Point 3 — « Budget primitif »"}
        await self.control({"type": "scene", "title": "Conseil municipal", "audio": audio, "video": CAMERA,
                            "caption": caption, "slate": None, "card": None})
        return time.time()

    def send(self, packet: bytes) -> None:
        self.peer.sock.sendto(packet, self.address)

    async def wait(self, timeout: float = 10) -> int:
        return await asyncio.wait_for(self.process.wait(), timeout)


@pytest.fixture
def segment_s() -> float:
    return 1.0  # a keyframe, and a segment, every second


@pytest.fixture
async def rig(tmp_path: Path, segment_s: float) -> AsyncIterator[Rig]:
    loop = asyncio.get_running_loop()
    peer = Peer()
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sfu.programme", "--peer", f"127.0.0.1:{peer.port}", "--sitting", "cm-test",
            "--width", str(W), "--height", str(H), "--fps", str(FPS), "--video-bitrate", "300000",
            "--video-pt", "102", "--video-ssrc", str(VIDEO_SSRC), "--audio-pt", "111", "--audio-ssrc", str(AUDIO_SSRC),
            "--hls-dir", str(tmp_path / "hls"), "--segment-s", str(segment_s),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
        )
    assert process.stdout is not None
    ready = json.loads(await asyncio.wait_for(process.stdout.readline(), 10))
    assert ready["type"] == "ready"
    rig = Rig(process, peer, ("127.0.0.1", ready["port"]), tmp_path / "hls", stderr_path, [ready])

    async def read_stdout() -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            rig.stdout.append(json.loads(line))

    members = Members(rig.send, peer.received.plis)
    tasks = [loop.create_task(read_stdout()), loop.create_task(members.run())]
    for ssrc in TONES:
        await rig.control({"type": "source", "ssrc": ssrc, "kind": "audio", "codec": "opus", "payload_type": 111})
    await rig.control({"type": "source", "ssrc": CAMERA, "kind": "video", "codec": "vp8", "payload_type": 96})
    yield rig
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if process.returncode is None:
        process.kill()
        await process.wait()
    peer.close()


# ---------------------------------------------------------------------- analysis


def levels(pcm: np.ndarray) -> tuple[float, float, float]:
    """Magnitude at 440 and 880 Hz relative to the spectrum's median, and the RMS level (full scale 1)."""
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    freqs = np.fft.rfftfreq(len(pcm), 1 / 48000)
    floor = float(np.median(spectrum)) + 1e-9
    at = [float(spectrum[(freqs > hz - 10) & (freqs < hz + 10)].max()) / floor for hz in (440, 880)]
    return at[0], at[1], float(np.sqrt(np.mean(pcm**2)))


def hls_media(source: Path | io.BytesIO) -> tuple[np.ndarray, list[tuple[float, np.ndarray]]]:
    """The programme's sound (from its first picture on, 48 kHz mono) and its pictures (time, RGB)."""
    with av.open(source, "r") as container:
        pictures = [(f.time or 0.0, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    start = pictures[0][0]
    if isinstance(source, io.BytesIO):
        source.seek(0)
    with av.open(source, "r") as container:
        frames = [(f.time or 0.0, f.to_ndarray().reshape(-1)) for f in container.decode(audio=0)]
    pcm = np.concatenate([samples for _, samples in frames])
    skip = round((start - frames[0][0]) * 48000)
    return pcm[max(0, skip) :], [(t - start, rgb) for t, rgb in pictures]


def window(pcm: np.ndarray, start: float, end: float) -> np.ndarray:
    return pcm[int(start * 48000) : int(end * 48000)]


def looks_captioned(rgb: np.ndarray) -> bool:
    """The source's blue in the middle, and the caption band with white text in the lower third."""
    middle = rgb[70:110, 130:190].reshape(-1, 3).mean(axis=0)
    band = rgb[142:166, 40:280]
    return bool(np.abs(middle - BLUE).max() < 25 and (band.min(axis=2) > 200).sum() > 100
                and band.mean() < np.mean(BLUE))


def h264_pictures(packets: list[tuple[float, bytes]]) -> list[np.ndarray]:
    """Reassemble and decode the programme's RTP video, picture by picture (RGB)."""
    decoder, pictures, payloads = av.CodecContext.create("h264", "r"), [], []
    for _, packet in packets:
        payloads.append(packet[12:])
        if packet[1] & 0x80:
            pictures += [f.to_ndarray(format="rgb24") for f in decoder.decode(av.Packet(annexb(reassemble(payloads))))]
            payloads = []
    return pictures


# ---------------------------------------------------------------------- tests


async def test_mix_pictures_and_rtp_follow_the_scene(rig: Rig) -> None:
    both = await rig.scene([1001, 1002])
    await asyncio.sleep(3.0)
    one = await rig.scene([1001])
    await asyncio.sleep(2.5)
    silent = await rig.scene([])
    await asyncio.sleep(2.0)
    await rig.control({"type": "stop"})
    assert await rig.wait() == 0
    assert (rig.hls / "programme.m3u8").read_text().rstrip().endswith("#EXT-X-ENDLIST")
    started = json.loads((rig.hls / "recording.json").read_text())["started_at"]
    assert abs(started - both) < 2

    pcm, pictures = hls_media(rig.hls / "programme.m3u8")
    a440, a880, _ = levels(window(pcm, both - started + 0.5, one - started - 0.1))
    assert min(a440, a880) > 1000, (a440, a880)
    a440, a880, _ = levels(window(pcm, one - started + 0.5, silent - started - 0.1))
    assert a440 > 1000 and a880 < a440 / 30, (a440, a880)  # 880 Hz is gone (but for 440's harmonic)
    assert levels(window(pcm, silent - started + 0.5, silent - started + 1.8))[2] < 0.002
    middle = [rgb for t, rgb in pictures if both - started + 1 < t < one - started]
    assert middle and all(looks_captioned(rgb) for rgb in middle)

    video, audio = rig.peer.received.of(VIDEO_SSRC), rig.peer.received.of(AUDIO_SSRC)
    assert CAMERA in rig.peer.received.plis  # it asked our camera for a keyframe to start decoding
    decoded = h264_pictures(video)
    assert len(decoded) > 0.8 * len(pictures) and sum(looks_captioned(rgb) for rgb in decoded) > 20
    opus = av.CodecContext.create("opus", "r")
    first = struct.unpack_from("!I", audio[0][1], 4)[0]
    rtp_pcm = np.zeros(10 * 48000, np.float32)
    for _, packet in audio:
        at = (struct.unpack_from("!I", packet, 4)[0] - first) & 0xFFFFFFFF
        for frame in opus.decode(av.Packet(packet[12:])):
            samples = frame.to_ndarray().reshape(frame.layout.nb_channels, -1)[0]
            rtp_pcm[at : at + len(samples)] = samples[: len(rtp_pcm) - at]
    a440, a880, _ = levels(window(rtp_pcm, both - started + 0.5, one - started - 0.1))
    assert min(a440, a880) > 1000, (a440, a880)


@pytest.mark.parametrize("segment_s", [2.0])
async def test_pli_fir_and_keyframe_message_bring_an_idr_soon(rig: Rig) -> None:
    await rig.scene([1001])
    await asyncio.sleep(2.7)  # periodic keyframes every 2 s: at 0 and 2 s, then 2 s after each forced one
    requests = [time.monotonic()]
    rig.send(struct.pack("!BBHII", 0x81, 206, 2, 1, VIDEO_SSRC))  # PLI
    await asyncio.sleep(1.0)
    requests.append(time.monotonic())
    rig.send(struct.pack("!BBHIIII", 0x84, 206, 4, 1, 0, VIDEO_SSRC, 0))  # FIR
    await asyncio.sleep(1.0)
    requests.append(time.monotonic())
    await rig.control({"type": "keyframe"})
    await asyncio.sleep(1.0)
    rig.process.send_signal(signal.SIGTERM)
    assert await rig.wait() == 0
    assert (rig.hls / "programme.m3u8").read_text().rstrip().endswith("#EXT-X-ENDLIST")
    keyframes = [t for t, p in rig.peer.received.of(VIDEO_SSRC) if starts_keyframe(p[12:])]
    for asked in requests:  # had one been ignored, the next keyframe would come 2 s after the previous
        assert any(asked < t < asked + 0.8 for t in keyframes), (asked, keyframes)
    assert rig.stdout[-1]["type"] == "stats" and rig.stdout[-1]["keyframe_requests"] == 2


async def test_garbage_and_malformed_control_do_not_stop_it(rig: Rig, tmp_path: Path) -> None:
    await rig.scene([1001, 1002])
    junk = [b"", b"\x00", os.urandom(5), os.urandom(1400), b"\x80" * 11, rtp(111, 1, 1, 4242, b"\xff" * 40),
            rtp(0, 1, 1, 1001, b"x"), b"\x81\xce\x00\x09" + os.urandom(8), rtp(96, 7, 7, CAMERA, b"")]
    for packet in junk * 20:
        rig.send(packet)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:  # not the SFU: ignored
        stranger.sendto(rtp(111, 1, 1, 1001, b"\xfc\xff\xfe"), rig.address)
    for line in [b"not json\n", b'{"type":"scene"}\n', b'{"type":"warp"}\n', b"\xff\xfe\n", b"[1,2]\n",
                 b'{"type":"source","ssrc":"5","kind":"audio","codec":"opus","payload_type":111}\n', b"\n"]:
        await rig.control(line)
    await asyncio.sleep(5.6)
    sent_before = len(rig.peer.received.rtp)
    await asyncio.sleep(0.5)
    assert len(rig.peer.received.rtp) > sent_before + 10  # still streaming
    assert rig.process.stdin is not None
    rig.process.stdin.close()  # the SFU is gone
    assert await rig.wait() == 0
    assert rig.stderr.read_text().count("ignored control line") == 6
    stats = next(m for m in rig.stdout if m["type"] == "stats")
    assert stats["garbage_datagrams"] >= 20 * 5 + 1 and stats["errors"] == 0
    assert stats["video_frames"] >= 3 * FPS and stats["audio_frames"] >= 249  # pictures may be skipped, not sound
    assert abs(stats["av_offset_ms"]) < 70 and stats["encode_ms_p99"] > 0 and stats["cpu_s"] > 0
    assert stats["sources"]["sources"]["1001"]["frames_decoded"] > 50 and stats["sources"]["unknown_packets"] >= 20
    assert (rig.hls / "programme.m3u8").read_text().rstrip().endswith("#EXT-X-ENDLIST")


async def test_kill_9_leaves_a_playable_recording(rig: Rig) -> None:
    await rig.scene([1001])
    await asyncio.sleep(4.5)
    rig.process.kill()
    assert await rig.wait() == -signal.SIGKILL
    playlist = (rig.hls / "programme.m3u8").read_text().splitlines()
    assert playlist[0] == "#EXTM3U" and "#EXT-X-ENDLIST" not in playlist
    listed = [line for line in playlist if not line.startswith("#")]
    durations = [float(line[8:].rstrip(",")) for line in playlist if line.startswith("#EXTINF:")]
    assert len(listed) == len(durations) >= 3 and sorted(p.name for p in rig.hls.glob("*.ts")) == listed
    for name in listed:
        with av.open(str(rig.hls / name)) as segment:
            assert sum(1 for _ in segment.decode(video=0)) > 0
    # Without ENDLIST a player takes the playlist for a live one; the segments themselves make the recording.
    pcm, pictures = hls_media(io.BytesIO(b"".join((rig.hls / name).read_bytes() for name in listed)))
    assert abs(pictures[-1][0] + 1 / FPS - sum(durations)) < 0.1 and levels(pcm[48000:])[0] > 1000

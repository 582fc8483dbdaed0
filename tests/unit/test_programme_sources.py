"""sfu/programme/sources.py: the programme's RTP input, fed real Opus and VP8 from PyAV's encoders."""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction
from functools import cache
from types import SimpleNamespace

import av
import numpy as np
import pytest
from av.video.frame import PictureType

import sfu.programme.sources
from sfu.programme.depacketize import SequenceTracker, Vp8Assembler
from sfu.programme.sources import Sources

OPUS_PT = 111
VP8_PT = 96
TONE_A, TONE_B, CAMERA, OTHER_CAMERA = 0x1000A, 0x1000B, 0x2000C, 0x2000D


def rtp(seq: int, ts: int, ssrc: int, pt: int, payload: bytes, *, marker: bool = False, csrcs: int = 0,
        extension: bytes | None = None, padding: int = 0) -> bytes:
    """An RTP packet built from RFC 3550 section 5.1, independently of the code under test."""
    b0 = 0x80 | (0x20 if padding else 0) | (0x10 if extension is not None else 0) | csrcs
    out = struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
    out += b"".join(struct.pack("!I", 0xC0C0C000 + i) for i in range(csrcs))
    if extension is not None:
        out += struct.pack("!HH", 0xBEDE, len(extension) // 4) + extension
    out += payload
    if padding:
        out += b"\x00" * (padding - 1) + bytes([padding])
    return out


@cache
def opus_tone(freq: float, count: int = 50) -> list[bytes]:
    """``count`` 20 ms Opus packets of a sine at ``freq`` Hz, from libopus."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = 48000
    encoder.layout = "mono"
    encoder.format = "s16"
    encoder.bit_rate = 64000
    encoder.time_base = Fraction(1, 48000)
    t = np.arange(960 * count) / 48000
    pcm = (np.sin(2 * np.pi * freq * t) * 8000).astype(np.int16)
    packets: list[bytes] = []
    for i in range(count):
        frame = av.AudioFrame.from_ndarray(pcm[None, i * 960:(i + 1) * 960], format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = i * 960
        packets += [bytes(p) for p in encoder.encode(frame)]
    packets += [bytes(p) for p in encoder.encode(None)]
    return packets[:count]


def opus_stream(ssrc: int, freq: float, start_seq: int = 65500) -> Iterator[bytes]:
    """Endless RTP of a tone (the packets repeat; sequence numbers and timestamps go on, wrapping)."""
    packets = opus_tone(freq)
    i = 0
    while True:
        yield rtp(start_seq + i, 4_294_000_000 + 960 * i, ssrc, OPUS_PT, packets[i % len(packets)])
        i += 1


@cache
def vp8_clip(kinds: str = "KDDDDKDD") -> list[tuple[bytes, bool]]:
    """Red 320x240 VP8 frames from libvpx, K = forced keyframe, D = interframe; (data, keyframe)."""
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 320, 240, "yuv420p"
    encoder.time_base = Fraction(1, 30)
    encoder.bit_rate = 2_000_000
    encoder.gop_size = 1000
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    rng = np.random.default_rng(7)
    out: list[tuple[bytes, bool]] = []
    for i, kind in enumerate(kinds):
        picture = np.zeros((240, 320, 3), np.uint8)
        picture[..., 0] = 200 + rng.integers(0, 56, (240, 320))  # textured, so frames span several packets
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        frame.pict_type = PictureType.I if kind == "K" else PictureType.NONE
        out += [(bytes(p), p.is_keyframe) for p in encoder.encode(frame)]
    out += [(bytes(p), p.is_keyframe) for p in encoder.encode(None)]
    assert [key for _, key in out] == [kind == "K" for kind in kinds]
    return out


class Vp8Sender:
    """Packetizes VP8 frames per RFC 7741: X=1, I=1 with a 15-bit PictureID, S=1/PID=0 on the first packet."""

    def __init__(self, ssrc: int, max_payload: int = 1100) -> None:
        self.ssrc, self.max_payload, self.seq, self.picture_id, self.frames = ssrc, max_payload, 40000, 32760, 0

    def packets(self, frame: bytes) -> list[bytes]:
        step = self.max_payload - 4
        chunks = [frame[i:i + step] for i in range(0, len(frame), step)]
        out = []
        for n, chunk in enumerate(chunks):
            descriptor = bytes([0x90 if n == 0 else 0x80, 0x80, 0x80 | (self.picture_id >> 8), self.picture_id & 0xFF])
            out.append(rtp(self.seq, 3000 * self.frames, self.ssrc, VP8_PT, descriptor + chunk, marker=n == len(chunks) - 1))
            self.seq = (self.seq + 1) & 0xFFFF
        self.picture_id = (self.picture_id + 1) & 0x7FFF
        self.frames += 1
        return out


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """A fake time.monotonic for the keyframe-request rate limit, seen by sources.py only."""
    fake = Clock()
    monkeypatch.setattr(sfu.programme.sources, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


def make_sources(**kw: int) -> tuple[Sources, list[int]]:
    requests: list[int] = []
    sources = Sources(requests.append, **kw)
    return sources, requests


def spectrum(samples: np.ndarray) -> Callable[[float], float]:
    """Magnitude at a frequency, from a 1-Hz-resolution FFT over exactly one second."""
    magnitude = np.abs(np.fft.rfft(samples[:48000].astype(np.float64)))
    return lambda freq: float(magnitude[int(freq) - 2:int(freq) + 3].max())


def run_audio(sources: Sources, streams: list[Iterator[bytes]], ticks: int) -> np.ndarray:
    """Each 20 ms tick: one packet of every stream arrives, then the clock takes 960 samples."""
    out = []
    for _ in range(ticks):
        for stream in streams:
            sources.on_rtp(next(stream))
        out.append(sources.mix())
    return np.concatenate(out)


def source_stats(sources: Sources, ssrc: int) -> dict[str, object]:
    stats = sources.stats()["sources"][str(ssrc)]
    assert isinstance(stats, dict)
    return stats


# Audio.

def test_both_wanted_tones_are_in_the_mix() -> None:
    sources, _ = make_sources()
    sources.add(TONE_A, "audio", "opus", OPUS_PT)
    sources.add(TONE_B, "audio", "opus", OPUS_PT)
    sources.set_wanted([TONE_A, TONE_B], None)
    mixed = run_audio(sources, [opus_stream(TONE_A, 440), opus_stream(TONE_B, 880)], 60)
    assert mixed.dtype == np.int16 and mixed.shape == (60 * 960,)
    level = spectrum(mixed[960 * 5:])
    assert level(440) > 20 * level(660) and level(880) > 20 * level(660)
    assert 0.5 < level(440) / level(880) < 2
    for ssrc in (TONE_A, TONE_B):
        stats = source_stats(sources, ssrc)
        assert stats["packets"] == 60 and stats["frames_decoded"] == 60 and stats["lost"] == 0


def test_only_the_wanted_sources_are_decoded_and_mixed() -> None:
    sources, _ = make_sources()
    sources.add(TONE_A, "audio", "opus", OPUS_PT)
    sources.add(TONE_B, "audio", "opus", OPUS_PT)
    sources.set_wanted([TONE_A], None)
    mixed = run_audio(sources, [opus_stream(TONE_A, 440), opus_stream(TONE_B, 880)], 60)
    level = spectrum(mixed[960 * 5:])
    assert level(440) > 100 * level(880)
    assert source_stats(sources, TONE_B)["frames_decoded"] == 0
    assert source_stats(sources, TONE_B)["packets"] == 60


def test_unwanting_a_source_discards_its_queue() -> None:
    sources, _ = make_sources()
    sources.add(TONE_A, "audio", "opus", OPUS_PT)
    sources.set_wanted([TONE_A], None)
    stream = opus_stream(TONE_A, 440)
    for _ in range(5):
        sources.on_rtp(next(stream))
    assert source_stats(sources, TONE_A)["queued_ms"] == 100
    sources.set_wanted([], None)
    assert source_stats(sources, TONE_A)["queued_ms"] == 0
    sources.on_rtp(next(stream))
    assert not sources.mix().any()
    assert source_stats(sources, TONE_A)["queued_ms"] == 0


def drift_run(extra_every: int, fast: bool) -> tuple[float, float, dict[str, object]]:
    """Two simulated minutes of a sender whose clock is off by 1/extra_every; (min, max) queue after warm-up."""
    sources, _ = make_sources(jitter_ms=60, max_queue_ms=200)
    sources.add(TONE_A, "audio", "opus", OPUS_PT)
    sources.set_wanted([TONE_A], None)
    stream = opus_stream(TONE_A, 440)
    queued = []
    for tick in range(6000):
        if fast or tick % extra_every != extra_every - 1:
            sources.on_rtp(next(stream))
        if fast and tick % extra_every == extra_every - 1:
            sources.on_rtp(next(stream))
        sources.mix()
        if tick > 500:
            queued.append(float(source_stats(sources, TONE_A)["queued_ms"]))  # type: ignore[arg-type]
    return min(queued), max(queued), source_stats(sources, TONE_A)


def test_a_fast_sender_clock_is_followed_by_resampling_not_drops() -> None:
    """101 packets for every 100 mixes (a 1% fast sender, far more than real clocks drift)."""
    low, high, stats = drift_run(100, fast=True)
    assert low >= 40 and high <= 90, (low, high)  # near the 60 ms target all along: no lip-sync drift
    assert stats["underruns"] == 0 and stats["dropped_ms"] == 0
    assert 1000 <= stats["resampled_ms"] <= 1300  # type: ignore[operator]  # 60 extra packets = 1200 ms


def test_a_slow_sender_clock_is_stretched_without_underruns() -> None:
    """99 packets for every 100 mixes (1 % slow): stretched by at most 1 %, so it keeps up."""
    low, high, stats = drift_run(100, fast=False)
    assert low >= 10 and high <= 80, (low, high)  # a little below the target, never empty
    assert stats["underruns"] == 0 and stats["dropped_ms"] == 0


def test_underrun_gives_silence_then_rebuffers() -> None:
    sources, _ = make_sources(jitter_ms=60)
    sources.add(TONE_A, "audio", "opus", OPUS_PT)
    sources.set_wanted([TONE_A], None)
    stream = opus_stream(TONE_A, 440)
    sources.on_rtp(next(stream))
    sources.on_rtp(next(stream))
    assert not sources.mix().any()  # 40 ms queued: below the jitter buffer, not started yet
    for _ in range(3):
        sources.on_rtp(next(stream))
    played = [sources.mix() for _ in range(8)]
    assert all(np.abs(chunk).max() > 1000 for chunk in played[:5])  # 100 ms: five mixes' worth
    # (a queue below its target is stretched by up to 2 %: the last few samples spill into a sixth mix)
    assert np.count_nonzero(played[5]) < 96 and all(not chunk.any() for chunk in played[6:])
    assert source_stats(sources, TONE_A)["underruns"] == 1
    sources.on_rtp(next(stream))  # 20 ms: buffering again, still silent
    assert not sources.mix().any()
    sources.on_rtp(next(stream))
    sources.on_rtp(next(stream))
    assert np.abs(sources.mix()).max() > 1000


def test_loud_sources_are_clipped_not_wrapped() -> None:
    sources, _ = make_sources()
    streams = [opus_stream(ssrc, 440) for ssrc in range(1, 7)]
    for ssrc in range(1, 7):
        sources.add(ssrc, "audio", "opus", OPUS_PT)
    sources.set_wanted(range(1, 7), None)  # six in-phase 8000-peak tones: 48000 peak before clipping
    mixed = run_audio(sources, streams, 20)[960 * 5:].astype(np.int32)
    assert mixed.max() == 32767 and mixed.min() == -32768
    assert np.abs(np.diff(mixed)).max() < 20000  # no wrap-around jumps


def test_header_extensions_csrcs_and_padding_are_skipped() -> None:
    sources, _ = make_sources()
    sources.add(TONE_A, "audio", "opus", OPUS_PT)
    sources.set_wanted([TONE_A], None)
    for i, payload in enumerate(opus_tone(440)[:10]):
        extension = bytes([0x10, 0xFF, 0x22, 0x00, 0x00, 0x00, 0x00, 0x00])  # one-byte ids 1 and 2, padded
        sources.on_rtp(rtp(i, 960 * i, TONE_A, OPUS_PT, payload, csrcs=i % 3, extension=extension, padding=i % 4))
    stats = source_stats(sources, TONE_A)
    assert stats["frames_decoded"] == 10 and stats["decode_errors"] == 0 and stats["queued_ms"] == 200


def test_late_and_lost_audio_packets_are_counted() -> None:
    sources, _ = make_sources()
    sources.add(TONE_A, "audio", "opus", OPUS_PT)
    sources.set_wanted([TONE_A], None)
    packets = [rtp(i, 960 * i, TONE_A, OPUS_PT, p) for i, p in enumerate(opus_tone(440)[:10])]
    for i in (0, 1, 4, 3, 5):
        sources.on_rtp(packets[i])
    stats = source_stats(sources, TONE_A)
    assert stats["lost"] == 2 and stats["late"] == 1 and stats["frames_decoded"] == 4


def test_sequence_tracker_wraps_skips_late_packets_and_follows_a_restart() -> None:
    tracker = SequenceTracker()
    assert [tracker.advance(seq) for seq in (65534, 65535, 0, 3, 2, 3, 4)] == [0, 0, 0, 2, None, None, 0]
    assert tracker.lost == 2
    assert tracker.advance((5 - 100) & 0xFFFF) is None  # 100 behind: within the misorder window, late
    assert tracker.advance(40000) == 1 and tracker.restarts == 1 and tracker.lost == 2  # a jump back: restart
    assert tracker.advance(40001) == 0


def test_audio_follows_a_sender_that_restarts_its_sequence() -> None:
    sources, _ = make_sources()
    sources.add(TONE_A, "audio", "opus", OPUS_PT)
    sources.set_wanted([TONE_A], None)
    mixed = run_audio(sources, [opus_stream(TONE_A, 440, start_seq=20000)], 10)
    mixed = np.concatenate([mixed, run_audio(sources, [opus_stream(TONE_A, 440, start_seq=100)], 10)])
    assert source_stats(sources, TONE_A)["frames_decoded"] == 20
    assert np.abs(mixed[-960:]).max() > 1000


# Video.

def feed_clip(sources: Sources, sender: Vp8Sender, clip: list[tuple[bytes, bool]], skip: Callable[[int, int], bool]
              = lambda frame, packet: False) -> None:
    for index, (data, _) in enumerate(clip):
        for n, packet in enumerate(sender.packets(data)):
            if not skip(index, n):
                sources.on_rtp(packet)


def mean_rgb(frame: av.VideoFrame | None) -> np.ndarray:
    assert frame is not None
    rgb: np.ndarray = frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)
    return rgb


def test_vp8_frames_decode_to_a_red_picture(clock: Clock) -> None:
    sources, requests = make_sources()
    sources.add(CAMERA, "video", "vp8", VP8_PT)
    assert sources.video() is None
    sources.set_wanted([], CAMERA)
    assert requests == [CAMERA]  # a newly wanted source asks for a keyframe at once
    sender = Vp8Sender(CAMERA)
    clip = vp8_clip()
    assert len(Vp8Sender(CAMERA).packets(clip[0][0])) > 3  # the keyframe spans several packets
    feed_clip(sources, sender, clip)
    frame = sources.video()
    assert frame is not None and (frame.width, frame.height) == (320, 240)
    red, green, blue = mean_rgb(frame)
    assert red > 200 and green < 40 and blue < 40
    stats = source_stats(sources, CAMERA)
    assert stats["frames_decoded"] == len(clip) and stats["lost"] == 0 and not stats["waiting_keyframe"]
    assert requests == [CAMERA]


def test_no_decoding_before_a_keyframe(clock: Clock) -> None:
    sources, requests = make_sources()
    sources.add(CAMERA, "video", "vp8", VP8_PT)
    sources.set_wanted([], CAMERA)
    clip = vp8_clip()
    sender = Vp8Sender(CAMERA)
    feed_clip(sources, sender, clip[1:5])  # interframes only
    assert sources.video() is None
    assert source_stats(sources, CAMERA)["frames_decoded"] == 0
    clock.now += 0.6
    feed_clip(sources, sender, clip[5:])  # from the next keyframe on
    assert source_stats(sources, CAMERA)["frames_decoded"] == 3
    assert mean_rgb(sources.video())[0] > 200
    assert requests == [CAMERA, CAMERA]  # the second: the stream was still waiting after 500 ms


def test_a_lost_packet_drops_the_frame_and_asks_a_keyframe(clock: Clock) -> None:
    sources, requests = make_sources()
    sources.add(CAMERA, "video", "vp8", VP8_PT)
    sources.set_wanted([], CAMERA)
    clock.now += 1
    clip = vp8_clip()
    sender = Vp8Sender(CAMERA, max_payload=120)
    assert len(Vp8Sender(CAMERA, max_payload=120).packets(clip[2][0])) > 2
    feed_clip(sources, sender, clip[:5], skip=lambda frame, packet: frame == 2 and packet == 1)
    stats = source_stats(sources, CAMERA)
    assert stats["frames_decoded"] == 2 and stats["lost"] == 1 and stats["waiting_keyframe"]
    assert requests == [CAMERA, CAMERA]
    before = sources.video()
    feed_clip(sources, sender, clip[5:])  # the keyframe it asked for
    stats = source_stats(sources, CAMERA)
    assert stats["frames_decoded"] == 5 and not stats["waiting_keyframe"]
    assert sources.video() is not before


def test_a_decoder_error_asks_a_keyframe(clock: Clock) -> None:
    sources, requests = make_sources()
    sources.add(CAMERA, "video", "vp8", VP8_PT)
    sources.set_wanted([], CAMERA)
    clock.now += 1
    sender = Vp8Sender(CAMERA)
    bogus_keyframe = bytes([0x50, 0x2D, 0x00]) + b"\x00\x00\x00" + b"\xee" * 200  # P=0, but no start code
    for packet in sender.packets(bogus_keyframe):
        sources.on_rtp(packet)
    stats = source_stats(sources, CAMERA)
    assert stats["decode_errors"] == 1 and stats["frames_decoded"] == 0 and stats["waiting_keyframe"]
    assert requests == [CAMERA, CAMERA]
    feed_clip(sources, sender, vp8_clip()[5:])
    assert source_stats(sources, CAMERA)["frames_decoded"] == 3


def test_keyframe_requests_are_rate_limited(clock: Clock) -> None:
    sources, requests = make_sources()
    sources.add(CAMERA, "video", "vp8", VP8_PT)
    sources.add(OTHER_CAMERA, "video", "vp8", VP8_PT)
    sources.set_wanted([], CAMERA)
    sender = Vp8Sender(CAMERA)
    interframes = vp8_clip()[1:5]
    for step in range(8):  # 125 ms apart, all waiting for a keyframe
        clock.now += 0.125
        feed_clip(sources, sender, interframes[step % 4:step % 4 + 1])
    assert requests == [CAMERA, CAMERA, CAMERA]  # at 0, 0.5 and 1.0 s
    sources.set_wanted([], OTHER_CAMERA)
    sources.set_wanted([], CAMERA)  # back within 500 ms of the last request: not asked again at once
    assert requests == [CAMERA, CAMERA, CAMERA, OTHER_CAMERA]
    assert source_stats(sources, CAMERA)["keyframe_requests"] == 3


def test_switching_video_source_forgets_the_old_picture(clock: Clock) -> None:
    sources, _ = make_sources()
    sources.add(CAMERA, "video", "vp8", VP8_PT)
    sources.add(OTHER_CAMERA, "video", "vp8", VP8_PT)
    sources.set_wanted([], CAMERA)
    clip = vp8_clip()
    feed_clip(sources, Vp8Sender(CAMERA), clip[:2])
    assert sources.video() is not None
    sources.set_wanted([], OTHER_CAMERA)
    assert sources.video() is None
    feed_clip(sources, Vp8Sender(CAMERA), clip[5:])  # the unwanted camera is not decoded
    assert source_stats(sources, CAMERA)["frames_decoded"] == 2
    assert sources.video() is None


def test_assembler_waits_for_the_marker_and_a_matching_timestamp() -> None:
    assembler = Vp8Assembler()
    key = b"\x00\x9d\x01\x2a"
    assert assembler.push(1, 100, False, b"\x10" + key) is None
    assert assembler.push(2, 200, True, b"\x00tail") is None  # another frame's timestamp: dropped
    assert assembler.broken
    assert assembler.push(3, 300, False, b"\x10" + key) is None
    frame = assembler.push(4, 300, True, b"\x00tail")
    assert frame is not None and frame.keyframe and frame.data == key + b"tail" and not assembler.broken


# Robustness.

def test_garbage_unknown_ssrcs_and_truncated_packets_never_raise(clock: Clock) -> None:
    sources, _ = make_sources()
    sources.add(TONE_A, "audio", "opus", OPUS_PT)
    sources.add(CAMERA, "video", "vp8", VP8_PT)
    sources.set_wanted([TONE_A], CAMERA)
    good_audio = rtp(1, 960, TONE_A, OPUS_PT, opus_tone(440)[0])
    good_video = Vp8Sender(CAMERA).packets(vp8_clip()[0][0])
    hostile = [
        b"", b"\x80", b"\x00" * 12, b"\x80\x6f" + b"\x00" * 10,
        rtp(1, 0, 0xDEAD, OPUS_PT, b"\xfc\xff\xfe"),  # unknown SSRC
        rtp(2, 0, TONE_A, 100, b"\xfc\xff\xfe"),  # wrong payload type
        rtp(3, 0, TONE_A, OPUS_PT, b""),  # empty Opus payload
        rtp(4, 0, TONE_A, OPUS_PT, b"\xff" * 40),  # not Opus
        rtp(5, 0, CAMERA, VP8_PT, b"\x80", marker=True),  # truncated descriptor
        rtp(6, 0, CAMERA, VP8_PT, b"\x90\x80", marker=True),  # PictureID missing
        rtp(7, 0, CAMERA, VP8_PT, b"\x10", marker=True),  # a frame of nothing
        good_audio[:20], good_audio[:-3] + b"\xff\xff\xff",
        (good_audio[:0] + bytes([0x90]) + good_audio[1:])[:16],  # X bit, truncated extension
        bytes([0xA0]) + good_audio[1:-1] + b"\xff",  # padding longer than the packet
        *[p[:len(p) // 2] for p in good_video],
    ]
    rng = np.random.default_rng(1)
    for _ in range(3000):
        base = bytearray(good_audio if rng.random() < 0.5 else good_video[int(rng.integers(len(good_video)))])
        for at in rng.integers(0, len(base), int(rng.integers(1, 6))):
            base[at] = int(rng.integers(256))
        hostile.append(bytes(base[: int(rng.integers(0, len(base) + 1))]))
        hostile.append(rng.bytes(int(rng.integers(0, 80))))
    for datagram in hostile:
        sources.on_rtp(datagram)
    sources.mix()
    sources.video()
    stats = sources.stats()
    json.dumps(stats)
    assert stats["malformed_packets"] > 0 and stats["unknown_packets"] > 0


def test_removed_sources_are_forgotten(clock: Clock) -> None:
    sources, _ = make_sources()
    sources.add(TONE_A, "audio", "opus", OPUS_PT)
    sources.add(CAMERA, "video", "vp8", VP8_PT)
    sources.set_wanted([TONE_A], CAMERA)
    stream = opus_stream(TONE_A, 440)
    for _ in range(5):
        sources.on_rtp(next(stream))
    feed_clip(sources, Vp8Sender(CAMERA), vp8_clip()[:1])
    assert sources.video() is not None
    sources.remove(TONE_A)
    sources.remove(CAMERA)
    sources.remove(12345)  # unknown: no error
    assert sources.video() is None and not sources.mix().any()
    sources.on_rtp(next(stream))
    assert sources.stats()["sources"] == {} and sources.stats()["unknown_packets"] == 1
    sources.add(TONE_A, "audio", "opus", OPUS_PT)  # back, still wanted
    for _ in range(3):
        sources.on_rtp(next(stream))
    assert np.abs(sources.mix()).max() > 1000


def test_receiving_and_mixing_threads_run_together() -> None:
    sources, _ = make_sources()
    sources.add(TONE_A, "audio", "opus", OPUS_PT)
    sources.add(TONE_B, "audio", "opus", OPUS_PT)
    sources.set_wanted([TONE_A, TONE_B], None)
    failures: list[BaseException] = []

    def receive(stream: Iterator[bytes]) -> None:
        try:
            for _ in range(300):
                sources.on_rtp(next(stream))
        except BaseException as error:  # pragma: no cover - reported below
            failures.append(error)

    threads = [threading.Thread(target=receive, args=(opus_stream(s, f),)) for s, f in ((TONE_A, 440), (TONE_B, 880))]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        assert sources.mix().shape == (960,)
        sources.stats()
    for thread in threads:
        thread.join()
    assert not failures
    assert all(source_stats(sources, s)["frames_decoded"] == 300 for s in (TONE_A, TONE_B))


def test_pictures_wait_as_long_as_the_sound_does(clock: Clock) -> None:
    """With a video delay, a decoded picture is shown only once it is that old: lips with the words."""
    sources, _ = make_sources(video_delay_ms=60)
    sources.add(CAMERA, "video", "vp8", VP8_PT)
    sources.set_wanted([], CAMERA)
    feed_clip(sources, Vp8Sender(CAMERA), vp8_clip("KD"))
    assert sources.video() is None  # decoded at t, not shown before t + 60 ms
    clock.now += 0.059
    assert sources.video() is None
    clock.now += 0.002
    frame = sources.video()
    assert frame is not None and mean_rgb(frame)[0] > 200

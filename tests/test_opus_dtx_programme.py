"""Opus DTX downstream of the SFU: the programme's jitter buffers (sfu/programme/sources.py) and the
active-speaker observer (sfu/observers.py) take a silent microphone's sparse packets for silence.

A browser in DTX sends, once its microphone has been quiet ~200 ms, one packet holding the TOC
byte alone, then one comfort-noise frame (and again a TOC byte) every 400 ms: the sequence numbers
stay contiguous, the timestamp jumps. Here one libopus encoder codes 1 s of tone, 2 s of a faint
hiss and 1 s of tone again, and only what such a browser would send of it reaches the programme,
each packet in its 20 ms tick of a simulated wall clock.
"""

from __future__ import annotations

from fractions import Fraction
from functools import cache
from types import SimpleNamespace

import av
import numpy as np
import pytest

import sfu.observers
from sfu.observers import PACKETS_PER_WINDOW, SPEECH_LEVEL, WINDOW, ActiveSpeakerObserver
from sfu.programme.depacketize import opus_samples
from sfu.programme.sources import Sources
from tests.unit.test_programme_sources import OPUS_PT, TONE_A, opus_tone, rtp, source_stats

TONE_END, SILENCE_END, TOTAL = 50, 150, 200  # in 20 ms frames
HANGOVER = 10  # frames a browser still sends after the voice stops, before DTX
CN_EVERY = 20  # 400 ms
JITTER_MS = 60
LATENCY_TICKS = JITTER_MS // 20 - 1  # a packet is played this many ticks after the tick it came in
LOUD = 1000


@cache
def encoded() -> list[bytes]:
    """TOTAL 20 ms Opus frames from one encoder: tone, hiss (~-60 dBFS), tone."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "mono", "s16"
    encoder.bit_rate, encoder.time_base = 32000, Fraction(1, 48000)
    t = np.arange(960 * TOTAL) / 48000
    pcm = np.sin(2 * np.pi * 440 * t) * 8000
    pcm[960 * TONE_END : 960 * SILENCE_END] = np.random.default_rng(5).normal(0, 30, 960 * (SILENCE_END - TONE_END))
    packets: list[bytes] = []
    for i in range(TOTAL):
        frame = av.AudioFrame.from_ndarray(
            pcm[None, i * 960 : (i + 1) * 960].astype(np.int16), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts = 48000, i * 960
        packets += [bytes(p) for p in encoder.encode(frame)]
    return (packets + [bytes(p) for p in encoder.encode(None)])[:TOTAL]


def dtx_schedule() -> dict[int, bytes]:
    """What a browser with usedtx=1 sends of ``encoded()``: frame index (= tick) -> payload."""
    sent: dict[int, bytes] = {}
    frames = encoded()
    for i, payload in enumerate(frames):
        dtx = i - TONE_END - HANGOVER  # frames since DTX began
        if not 0 <= dtx < SILENCE_END - TONE_END - HANGOVER:
            sent[i] = payload
        elif dtx == 0 or (dtx > CN_EVERY and dtx % CN_EVERY == 1):
            sent[i] = payload[:1]  # the TOC byte alone: "entering DTX" (again after each CN frame)
        elif dtx % CN_EVERY == 0:
            sent[i] = payload  # a comfort-noise update
    return sent


def play(schedule: dict[int, bytes], first_seq: int = 65530) -> tuple[list[np.ndarray], list[float], Sources]:
    """Each tick: its packet (if any) arrives, then the programme's clock takes 20 ms."""
    sources = Sources(lambda ssrc: None, jitter_ms=JITTER_MS, max_queue_ms=200)
    sources.add(TONE_A, "audio", "opus", OPUS_PT)
    sources.set_wanted([TONE_A], None)
    out, queued, seq = [], [], first_seq
    for tick in range(TOTAL):
        if tick in schedule:
            sources.on_rtp(rtp(seq, 4_294_000_000 + 960 * tick, TONE_A, OPUS_PT, schedule[tick]))
            seq += 1
        out.append(sources.mix())
        queued.append(float(source_stats(sources, TONE_A)["queued_ms"]))  # type: ignore[arg-type]
    return out, queued, sources


def loud(chunks: list[np.ndarray]) -> list[int]:
    return [tick for tick, chunk in enumerate(chunks) if np.abs(chunk).max() > LOUD]


def test_the_schedule_is_what_a_browser_in_dtx_sends() -> None:
    schedule = dtx_schedule()
    silent = [t for t in schedule if TONE_END + HANGOVER <= t < SILENCE_END]
    assert [len(schedule[t]) > 1 for t in silent] == [False] + [True, False] * 4  # a CN frame per 400 ms
    assert len(schedule) == TOTAL - (SILENCE_END - TONE_END - HANGOVER - len(silent))


def test_dtx_gaps_are_silence_aligned_to_the_wall_clock() -> None:
    schedule = dtx_schedule()
    out, queued, sources = play(schedule)
    # The voice after the silence comes exactly as late as the voice before it, and as without DTX.
    steady, _, _ = play(dict(enumerate(encoded())))
    assert loud(out) == loud(steady)
    assert loud(out)[0] == LATENCY_TICKS and SILENCE_END + LATENCY_TICKS in loud(out)
    assert not set(loud(out)) & set(range(TONE_END + LATENCY_TICKS + 2, SILENCE_END + LATENCY_TICKS))
    # In the silence, only the comfort noise (and the decoder's tail of it) sounds, in its own ticks.
    cn_ticks = {t for t in schedule if TONE_END + HANGOVER < t < SILENCE_END and len(schedule[t]) > 1}
    heard = {t - LATENCY_TICKS for t in range(TONE_END + HANGOVER + 3, SILENCE_END) if out[t].any()}
    assert cn_ticks <= heard <= cn_ticks | {t + 1 for t in cn_ticks}, (sorted(cn_ticks), sorted(heard))
    assert max(np.abs(out[t]).max() for t in range(TONE_END + LATENCY_TICKS + 1, SILENCE_END)) < LOUD
    # The queue holds a jitter buffer whenever the voice plays, before and after the silence.
    voice = [*range(10, TONE_END), *range(SILENCE_END + 5, TOTAL)]
    assert all(JITTER_MS - 20 <= queued[t] <= JITTER_MS for t in voice), [queued[t] for t in voice]
    stats = source_stats(sources, TONE_A)
    assert stats["dtx_gaps"] == 5  # four comfort-noise frames and the voice coming back
    assert stats["lost"] == 0 and stats["underruns"] == 0 and stats["dropped_ms"] == 0
    assert stats["resampled_ms"] == 0  # no clock drift read into the gaps


def test_a_comfort_noise_frame_lost_in_dtx_is_still_silence_not_an_underrun() -> None:
    schedule = dtx_schedule()
    lost = min(t for t in schedule if t > TONE_END + HANGOVER + 1 and len(schedule[t]) > 1)
    del schedule[lost], schedule[lost + 1]  # the CN frame and its TOC byte: two sequence numbers
    out, _, sources = play(schedule)
    stats = source_stats(sources, TONE_A)
    assert stats["underruns"] == 0 and stats["resampled_ms"] == 0 and stats["dtx_gaps"] == 4
    assert loud(out)[-(TOTAL - SILENCE_END - LATENCY_TICKS) :][0] == SILENCE_END + LATENCY_TICKS


def test_loss_in_a_steady_stream_is_not_taken_for_silence() -> None:
    schedule = dict(enumerate(opus_tone(440, 50)))
    for t in (20, 21, 30):
        schedule.pop(t)
    sources = Sources(lambda ssrc: None, jitter_ms=JITTER_MS)
    sources.add(TONE_A, "audio", "opus", OPUS_PT)
    sources.set_wanted([TONE_A], None)
    seq = 0
    for tick in range(50):  # the sequence numbers skip the lost packets' numbers
        if tick in schedule:
            sources.on_rtp(rtp(seq + tick, 960 * tick, TONE_A, OPUS_PT, schedule[tick]))
        sources.mix()
    stats = source_stats(sources, TONE_A)
    assert stats["lost"] == 3 and stats["dtx_gaps"] == 0


@pytest.mark.parametrize(
    ("packet", "samples"),
    [
        (bytes([0x08]), 960),
        (bytes([0x18]), 2880),
        (bytes([0x60]), 480),
        (bytes([0x78, 0, 0]), 960),
        (bytes([0x80]), 120),
        (bytes([0xF8 | 1]), 1920),
        (bytes([0xFB, 0x03]), 2880),
        (bytes([0x0B, 0x83]), 2880),
    ],
)
def test_opus_samples_from_the_toc(packet: bytes, samples: int) -> None:
    assert opus_samples(packet) == samples


def test_opus_samples_refuses_what_it_cannot_read() -> None:
    for bad in (b"", bytes([0x0B])):
        with pytest.raises(ValueError):
            opus_samples(bad)


# The active speaker.


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    fake = SimpleNamespace(now=100.0)
    monkeypatch.setattr(sfu.observers, "time", SimpleNamespace(monotonic=lambda: fake.now))
    return fake


def test_a_dtx_microphone_weighs_as_much_as_a_steady_one(clock: SimpleNamespace) -> None:
    changes: list[object] = []
    observer = ActiveSpeakerObserver(changes.append)
    voice = SPEECH_LEVEL - 23  # 100 above silence: loud for its 200 ms, not for the whole window
    # The last 200 ms of a window are voice; before it, a DTX microphone sent one packet, a steady
    # one fifteen. Per packet received the DTX one would average 10 * 100 / 11, above the speech
    # level; over the window's time both are 40: neither speaks yet.
    for member, quiet_packets in (("dtx", 1), ("steady", PACKETS_PER_WINDOW - 10)):
        for level in [127] * quiet_packets + [voice] * 10:
            observer.feed(member, level)
    observer.evaluate()
    assert changes == [] and observer.speaker is None
    # A voice is the speaker; when it goes quiet in DTX it decays to silent: a quieter voice takes over.
    for _ in range(PACKETS_PER_WINDOW):
        observer.feed("alice", voice)
    observer.evaluate()
    assert changes == ["alice"]
    for _ in range(2):
        clock.now += WINDOW
        observer.feed("alice", 127)  # comfort noise, one packet per 400 ms
        for _ in range(PACKETS_PER_WINDOW):
            observer.feed("bob", voice + 20)
        observer.evaluate()
    assert changes == ["alice", "bob"]

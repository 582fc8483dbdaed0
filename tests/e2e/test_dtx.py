"""Opus DTX with a real Chromium: the SFU's answer asks for it (``usedtx=1``, ``media.opus_dtx``), and
a member whose microphone is silent then sends a few packets a second instead of 50.

The e2e harness's fake microphones play a continuous tone (never silent), and Chromium's own fake
microphone (no file) beeps with only ~0.9 s of silence between beeps. Here Alice's microphone is a
WAV made by the test (``--use-file-for-fake-audio-capture``, which Chromium loops): a 300 ms beep
at 440 Hz, then 2.7 s of digital silence. Bruno's is all silence, so both are in DTX between the
beeps, and the server's count of audio packets received (``/metrics``, the producers' counters)
falls far below the 50 a second one microphone sends without DTX. Bruno still hears the beep.

Measured (Debian Chromium 156, loopback): without DTX 100 packets/s for the two, 48-51/s each; with it
Alice sends 3.7/s in her silences (a comfort-noise frame and a TOC byte per 400 ms, ~35/s over a
window holding a beep), the server counts 7-8/s for the two. Bruno's silent microphone is not
always silent: while Alice's beep plays on his page his Chromium sends up to ~45 packets/s (its
audio processing seemingly reacts to what it plays; not investigated further), so the assertions
are on Alice's own counters and on the quietest seconds of the server's count.
"""

from __future__ import annotations

import asyncio
import math
import re
import struct
import time
import urllib.request
import wave
from pathlib import Path

import pytest

from .browser import audio_peak, inbound_stats, wait_until
from .media import FakeMedia, write_y4m
from .test_member_controls import Member, log, meet

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

RATE = 48_000
BEEP_S, PERIOD_S, BEEP_HZ = 0.3, 3.0, 440
MEASURE_S = 9.0  # three loops of the WAV
SAMPLE_EVERY_S = 0.25
AUDIO_RECEIVED = re.compile(r'^hemicycle_rtp_received_packets_total\{(?=[^}]*kind="audio")[^}]*\} (\S+)$', re.M)

# The audio packets Alice's publishing connection has sent, and the Opus fmtp of the SFU's answer.
PUBLISHED_AUDIO_JS = """async () => {
  const pc = window.hemicycle?.connection?.publishPc;
  if (!pc || !pc.remoteDescription) return null;
  let packets = null;
  (await pc.getStats()).forEach(s => {
    if (s.type === 'outbound-rtp' && s.kind === 'audio') packets = (packets || 0) + (s.packetsSent || 0);
  });
  const opus = pc.remoteDescription.sdp.match(/a=rtpmap:(\\d+) opus\\//i);
  const fmtp = opus && pc.remoteDescription.sdp.match(new RegExp(`a=fmtp:${opus[1]} (.*)`));
  return {packets, fmtp: fmtp ? fmtp[1].trim() : null};
}"""


def write_wav(path: Path, beep_s: float) -> Path:
    """PERIOD_S seconds of 16-bit mono: a beep of ``beep_s`` (faded in and out, no click), then zeros."""
    beep, total = int(RATE * beep_s), int(RATE * PERIOD_S)
    fade = RATE // 100
    samples = [
        int(0.5 * 32767 * min(1.0, i / fade, (beep - i) / fade) * math.sin(2 * math.pi * BEEP_HZ * i / RATE))
        for i in range(beep)
    ]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(struct.pack(f"<{total}h", *samples, *([0] * (total - beep))))
    return path


def audio_received(base_url: str) -> int:
    """The sitting's audio RTP packets received from publishers so far, from /metrics (loopback)."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(int(float(value)) for value in AUDIO_RECEIVED.findall(text))


def rates(samples: list[tuple[float, int]], window: float = 1.0) -> list[float]:
    """Packets per second over each ``window`` of the (time, count) samples."""
    out = []
    for i, (t0, c0) in enumerate(samples):
        later = [(t, c) for t, c in samples[i:] if t - t0 >= window]
        if later:
            t1, c1 = later[0]
            out.append((c1 - c0) / (t1 - t0))
    return out


async def heard_packets(member: Member, pid: str) -> int:
    """Packets of ``pid``'s microphone ``member``'s subscribing connection has received."""
    stats = await inbound_stats(member.page) or {}
    return int(stats.get(f"{pid}|mic|audio", {}).get("packets", 0))


async def test_a_silent_chromium_microphone_uses_dtx_and_the_beep_still_comes_through(
    server, browser_factory, tmp_path
):
    log("start")
    y4m = write_y4m(tmp_path / "grey.y4m", (128, 128, 128))
    alice_media = FakeMedia("beep", (128, 128, 128), BEEP_HZ, y4m, write_wav(tmp_path / "beep.wav", BEEP_S))
    bruno_media = FakeMedia("silent", (128, 128, 128), 0, y4m, write_wav(tmp_path / "silent.wav", 0.0))
    names = ["Alice Martin", "Bruno Keller"]
    urls, browsers = await asyncio.gather(
        asyncio.gather(*(asyncio.to_thread(server.invite, n) for n in names)),
        asyncio.gather(browser_factory(names[0], alice_media), browser_factory(names[1], bruno_media)),
    )
    alice, bruno = (Member(n, "grey", b, u) for n, b, u in zip(names, browsers, urls))
    await asyncio.gather(*(m.page.goto(m.url) for m in (alice, bruno)))
    ids = await meet([alice, bruno])

    published = await wait_until(lambda: alice.page.evaluate(PUBLISHED_AUDIO_JS), 10, what="Alice's publishPc")
    log(f"the SFU's answer to Alice: a=fmtp {published['fmtp']}")
    assert "usedtx=1" in published["fmtp"].split(";"), published

    # Bruno hears Alice's beep (the loudest bin at 440 Hz, over reads spanning a whole loop).
    async def beep_heard():
        peak = await audio_peak(bruno.page, ids[alice.name], reads=22)
        return peak if peak and peak["peak_db"] > -60 and abs(peak["peak_hz"] - BEEP_HZ) < 40 else None

    peak = await wait_until(beep_heard, 20, what="Bruno hears Alice's beep")
    log(f"Bruno hears Alice: {peak}")

    await asyncio.sleep(2.0)  # past the start-up: the encoders settled
    server_samples: list[tuple[float, int]] = []
    sent: dict[str, list[tuple[float, int]]] = {alice.name: [], bruno.name: []}
    heard_before = await heard_packets(bruno, ids[alice.name])
    started = time.monotonic()
    while (now := time.monotonic()) - started < MEASURE_S:
        server_samples.append((now, await asyncio.to_thread(audio_received, server.base_url)))
        for member in (alice, bruno):
            packets = (await member.page.evaluate(PUBLISHED_AUDIO_JS) or {}).get("packets")
            if packets is not None:
                sent[member.name].append((now, packets))
        await asyncio.sleep(SAMPLE_EVERY_S)
    heard = await heard_packets(bruno, ids[alice.name]) - heard_before
    elapsed = server_samples[-1][0] - server_samples[0][0]
    server_mean = (server_samples[-1][1] - server_samples[0][1]) / elapsed
    server_rates, alice_rates = rates(server_samples), rates(sent[alice.name])
    log(
        f"audio packets/s over {elapsed:.1f} s: the server received {server_mean:.1f} (both members), "
        f"{min(server_rates):.1f}..{max(server_rates):.1f} per 1-s window; Alice sent "
        f"{min(alice_rates):.1f}..{max(alice_rates):.1f} per 1-s window, Bruno got {heard / elapsed:.1f}/s of it; "
        f"Bruno sent {[round(r) for r in rates(sent[bruno.name])]} per 1-s window"
    )
    # Without DTX two open microphones are 100 packets/s, silent or not.
    assert server_mean < 40, f"the server receives {server_mean:.1f} audio packets/s from two mostly silent members"
    assert min(server_rates) < 15, f"no second of silence below 15 packets/s: {server_rates}"
    assert min(alice_rates) < 10, f"Alice sends {min(alice_rates):.1f}+ packets/s even when silent: {alice_rates}"
    assert max(alice_rates) > 15, f"Alice's beeps are not sent at the full rate: {alice_rates}"
    assert heard > 0, "Bruno receives nothing of Alice's microphone"
    peak = await wait_until(beep_heard, 10, what="Bruno still hears Alice's beep after the measure")
    log(f"Bruno still hears Alice: {peak}")

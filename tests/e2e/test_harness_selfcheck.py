"""Checks of the harness itself, without the Hemicycle server.

A static page (selfcheck/loopback.html) loops the fake camera and microphone through two
local peer connections and shows them with the web client's DOM conventions, so the
in-page probes (colour, tone, framesDecoded, DTLS, axe) are checked against known media.
"""

from __future__ import annotations

import asyncio
import cmath
import math
import struct
import wave
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from .browser import AXE_JS, audio_frequency, dtls_info, frames_decoded, remote_tiles, run_axe, tile_colour, wait_until
from .media import HEIGHT, PALETTE, WIDTH, generate

SELFCHECK = Path(__file__).parent / "selfcheck"


def _power(samples: list[int], freq: float, rate: int) -> float:
    step = -2j * math.pi * freq / rate
    return abs(sum(s * cmath.exp(step * i) for i, s in enumerate(samples)))


def test_media_files(tmp_path: Path) -> None:
    media = generate(tmp_path)
    assert set(media) == set(PALETTE)
    for m in media.values():
        with open(m.y4m, "rb") as f:
            header = f.readline().decode()
            assert header.startswith(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F15:1")
            assert f.read(6) == b"FRAME\n"
        with wave.open(str(m.wav)) as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 48_000)
            samples = list(struct.unpack("<4800h", w.readframes(4800)))
        # the tone is where it should be, and not a neighbour's
        assert _power(samples, m.tone_hz, 48_000) > 20 * _power(samples, m.tone_hz + 110, 48_000)
    assert generate(tmp_path)["red"].y4m.stat().st_mtime == media["red"].y4m.stat().st_mtime  # cached


@pytest_asyncio.fixture
async def static_site():
    app = web.Application()
    app.router.add_static("/", SELFCHECK)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.mark.e2e
@pytest.mark.asyncio
@pytest.mark.parametrize("colour", ["red", "yellow"])
async def test_chromium_probes_on_loopback_page(static_site, browser_factory, fake_media, colour):
    c = await browser_factory(f"selfcheck-{colour}", fake_media[colour])
    await c.page.goto(f"{static_site}/loopback.html")
    await c.page.click("#join-button")
    tiles = await wait_until(lambda: remote_tiles(c.page), 10, what="tiles")
    assert tiles == [{"participant_id": "p-loop", "name": "Loopback Councillor"}]
    assert await wait_until(lambda: tile_colour(c.page, "p-loop"), 10, what="colour") == colour
    freq = await audio_frequency(c.page, "p-loop")
    assert freq is not None and abs(freq - fake_media[colour].tone_hz) <= 40
    before = await frames_decoded(c.page)
    await asyncio.sleep(1)
    after = await frames_decoded(c.page)
    assert after["p-loop"] > before["p-loop"] > 0
    for pc, t in (await dtls_info(c.page)).items():
        assert t["dtlsState"] == "connected" and t["srtpCipher"], (pc, t)
    if AXE_JS.exists():
        assert await run_axe(c.page) == []
    # a crash, as in the leave test: the processes are gone
    assert c.pids()
    c.kill()
    await wait_until(lambda: asyncio.sleep(0, result=not c.pids()), 5, what="browser killed")


@pytest.mark.e2e
@pytest.mark.asyncio
async def test_firefox_bidi_basics(static_site, firefox_factory):
    ff = await firefox_factory("selfcheck-firefox")
    await ff.navigate(f"{static_site}/loopback.html")
    assert await ff.evaluate("document.title") == "harness self-check"
    assert await ff.call("(a, b) => ({sum: a + b})", 2, 3) == {"sum": 5}
    await ff.click("#join-button")
    # the fake devices opened without a prompt, and the page shows its tile
    tiles = await wait_until(
        lambda: ff.call("() => [...document.querySelectorAll('figure.tile')].map(f => f.dataset.participantId)"),
        15,
        what="Firefox tile",
    )
    assert tiles == ["p-loop"]
    n_tracks = await ff.evaluate("window.hemicycle.connection.publishPc.getSenders().filter(s => s.track).length")
    assert n_tracks == 2

"""The public watches: /live/<sitting> in headless Chromium, over WHEP, then over HLS.

A Chromium councillor (red fake camera, tone) is in the sitting, so the programme
runs (640x360@15 here). A visitor with no token opens the public page, clicks the
play button (autoplay with sound is blocked by browsers) and the programme plays
over WebRTC (WHEP): the video element's frames advance and the page says which
mode plays. With /whep unreachable the same page falls back to HLS (hls.js).
"""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import async_playwright

from .browser import launch_chromium, run_axe, wait_until
from .test_chair_runs_sitting import join_and_wait

pytestmark = [pytest.mark.e2e, pytest.mark.programme, pytest.mark.asyncio]

FRAMES_JS = "() => { const v = document.getElementById('live-video'); " \
            "return v ? {frames: v.getVideoPlaybackQuality().totalVideoFrames, time: v.currentTime, " \
            "width: v.videoWidth, paused: v.paused, muted: v.muted} : null; }"


async def video_advances(page, what: str) -> dict:  # type: ignore[no-untyped-def]
    first = await wait_until(
        lambda: _playing(page), 30, interval=0.5, what=f"{what}: the programme plays"
    )
    await asyncio.sleep(2.0)
    later = await page.evaluate(FRAMES_JS)
    assert later["frames"] > first["frames"] + 10 and later["time"] > first["time"] + 1.0, (first, later)
    assert later["width"] == 640 and not later["paused"] and not later["muted"], later
    return later


async def _playing(page):  # type: ignore[no-untyped-def]
    state = await page.evaluate(FRAMES_JS)
    return state if state and state["frames"] > 5 and state["width"] > 0 else None


async def test_public_page_plays_over_whep_then_hls(server, fake_media) -> None:  # type: ignore[no-untyped-def]
    join_url = await asyncio.to_thread(server.invite, "Alice Martin")
    async with async_playwright() as pw:
        alice = await launch_chromium(pw, "alice", fake_media["red"].y4m, fake_media["red"].wav)
        visitor = await launch_chromium(pw, "visitor")
        try:
            await alice.page.goto(join_url)
            await join_and_wait(alice.page, "Alice Martin")

            page = visitor.page
            await page.goto(f"{server.base_url}/live/{server.sitting_id}")
            await page.locator("#play-button").click(timeout=15_000)
            await video_advances(page, "WHEP")
            mode = await page.locator("#mode-line").text_content()
            assert mode and "WebRTC" in mode, mode
            assert await run_axe(page) == []

            # Without WHEP (a proxy that does not pass it, too many viewers): HLS.
            fallback = await visitor.context.new_page()
            await fallback.route(re.compile(r".*/whep/.*"), lambda route: route.abort())
            await fallback.goto(f"{server.base_url}/live/{server.sitting_id}")
            await fallback.locator("#play-button").click(timeout=15_000)
            await video_advances(fallback, "HLS")
            mode = await fallback.locator("#mode-line").text_content()
            assert mode and "HLS" in mode, mode
        finally:
            await visitor.close()
            await alice.close()

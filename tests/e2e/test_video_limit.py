"""A councillor chooses how many videos to receive (« Vidéos reçues »), in real Chromium.

Bruno chairs, Alice and Chloé are councillors; Alice picks 1 (she keeps the chair's
camera, which ranks first), then « Aucune », then « Selon la séance ». What the
server forwards is read from Alice's inbound RTP counters per slot; what she sees from
her tiles: a camera that is not received shows the member's initials and « Vidéo non
reçue », never a frozen picture. Sound is never limited.
"""

from __future__ import annotations

import asyncio

import pytest

from .browser import hemicycle_state, run_axe, wait_until
from .test_member_controls import COUNCILLORS, Member, click_join, log, meet, wait_rising, wait_stalled

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]


async def _tiles(page) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    state = await hemicycle_state(page) or {"tiles": []}
    return {t["participant_id"]: t for t in state["tiles"] if t["source"] == "camera"}


async def _wait_tiles(page, expected: dict[str, bool], what: str) -> None:  # type: ignore[no-untyped-def]
    """expected: participant id -> received (video shown) or held (initials and the badge)."""

    async def check() -> bool:
        tiles = await _tiles(page)
        return all(
            pid in tiles and tiles[pid]["held"] == (not received) and tiles[pid]["video"] == received
            for pid, received in expected.items()
        )

    await wait_until(check, 10.0, interval=0.2, what=what)


async def test_a_councillor_limits_the_videos_she_receives(server, browser_factory, fake_media):
    log("start")
    roles = {"Alice Martin": "councillor", "Bruno Keller": "chair", "Chloé Dubois": "councillor"}
    urls, browsers = await asyncio.gather(
        asyncio.gather(*(asyncio.to_thread(server.invite, n, r) for n, r in roles.items())),
        asyncio.gather(*(browser_factory(n, fake_media[COUNCILLORS[n]]) for n in roles)),
    )
    a, b, c = (Member(n, COUNCILLORS[n], br, u) for n, br, u in zip(roles, browsers, urls))
    await asyncio.gather(*(m.page.goto(m.url) for m in (a, b, c)))
    ids = await meet([a, b, c])
    bruno, chloe = ids[b.name], ids[c.name]
    for pid in (bruno, chloe):
        await wait_rising(a.page, pid, "camera", "video", "packets", "A before the limit")
    await _wait_tiles(a.page, {bruno: True, chloe: True}, "A sees both cameras")

    await a.page.select_option("#video-limit", "1")
    log("A asks for 1 video")

    await _wait_tiles(a.page, {bruno: True, chloe: False}, "A: the chair's camera received, Chloé's held")
    received, held = bruno, chloe
    await wait_stalled(a.page, held, "camera", "video", "packets", "A: the held camera sends nothing")
    await wait_rising(a.page, received, "camera", "video", "packets", "A: the chosen camera still flows")
    badge = a.page.locator(f'figure.tile[data-participant-id="{held}"][data-source="camera"] .badge-held')
    assert await badge.is_visible() and (await badge.text_content()) == "Vidéo non reçue"
    await wait_rising(a.page, held, "mic", "audio", "packets", "A still hears the member whose video is held")
    assert await run_axe(a.page) == []

    await a.page.select_option("#video-limit", "0")
    await _wait_tiles(a.page, {bruno: False, chloe: False}, "A: no video at all")
    for pid in (bruno, chloe):
        await wait_stalled(a.page, pid, "camera", "video", "packets", "A: sound only")
        await wait_rising(a.page, pid, "mic", "audio", "packets", "A: sound only, still heard")
    log("A receives sound only")

    await a.page.select_option("#video-limit", "")
    await _wait_tiles(a.page, {bruno: True, chloe: True}, "A sees both cameras again")
    for pid in (bruno, chloe):
        await wait_rising(a.page, pid, "camera", "video", "packets", "A: both cameras again")
    # Bruno never chose anything: he received both all along.
    await _wait_tiles(b.page, {ids[a.name]: True, chloe: True}, "B sees both cameras")

    # The choice is this device's: Alice picks « Aucune », comes back later, and still gets none.
    await a.page.select_option("#video-limit", "0")
    await _wait_tiles(a.page, {bruno: False, chloe: False}, "A: no video before leaving")
    await a.page.reload()
    await click_join(a)
    await _wait_tiles(a.page, {bruno: False, chloe: False}, "A, back: still no video")
    assert await a.page.input_value("#video-limit") == "0"
    log("done")

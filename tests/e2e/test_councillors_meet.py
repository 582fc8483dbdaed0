"""Three councillors meet: real browsers, real server, real media over loopback.

Each councillor's fake camera is a solid colour and their fake microphone a pure tone, so
every page can check that each tile shows the right person's picture and sound.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from .browser import (
    DTLS_JS,
    FRAMES_DECODED_JS,
    REMOTE_TILES_JS,
    TILE_COLOUR_JS,
    audio_frequency,
    dtls_info,
    frames_decoded,
    remote_tiles,
    run_axe,
    tile_colour,
    wait_until,
)
from .media import COLOURS, nearest_colour

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

MEET_TIMEOUT = 20.0
LEAVE_TIMEOUT = 15.0
TONE_TOLERANCE_HZ = 40.0

# name shown in the tiles -> colour of their fake camera (and so their tone)
CHROMIUM_COUNCILLORS = {"Alice Martin": "red", "Bruno Keller": "green", "Chloé Dubois": "blue"}
FIREFOX_COUNCILLOR = "Élodie Weber"


async def join(page, url: str) -> None:
    await page.goto(url)
    await page.locator("#join-button").click(timeout=15_000)


_T0 = [0.0]


def phase(msg: str) -> None:
    """Timestamped progress, shown with the captured output when a test fails."""
    now = time.monotonic()
    if not _T0[0] or msg.startswith("start"):
        _T0[0] = now
    print(f"[{now - _T0[0]:6.1f}s] {msg}", flush=True)


async def wait_for_value(get, expected, timeout: float, what: str, match=lambda got, exp: got == exp):
    last = None

    async def check():
        nonlocal last
        last = await get()
        return last is not None and match(last, expected)

    try:
        await wait_until(check, timeout, what=what)
    except AssertionError:
        raise AssertionError(f"{what}: expected {expected!r}, last seen {last!r}") from None
    return last


async def assert_frames_rising(get_frames, participant_ids: list[str], who: str) -> None:
    """Every participant's framesDecoded goes up within a few seconds (a reading taken while the
    subscribing connection renegotiates can be empty: read again rather than fail on it)."""
    before = await get_frames() or {}
    after: dict = {}
    deadline = asyncio.get_running_loop().time() + 8.0
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(1.5)
        after = await get_frames() or {}
        if all(after.get(pid, 0) > before.get(pid, 0) for pid in participant_ids):
            return
    for pid in participant_ids:
        assert after.get(pid, 0) > before.get(pid, 0), (
            f"{who}: video of {pid} not decoding (framesDecoded {before} -> {after})"
        )


def assert_dtls(info: dict, who: str, need_cipher: bool = True) -> None:
    for pc in ("publishPc", "subscribePc"):
        t = info.get(pc)
        assert t and t["dtlsState"] == "connected", f"{who}: {pc} transport {t}"
        if need_cipher:
            assert t["srtpCipher"], f"{who}: {pc} has no SRTP cipher: {t}"


async def check_chromium_page(c, others: dict[str, str], fake_media, not_colour_checked=()) -> dict:
    """On one Chromium page: tiles, colour, tone and decoding of each other councillor."""
    page = c.page
    ids = await wait_until(
        lambda: _ids(page, set(others) | set(not_colour_checked)),
        MEET_TIMEOUT,
        what=f"{c.name}: remote tiles of {sorted(set(others) | set(not_colour_checked))}",
    )
    for name, colour in others.items():
        pid = ids[name]
        await wait_for_value(
            lambda pid=pid: tile_colour(page, pid), colour, MEET_TIMEOUT, f"{c.name}: colour of {name}'s tile"
        )
        tone = fake_media[colour].tone_hz
        await wait_for_value(
            lambda pid=pid: audio_frequency(page, pid),
            tone,
            10,
            f"{c.name}: tone of {name}",
            lambda got, exp: abs(got - exp) <= TONE_TOLERANCE_HZ,
        )
    await assert_frames_rising(lambda: frames_decoded(page), list(ids.values()), c.name)
    assert_dtls(await dtls_info(page), c.name)
    return ids


async def _ids(page, names: set[str]):
    tiles = await remote_tiles(page)
    got = {t["name"]: t["participant_id"] for t in tiles}
    return got if set(got) == names else None


async def wait_tile_gone(page, pid: str, who: str) -> None:
    async def gone():
        return all(t["participant_id"] != pid for t in await remote_tiles(page))

    await wait_until(gone, LEAVE_TIMEOUT, what=f"{who}: tile of {pid} to disappear")


async def test_three_councillors_meet(server, browser_factory, fake_media):
    phase("start")
    names = list(CHROMIUM_COUNCILLORS)
    # the invitations (the real CLI) and the browsers start side by side
    urls, councillors = await asyncio.gather(
        asyncio.gather(*(asyncio.to_thread(server.invite, n) for n in names)),
        asyncio.gather(*(browser_factory(n, fake_media[CHROMIUM_COUNCILLORS[n]]) for n in names)),
    )
    await asyncio.gather(*(join(c.page, url) for c, url in zip(councillors, urls)))
    phase("Chromium councillors clicked join")

    ids_seen = {}
    for c in councillors:
        others = {n: col for n, col in CHROMIUM_COUNCILLORS.items() if n != c.name}
        ids_seen[c.name] = await check_chromium_page(c, others, fake_media)
        phase(f"{c.name}: tiles, colours, tones, decoding and DTLS checked")

    violations = await run_axe(councillors[0].page)
    phase(f"axe: {len(violations)} serious/critical violations")
    assert violations == [], f"axe: serious/critical violations in the room page: {violations}"

    leaver, stayers = councillors[-1], councillors[:-1]
    leaver.kill()  # no clean leave: the browser dies
    phase(f"killed {leaver.name}'s browser")
    for c in stayers:
        await wait_tile_gone(c.page, ids_seen[c.name][leaver.name], c.name)
        phase(f"{c.name}: tile of {leaver.name} gone")


async def test_firefox_councillor_among_chromium(server, browser_factory, firefox_factory, fake_media):
    phase("start")
    chromium_names = list(CHROMIUM_COUNCILLORS)[:2]
    urls, ff, chromes = await asyncio.gather(
        asyncio.gather(*(asyncio.to_thread(server.invite, n) for n in [*chromium_names, FIREFOX_COUNCILLOR])),
        firefox_factory(FIREFOX_COUNCILLOR),
        asyncio.gather(*(browser_factory(n, fake_media[CHROMIUM_COUNCILLORS[n]]) for n in chromium_names)),
    )
    await asyncio.gather(*(join(c.page, url) for c, url in zip(chromes, urls)))
    phase("Chromium councillors clicked join")
    await ff_join(ff, urls[2])
    phase("Firefox joined, DTLS connected")

    for c in chromes:
        others = {n: CHROMIUM_COUNCILLORS[n] for n in chromium_names if n != c.name}
        ids = await check_chromium_page(c, others, fake_media, not_colour_checked=[FIREFOX_COUNCILLOR])
        phase(f"{c.name}: tiles, colours, tones, decoding and DTLS checked")
        # Firefox's fake camera is a moving pattern: check only that it plays
        await assert_frames_rising(
            lambda c=c: frames_decoded(c.page), [ids[FIREFOX_COUNCILLOR]], f"{c.name} watching Firefox"
        )

    # the Firefox page decodes both Chromium councillors, over DTLS (no srtpCipher in Firefox)
    async def ff_ids():
        got = {t["name"]: t["participant_id"] for t in await ff.call(REMOTE_TILES_JS)}
        return got if set(got) == set(chromium_names) else None

    ids = await wait_until(ff_ids, MEET_TIMEOUT, what="Firefox: remote tiles")
    assert_dtls(await ff.call(DTLS_JS), "Firefox", need_cipher=False)
    await assert_frames_rising(lambda: ff.call(FRAMES_DECODED_JS), list(ids.values()), "Firefox")
    for name in chromium_names:
        rgb = await ff.call(TILE_COLOUR_JS, ids[name])
        assert rgb and nearest_colour(rgb, COLOURS) == CHROMIUM_COUNCILLORS[name], f"Firefox: {name}'s tile is {rgb}"


async def ff_join(ff, url: str, attempts: int = 3) -> None:
    """Open the link in Firefox and join; rejoin if ICE fails (its two host sockets may collide)."""
    for attempt in range(1, attempts + 1):
        await ff.navigate(url)
        # like Playwright's click: wait until the button is enabled (it is disabled while the
        # pre-join screen opens the camera and microphone; a click then does nothing)
        await wait_until(
            lambda: ff.evaluate("document.querySelector('#join-button')?.disabled === false"),
            15,
            what="Firefox: #join-button enabled",
        )
        await ff.click("#join-button")
        try:
            await wait_until(lambda: _both_connected(ff, DTLS_JS), 10, what="Firefox: DTLS connected")
            return
        except AssertionError:
            if attempt == attempts:
                raise
            phase(f"Firefox: ICE/DTLS not connected, rejoining (attempt {attempt + 1})")


async def _both_connected(ff, dtls_js) -> bool:
    info = await ff.call(dtls_js)
    return all(info.get(pc) and info[pc]["dtlsState"] == "connected" for pc in ("publishPc", "subscribePc"))

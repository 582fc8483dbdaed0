"""A councillor's own controls, seen from the other councillors' browsers.

Mute, camera off, screen share, audio-only, a late joiner's first pictures and the
language switch: each test holds one sitting of 2-3 headless Chromium councillors on the
real server, clicks the real buttons and checks what the *other* pages receive (tiles,
badges, inbound RTP counters per slot, colour of the picture, frequency of the sound).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest

from .browser import (
    Councillor,
    all_remote_tiles,
    audio_frequency,
    audio_peak,
    hemicycle_state,
    inbound_stats,
    run_axe,
    tile_colour,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

MEET_TIMEOUT = 20.0
CHANGE_TIMEOUT = 8.0
TONE_TOLERANCE_HZ = 40.0
SILENCE_DB = -90.0  # the analyser's loudest bin below this: nothing audible
LATE_JOINER_BUDGET_S = 3.0

COUNCILLORS = {"Alice Martin": "red", "Bruno Keller": "green", "Chloé Dubois": "blue"}


def log(msg: str, _t0: list[float] = [0.0]) -> None:  # noqa: B006 - a process-wide start time
    now = time.monotonic()
    if not _t0[0] or msg.startswith("start"):
        _t0[0] = now
    print(f"[{now - _t0[0]:6.1f}s] {msg}", flush=True)


@dataclass
class Member:
    name: str
    colour: str
    browser: Councillor
    url: str

    @property
    def page(self):
        return self.browser.page


async def open_members(server, browser_factory, fake_media, names: list[str]) -> list[Member]:
    urls, browsers = await asyncio.gather(
        asyncio.gather(*(asyncio.to_thread(server.invite, n) for n in names)),
        asyncio.gather(*(browser_factory(n, fake_media[COUNCILLORS[n]]) for n in names)),
    )
    members = [Member(n, COUNCILLORS[n], b, u) for n, b, u in zip(names, browsers, urls)]
    await asyncio.gather(*(m.page.goto(m.url) for m in members))
    return members


async def click_join(m: Member) -> None:
    await m.page.locator("#join-button").click(timeout=15_000)


async def ids_on(m: Member, names: set[str]) -> dict[str, str]:
    """name -> participant id of the others, once m's page knows them all (and has their tiles)."""

    async def known():
        state = await hemicycle_state(m.page)
        if not state or not state["joined"]:
            return None
        got = {p["name"]: p["id"] for p in state["participants"] if p["connected"]}
        tiles = {t["participant_id"] for t in state["tiles"] if t["source"] == "camera"}
        if set(got) != names or not set(got.values()) <= tiles:
            return None
        return got

    return await wait_until(known, MEET_TIMEOUT, what=f"{m.name}: participants {sorted(names)}")


async def meet(members: list[Member]) -> dict[str, str]:
    """Everyone clicks join; returns name -> participant id (the same on every page)."""
    await asyncio.gather(*(click_join(m) for m in members))
    ids: dict[str, str] = {}
    for m in members:
        seen = await ids_on(m, {o.name for o in members if o is not m})
        for name, pid in seen.items():
            assert ids.setdefault(name, pid) == pid, f"{name} has two ids: {ids[name]} and {pid}"
    log("everyone sees everyone")
    return ids


async def tile(page, pid: str, source: str = "camera") -> dict | None:
    for t in await all_remote_tiles(page):
        if t["participant_id"] == pid and t["source"] == source:
            return t
    return None


async def counter(page, pid: str, source: str, kind: str, what: str = "packets") -> int | None:
    stats = await inbound_stats(page) or {}
    entry = stats.get(f"{pid}|{source}|{kind}")
    return None if entry is None else entry[what]


async def rising(page, pid: str, source: str, kind: str, what: str, window: float = 1.0) -> tuple[int, int]:
    before = await counter(page, pid, source, kind, what) or 0
    await asyncio.sleep(window)
    after = await counter(page, pid, source, kind, what) or 0
    return before, after


async def wait_rising(page, pid, source, kind, what, who: str, timeout: float = MEET_TIMEOUT) -> None:
    async def check():
        before, after = await rising(page, pid, source, kind, what, 0.7)
        return after > before

    await wait_until(check, timeout, interval=0.1, what=f"{who}: {what} of {pid}/{source}/{kind} rising")


async def wait_stalled(page, pid, source, kind, what, who: str, timeout: float = CHANGE_TIMEOUT) -> int:
    """Wait until a counter stops moving for a whole second; return its value."""
    last = {}

    async def check():
        before, after = await rising(page, pid, source, kind, what, 1.0)
        last["v"] = (before, after)
        return after == before

    await wait_until(check, timeout, interval=0.1, what=f"{who}: {what} of {pid}/{source}/{kind} to stop")
    return last["v"][1]


async def wait_colour(page, pid: str, colour: str, who: str, timeout: float = MEET_TIMEOUT) -> None:
    last = {}

    async def check():
        last["c"] = await tile_colour(page, pid)
        return last["c"] == colour

    try:
        await wait_until(check, timeout, what=f"{who}: colour {colour} of {pid}")
    except AssertionError:
        raise AssertionError(f"{who}: tile of {pid} expected {colour}, last seen {last.get('c')!r}") from None


async def wait_tone(page, pid: str, hz: float, who: str, timeout: float = 10.0) -> float:
    last = {}

    async def check():
        last["f"] = await audio_frequency(page, pid, reads=3)
        return last["f"] is not None and abs(last["f"] - hz) <= TONE_TOLERANCE_HZ

    try:
        await wait_until(check, timeout, interval=0.2, what=f"{who}: tone {hz} Hz of {pid}")
    except AssertionError:
        raise AssertionError(f"{who}: tone of {pid} expected {hz} Hz, last heard {last.get('f')!r}") from None
    return last["f"]


async def wait_tile(page, pid: str, source: str, check, what: str, timeout: float = CHANGE_TIMEOUT) -> dict:
    last = {}

    async def ok():
        last["t"] = await tile(page, pid, source)
        return last["t"] if last["t"] is not None and check(last["t"]) else None

    try:
        return await wait_until(ok, timeout, interval=0.2, what=what)
    except AssertionError:
        raise AssertionError(f"{what}: last tile {last.get('t')!r}") from None


# ---------------------------------------------------------------------------- 1. self-mute


async def test_self_mute_silences_the_member_everywhere(server, browser_factory, fake_media):
    log("start")
    a, b = await open_members(server, browser_factory, fake_media, ["Alice Martin", "Bruno Keller"])
    ids = await meet([a, b])
    pid = ids[a.name]
    tone = fake_media[a.colour].tone_hz
    await wait_tone(b.page, pid, tone, "B before mute")
    await wait_rising(b.page, pid, "mic", "audio", "packets", "B before mute")
    log("B hears A's tone")

    await a.page.locator("#mute-button").click()
    assert await a.page.get_attribute("#mute-button", "aria-pressed") == "true"
    await wait_tile(b.page, pid, "camera", lambda t: t["muted_badge"], "B: muted badge on A's tile")
    log("B shows A muted")
    # The SFU drops the paused producer's packets: A's audio slot on B stops counting.
    stalled_at = await wait_stalled(b.page, pid, "mic", "audio", "packets", "B after A's mute")
    peak = await audio_peak(b.page, pid)
    log(f"A's audio on B: packets stalled at {stalled_at}, peak {peak}")
    assert peak is not None and peak["peak_db"] < SILENCE_DB, f"B still hears A after mute: {peak}"
    await asyncio.sleep(1.0)
    assert await counter(b.page, pid, "mic", "audio") == stalled_at, "A's audio packets flow again while muted"

    await a.page.locator("#mute-button").click()
    assert await a.page.get_attribute("#mute-button", "aria-pressed") == "false"
    await wait_tile(b.page, pid, "camera", lambda t: not t["muted_badge"], "B: muted badge of A gone")
    await wait_rising(b.page, pid, "mic", "audio", "packets", "B after A's unmute", timeout=CHANGE_TIMEOUT)
    got = await wait_tone(b.page, pid, tone, "B after unmute")
    log(f"B hears A again at {got:.0f} Hz")


# ---------------------------------------------------------------------------- 2. camera off


async def test_camera_off_and_on(server, browser_factory, fake_media):
    log("start")
    a, b = await open_members(server, browser_factory, fake_media, ["Alice Martin", "Bruno Keller"])
    ids = await meet([a, b])
    pid = ids[a.name]
    await wait_colour(b.page, pid, a.colour, "B before camera off")
    await wait_rising(b.page, pid, "camera", "video", "frames", "B before camera off")

    await a.page.locator("#camera-button").click()
    assert await a.page.get_attribute("#camera-button", "aria-pressed") == "true"
    t = await wait_tile(b.page, pid, "camera", lambda t: t["video"] == "off", "B: A's tile data-video=off")
    assert t["avatar"] == "AM", f"B: A's tile shows no initials while the camera is off: {t}"
    frames = await wait_stalled(b.page, pid, "camera", "video", "frames", "B after A's camera off")
    log(f"A's tile on B is off, initials {t['avatar']}, frames stalled at {frames}")
    own = await a.page.evaluate(
        """() => document.querySelector('figure.tile[data-self="true"][data-source="camera"]')?.dataset.video"""
    )
    assert own == "off", f"A's own preview tile is {own!r} with the camera off"

    await a.page.locator("#camera-button").click()
    assert await a.page.get_attribute("#camera-button", "aria-pressed") == "false"
    await wait_tile(b.page, pid, "camera", lambda t: t["video"] == "on", "B: A's tile data-video=on again")
    await wait_rising(b.page, pid, "camera", "video", "frames", "B after camera on", timeout=CHANGE_TIMEOUT)
    await wait_colour(b.page, pid, a.colour, "B after camera on", timeout=CHANGE_TIMEOUT)
    log("A's colour is back on B")


# ---------------------------------------------------------------------------- 3. screen share


async def share_and_check(a: Member, b: Member, pid: str, round_: int) -> str:
    await a.page.locator("#screen-button").click()
    await wait_until(
        lambda: _pressed(a.page, "#screen-button"), CHANGE_TIMEOUT, what=f"A: #screen-button pressed (share {round_})"
    )
    t = await wait_tile(
        b.page,
        pid,
        "screen",
        lambda t: t["video"] == "on" and t["video_size"] and t["video_size"][0] > 0,
        f"B: A's screen tile playing (share {round_})",
        timeout=MEET_TIMEOUT,
    )
    await wait_rising(b.page, pid, "screen", "video", "frames", f"B: A's screen (share {round_})")
    stats = await inbound_stats(b.page) or {}
    mid = stats[f"{pid}|screen|video"]["mid"]
    # the camera goes on beside the screen
    await wait_rising(b.page, pid, "camera", "video", "frames", f"B: A's camera during share {round_}")
    log(f"share {round_}: B decodes A's screen {t['video_size']} on mid {mid}, name {t['name']!r}")
    return mid


async def _pressed(page, selector: str) -> bool:
    return await page.get_attribute(selector, "aria-pressed") == "true"


async def test_screen_share_start_stop_and_again(server, browser_factory, fake_media):
    log("start")
    a, b = await open_members(server, browser_factory, fake_media, ["Alice Martin", "Bruno Keller"])
    ids = await meet([a, b])
    pid = ids[a.name]
    await wait_rising(b.page, pid, "camera", "video", "frames", "B before share")

    mid1 = await share_and_check(a, b, pid, 1)

    await a.page.locator("#screen-button").click()
    await wait_until(lambda: _not(_pressed(a.page, "#screen-button")), CHANGE_TIMEOUT, what="A: share button off")

    async def screen_gone():
        return await tile(b.page, pid, "screen") is None

    await wait_until(screen_gone, CHANGE_TIMEOUT, interval=0.2, what="B: A's screen tile removed")
    assert await tile(b.page, pid, "camera") is not None, "B lost A's camera tile with the screen"
    log("share 1 stopped: B's screen tile of A gone")

    mid2 = await share_and_check(a, b, pid, 2)
    log(f"screen slot mids: first {mid1}, second {mid2}")


async def _not(coro) -> bool:
    return not await coro


# ---------------------------------------------------------------------------- 4. audio-only


async def test_audio_only_member(server, browser_factory, fake_media):
    log("start")
    a, b, c = await open_members(server, browser_factory, fake_media, list(COUNCILLORS))
    # c picks "audio only" on the pre-join screen (enabled once the camera check is done)
    await c.page.locator("#join-button:not([disabled])").wait_for(timeout=15_000)
    await c.page.locator("#audio-only").check()
    await wait_until(
        lambda: c.page.evaluate("() => document.querySelector('#preview-video').hidden"),
        5,
        what="C: preview hidden once audio-only is checked",
    )
    ids = await meet([a, b, c])
    cid = ids[c.name]
    me = (await hemicycle_state(c.page))["me"]
    log(f"C joined audio-only, publishing {me['sources']}")

    for m in (a, b):
        t = await wait_tile(m.page, cid, "camera", lambda t: t["video"] == "off", f"{m.name}: C's tile off")
        assert t["avatar"] == "CD", f"{m.name}: C's tile shows no initials: {t}"
        await wait_tone(m.page, cid, fake_media[c.colour].tone_hz, f"{m.name} hearing C")
        stats = await inbound_stats(m.page) or {}
        assert f"{cid}|camera|video" not in stats, f"{m.name} receives a camera from audio-only C: {stats}"
        log(f"{m.name}: C's tile off with initials, C's tone heard")

    state = await hemicycle_state(c.page)
    assert not any(s["source"] == "camera" for s in state["me"]["sources"]), f"C publishes a camera: {state['me']}"
    for o in (a, b):
        oid = ids[o.name]
        await wait_colour(c.page, oid, o.colour, f"C watching {o.name}")
        await wait_rising(c.page, oid, "camera", "video", "frames", f"C watching {o.name}")
        await wait_tone(c.page, oid, fake_media[o.colour].tone_hz, f"C hearing {o.name}")
        log(f"C sees and hears {o.name}")


# ---------------------------------------------------------------------------- 5. late joiner


async def test_late_joiner_decodes_everyone_quickly(server, browser_factory, fake_media):
    log("start")
    a, b, c = await open_members(server, browser_factory, fake_media, list(COUNCILLORS))
    ids = await meet([a, b])
    for m, o in ((a, b), (b, a)):
        await wait_rising(m.page, ids[o.name], "camera", "video", "frames", f"{m.name} watching {o.name}")
    joined_at = time.monotonic()
    await c.page.locator("#join-button:not([disabled])").wait_for(timeout=15_000)
    await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - joined_at)))  # A and B in for ~5 s
    log("A and B have been in for 5 s; C joins")

    await c.page.locator("#join-button").click()
    t0 = time.monotonic()
    first: dict[str, float] = {}
    while time.monotonic() - t0 < MEET_TIMEOUT and len(first) < 2:
        state = await hemicycle_state(c.page) or {"participants": []}
        by_name = {p["id"]: p["name"] for p in state["participants"]}
        stats = await inbound_stats(c.page) or {}
        for key, s in stats.items():
            pid, source, kind = key.split("|")
            name = by_name.get(pid)
            if source == "camera" and kind == "video" and s["frames"] > 0 and name and name not in first:
                first[name] = time.monotonic() - t0
        await asyncio.sleep(0.05)
    log(f"C's first decoded frame of each: {first}")
    assert set(first) == {a.name, b.name}, f"C decoded only {first} in {MEET_TIMEOUT} s"
    slow = {n: round(s, 2) for n, s in first.items() if s > LATE_JOINER_BUDGET_S}
    assert not slow, f"C decoded these later than {LATE_JOINER_BUDGET_S} s after joining: {slow}"
    await wait_colour(c.page, ids[a.name], a.colour, "C watching A")


# ---------------------------------------------------------------------------- 6. language


LABELS = {
    "fr": {"#mute-button": "Couper le micro", "#leave-button": "Quitter la séance", "#lang-button": "English"},
    "en": {"#mute-button": "Mute microphone", "#leave-button": "Leave the sitting", "#lang-button": "Français"},
}


async def labels(page) -> dict:
    return await page.evaluate(
        """(sels) => Object.fromEntries(sels.map(s => [s, document.querySelector(s)?.textContent.trim()]))""",
        list(LABELS["fr"]),
    )


async def test_language_switch_keeps_the_room_accessible(server, browser_factory, fake_media):
    log("start")
    a, b = await open_members(server, browser_factory, fake_media, ["Alice Martin", "Bruno Keller"])
    # B switches to English on the pre-join screen already
    await b.page.locator("#lang-button").click()
    assert await b.page.evaluate("() => document.documentElement.lang") == "en"
    assert (await b.page.locator("#join-button").text_content()).strip() == "Join the sitting"
    ids = await meet([a, b])
    assert await b.page.evaluate("() => document.documentElement.lang") == "en", "B's language lost on joining"
    assert await labels(b.page) == LABELS["en"]

    page = a.page
    assert await page.evaluate("() => document.documentElement.lang") == "fr"
    assert await labels(page) == LABELS["fr"]
    await page.locator("#lang-button").click()
    assert await page.evaluate("() => document.documentElement.lang") == "en"
    assert await labels(page) == LABELS["en"]
    assert await page.get_attribute("#lang-button", "lang") == "fr"
    assert await page.get_attribute("#controls", "aria-label") == "Sitting controls"
    t = await wait_tile(page, ids[b.name], "camera", lambda t: t["video_label"] is not None, "A: B's video label")
    assert t["video_label"] == "Video of Bruno Keller: camera", t
    await wait_colour(page, ids[b.name], b.colour, "A watching B")
    violations = await run_axe(page)
    log(f"axe in English: {len(violations)} serious/critical")
    assert violations == [], f"axe: serious/critical violations in English: {violations}"

    await page.locator("#lang-button").click()
    assert await page.evaluate("() => document.documentElement.lang") == "fr"
    assert await labels(page) == LABELS["fr"]
    t = await tile(page, ids[b.name], "camera")
    assert t and t["video_label"] == "Vidéo de Bruno Keller : caméra", t


# ---------------------------------------------------------------------------- extras


async def test_audio_only_member_turns_camera_on_later(server, browser_factory, fake_media):
    """Joined audio-only, then #camera-button: the camera is acquired and published mid-sitting."""
    log("start")
    a, b = await open_members(server, browser_factory, fake_media, ["Alice Martin", "Bruno Keller"])
    await a.page.locator("#join-button:not([disabled])").wait_for(timeout=15_000)
    await a.page.locator("#audio-only").check()
    ids = await meet([a, b])
    pid = ids[a.name]
    await wait_tile(b.page, pid, "camera", lambda t: t["video"] == "off", "B: audio-only A's tile off")
    await wait_tone(b.page, pid, fake_media[a.colour].tone_hz, "B hearing audio-only A")

    await a.page.locator("#camera-button").click()
    await wait_tile(b.page, pid, "camera", lambda t: t["video"] == "on", "B: A's tile on once A turns the camera on")
    await wait_rising(b.page, pid, "camera", "video", "frames", "B watching A's new camera", timeout=CHANGE_TIMEOUT)
    await wait_colour(b.page, pid, a.colour, "B watching A's new camera", timeout=CHANGE_TIMEOUT)
    assert await a.page.get_attribute("#camera-button", "aria-pressed") == "false"
    await wait_tone(b.page, pid, fake_media[a.colour].tone_hz, "B still hearing A")
    log("audio-only A turned the camera on: B sees red and still hears A")


async def test_join_muted_with_camera_off(server, browser_factory, fake_media):
    """Mic and camera unticked on the pre-join screen: nothing of A reaches B until A turns them on."""
    log("start")
    a, b = await open_members(server, browser_factory, fake_media, ["Alice Martin", "Bruno Keller"])
    await a.page.locator("#join-button:not([disabled])").wait_for(timeout=15_000)
    await a.page.locator("#prejoin-mic-on").uncheck()
    await a.page.locator("#prejoin-camera-on").uncheck()
    ids = await meet([a, b])
    pid = ids[a.name]
    assert await a.page.get_attribute("#mute-button", "aria-pressed") == "true"
    assert await a.page.get_attribute("#camera-button", "aria-pressed") == "true"
    t = await wait_tile(
        b.page, pid, "camera", lambda t: t["muted_badge"] and t["video"] == "off", "B: A joined muted, camera off"
    )
    log(f"B shows A muted with the camera off: {t}")
    await asyncio.sleep(1.0)
    for source, kind in (("mic", "audio"), ("camera", "video")):
        before, after = await rising(b.page, pid, source, kind, "packets", 1.5)
        assert after == before, f"B receives A's {source} while A joined with it off: {before} -> {after}"
    await a.page.locator("#mute-button").click()
    await a.page.locator("#camera-button").click()
    await wait_tile(b.page, pid, "camera", lambda t: not t["muted_badge"] and t["video"] == "on", "B: A on")
    await wait_colour(b.page, pid, a.colour, "B after A turns the camera on", timeout=CHANGE_TIMEOUT)
    await wait_tone(b.page, pid, fake_media[a.colour].tone_hz, "B after A unmutes")
    log("A unmuted and turned the camera on: B sees and hears A")

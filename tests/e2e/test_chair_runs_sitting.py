"""The chair runs a sitting from the browser: mute, hand, floor, proxy, agenda, a named vote.

A chair and three councillors, each in their own headless Chromium (fake 320x240 camera of
one colour, fake microphone of one tone), in an intercommunal sitting held remotely (a
server started with a TOML config). Everything goes through the pages' buttons; what each
page shows is read from its DOM, and what each member hears from the audio it receives.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from .browser import audio_peak, hemicycle_state, run_axe, sitting_panel, wait_until
from .test_member_controls import SILENCE_DB, wait_tile, wait_tone

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

CONFIG = """
[[sittings]]
id = "cc-test"
title = "Conseil communautaire — TEST"
regime = "intercommunal"
mode = "remote"

[[sittings.agenda]]
id = "1"
title = "Approbation du procès-verbal de la séance précédente"
time_limit_s = 180

[[sittings.agenda]]
id = "2"
title = "Subvention à l'association des parents d'élèves"
time_limit_s = 300

[[sittings.agenda]]
id = "3"
title = "Questions diverses"
"""

CHAIR = "Yvonne Roux"
A, B, C = "Alice Martin", "Bruno Keller", "Chloé Dubois"
PEOPLE = {CHAIR: ("chair", "yellow"), A: ("councillor", "red"), B: ("councillor", "green"), C: ("councillor", "blue")}
STEP = 10.0  # seconds for one change to reach every page
QUESTION = "Adopter la subvention de 1 500 € ?"

_T0 = [0.0]


def log(msg: str) -> None:
    now = time.monotonic()
    if msg.startswith("start"):
        _T0[0] = now
    print(f"[{now - _T0[0]:6.1f}s] {msg}", flush=True)


async def until(page, check, what: str, timeout: float = STEP) -> dict:
    """Poll the page's sitting panel until ``check(panel)`` holds; return the panel."""
    last = {}

    async def ok():
        last["p"] = await sitting_panel(page)
        return last["p"] if check(last["p"]) else None

    try:
        return await wait_until(ok, timeout, interval=0.2, what=what)
    except AssertionError:
        raise AssertionError(f"{what}: last panel {last.get('p')!r}") from None


async def join_and_wait(page, name: str) -> str:
    """Click join, wait for welcome and for our mic and camera to be published; our id."""
    await page.locator("#join-button:not([disabled])").click(timeout=15_000)

    async def published():
        state = await hemicycle_state(page)
        me = state and state["joined"] and state["me"]
        return me["id"] if me and {s["source"] for s in me["sources"]} >= {"mic", "camera"} else None

    return await wait_until(published, 20, interval=0.2, what=f"{name}: joined and publishing")


async def screenshot(page, name: str, tmp_path: Path, show: tuple[str, ...] = ()) -> Path:
    """The viewport, side panels scrolled to the top or to the ``show`` selectors."""
    folder = Path(os.environ.get("HEMICYCLE_E2E_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    await page.evaluate(
        """(show) => {
          for (const el of document.querySelectorAll('.side-column, #chair-panel')) el.scrollTop = 0;
          for (const sel of show) {
            const el = document.querySelector(sel);
            const box = el?.closest('.side-column, #chair-panel');
            if (box) box.scrollTop = el.getBoundingClientRect().top - box.getBoundingClientRect().top - 8;
          }
          window.scrollTo(0, 0);
        }""",
        list(show),
    )
    await page.screenshot(path=str(path), full_page=False)
    log(f"screenshot {path}")
    return path


async def test_chair_runs_a_sitting(server_factory, browser_factory, fake_media, tmp_path):
    log("start")
    server = server_factory(CONFIG)
    names = list(PEOPLE)
    urls, browsers = await asyncio.gather(
        asyncio.gather(*(asyncio.to_thread(server.invite, n, PEOPLE[n][0]) for n in names)),
        asyncio.gather(*(browser_factory(n, fake_media[PEOPLE[n][1]]) for n in names)),
    )
    page = {n: b.page for n, b in zip(names, browsers)}
    await asyncio.gather(*(page[n].goto(u) for n, u in zip(names, urls)))
    # One after the other: each member's first publication is settled before the next joins.
    ids = {}
    for n in names:
        ids[n] = await join_and_wait(page[n], n)
    everyone = set(ids.values())
    for n in names:
        await until(page[n], lambda p: p["quorum"] and "4 / 3" in p["quorum"], f"{n}: quorum 4 / 3")
    chair, a, b, c = (page[n] for n in names)
    assert (await sitting_panel(chair))["chair_panel"], "the chair sees no Présidence panel"
    assert not (await sitting_panel(b))["chair_panel"], "a councillor sees the Présidence panel"
    log(f"all four joined; ids {ids}")

    # ---- the chair mutes A: B stops hearing A, A's tile shows muted
    tone_a = fake_media[PEOPLE[A][1]].tone_hz
    await wait_tone(b, ids[A], tone_a, "B hearing A")
    await chair.locator(f'#chair-participants li[data-participant-id="{ids[A]}"] [data-action="mute-mic"]').click()
    await wait_tile(b, ids[A], "camera", lambda t: t["muted_badge"], "B: A's tile muted by the chair")

    async def a_silent_on_b():
        peak = await audio_peak(b, ids[A])
        return peak is not None and peak["peak_db"] < SILENCE_DB

    await wait_until(a_silent_on_b, STEP, interval=0.2, what="B: A's audio silent after the chair's mute")
    await wait_until(lambda: _attr(a, "#mute-button", "aria-pressed", "true"), STEP, what="A: own mute button pressed")
    log("chair muted A: A's tile muted on B, A silent on B")

    # ---- A raises a hand; the chair gives A the floor: A's mic opens, B hears A again
    await a.locator("#hand-button").click()
    for n in names:
        await until(page[n], lambda p: [h["participant_id"] for h in p["queue"]] == [ids[A]], f"{n}: A in the queue")
    await chair.locator(f'#chair-queue li[data-participant-id="{ids[A]}"] [data-action="queue-give-floor"]').click()
    for n in names:
        await until(page[n], lambda p: p["floor"] == ids[A] and not p["queue"] and p["timer"], f"{n}: A has the floor")
    await wait_until(
        lambda: _attr(a, "#mute-button", "aria-pressed", "false"), STEP, what="A: mic reopened with the floor"
    )
    status = (await sitting_panel(a))["status"]
    assert "micro est ouvert" in status, f"A's status line does not say the mic was opened: {status!r}"
    await wait_tile(b, ids[A], "camera", lambda t: not t["muted_badge"], "B: A's tile unmuted")
    await wait_tone(b, ids[A], tone_a, "B hearing A with the floor")
    log("A has the floor on every page; B hears A again")
    await screenshot(chair, "chair-console-floor", tmp_path)

    # ---- C gives a proxy to B, then leaves (a member present votes themself)
    await c.locator("#proxy-select").select_option(ids[B])
    await c.locator("#proxy-give-button").click()
    await wait_until(lambda: _text_has(b, "#proxy-note", C), STEP, what="B: holds C's proxy")
    await c.locator("#leave-button").click()
    await until(chair, lambda p: p["quorum"] and "3 / 3" in p["quorum"], "chair: quorum 3 / 3 after C left")
    log("C gave a proxy to B and left")

    # ---- the chair takes item 2 and opens a vote
    await chair.locator("#item-select").select_option("2")
    await chair.locator("#item-set-button").click()
    for n in (CHAIR, A, B):
        await until(page[n], lambda p: (p["current_item"] or "").startswith("Point 2"), f"{n}: item 2 current")
    await chair.locator("#vote-question").fill(QUESTION)
    await chair.locator("#vote-method").select_option("electronic")
    await chair.locator("#open-vote-button").click()
    for n in (CHAIR, A, B):
        await until(page[n], lambda p: p["open_vote"] and QUESTION in p["open_vote"]["question"], f"{n}: vote open")
    log("item 2, vote open")

    await a.locator("#vote-for").click()
    await until(b, lambda p: p["open_vote"]["count"].startswith("1 sur"), "B: A's vote counted")
    await screenshot(b, "councillor-vote-open", tmp_path, ("#open-vote",))
    await b.locator("#vote-against").click()
    await b.locator("#proxy-vote-against").click()
    await chair.locator("#vote-for").click()
    await until(chair, lambda p: p["open_vote"] and p["open_vote"]["count"].startswith("4 sur"), "chair: 4 votes in")
    await chair.locator("#close-vote-button").click()
    log("four votes cast, vote closed")

    # ---- every page shows the result: 2 for, 2 against, adopted by the chair's casting vote
    expected_rows = {ids[A]: "for", ids[B]: "against", ids[C]: "against", ids[CHAIR]: "for"}
    for n in (CHAIR, A, B):
        p = await until(page[n], lambda p: len(p["results"]) == 1 and not p["open_vote"], f"{n}: vote result")
        r = p["results"][0]
        assert r["counts"] == {"for": 2, "against": 2, "abstain": 0, "not_voting": 0}, f"{n}: {r}"
        assert r["adopted"] == "true" and r["casting_vote"], f"{n}: not adopted by casting vote: {r}"
        assert "voix prépondérante" in r["outcome"] and r["outcome"].startswith("Adopté"), f"{n}: {r['outcome']!r}"
        assert {row["member_id"]: row["choice"] for row in r["rows"]} == expected_rows, f"{n}: {r['rows']}"
        cells = {row["cells"][0]: row["cells"][1:] for row in r["rows"]}
        assert cells == {
            A: ["Pour"],
            B: ["Contre"],
            C: [f"Contre (procuration : {B})"],
            CHAIR: ["Pour"],
        }, f"{n}: named results {cells}"
    log("every page shows 2 pour, 2 contre, adopted by the casting vote, with the names")

    # ---- C comes back and sees the result too
    await c.locator("#rejoin-button").click()
    p = await until(c, lambda p: p["view"] == "room" and len(p["results"]) == 1, "C: result after rejoining", 20)
    assert p["results"][0]["adopted"] == "true", p["results"][0]

    await screenshot(chair, "chair-console-result", tmp_path, ("#vote-results-section", "#chair-vote-heading"))
    await screenshot(b, "councillor-result", tmp_path, ("#vote-results-section",))
    for n in (CHAIR, B):
        violations = await run_axe(page[n])
        log(f"axe on {n}'s page: {len(violations)} serious/critical")
        assert violations == [], f"axe on {n}'s page: {violations}"
    assert everyone == set(ids.values())
    errors = [line for br in browsers for line in br.console if line.startswith("[pageerror]")]
    assert not errors, f"script errors in the pages: {errors}"


async def _attr(page, selector: str, name: str, value: str) -> bool:
    return await page.get_attribute(selector, name) == value


async def _text_has(page, selector: str, text: str) -> bool:
    return text in (await page.locator(selector).text_content() or "")


async def test_waiting_room_and_refusals(server_factory, browser_factory, fake_media, tmp_path):
    """Locked sitting: a councillor waits until admitted; the chair's mute holds when
    self-unmute is forbidden; a refused command is explained in the status line."""
    log("start")
    server = server_factory(CONFIG)
    (chair_url, a_url), (chair_b, a_b) = await asyncio.gather(
        asyncio.gather(asyncio.to_thread(server.invite, CHAIR, "chair"), asyncio.to_thread(server.invite, A)),
        asyncio.gather(browser_factory(CHAIR, fake_media["yellow"]), browser_factory(A, fake_media["red"])),
    )
    chair, a = chair_b.page, a_b.page
    await asyncio.gather(chair.goto(chair_url), a.goto(a_url))
    await join_and_wait(chair, CHAIR)
    await chair.locator("#lock-toggle").click()
    await wait_until(lambda: _attr(chair, "#lock-toggle", "aria-pressed", "true"), STEP, what="chair: locked")

    await a.locator("#join-button:not([disabled])").click(timeout=15_000)
    await until(a, lambda p: p["view"] == "waiting", "A: waiting room shown")
    assert "En attente d'admission par la présidence" in await a.locator("#waiting-heading").text_content()
    admit = chair.locator('#waiting-list [data-action="admit"]')
    await admit.wait_for(timeout=STEP * 1000)
    await admit.click()
    await until(a, lambda p: p["view"] == "room" and p["quorum"], "A: admitted into the room")
    aid = (await hemicycle_state(a))["me"]["id"]
    log("A waited, then was admitted")

    await chair.locator("#self-unmute-toggle").click()
    await wait_until(lambda: _attr(chair, "#self-unmute-toggle", "aria-pressed", "false"), STEP, what="forbidden")
    await chair.locator(f'#chair-participants li[data-participant-id="{aid}"] [data-action="mute-mic"]').click()
    await wait_until(lambda: _attr(a, "#mute-button", "aria-pressed", "true"), STEP, what="A: muted by the chair")
    await a.locator("#mute-button").click()  # A tries to unmute: must ask for the floor
    await until(a, lambda p: "demandez la parole" in (p["status"] or ""), "A: told to ask for the floor")
    assert await a.get_attribute("#mute-button", "aria-pressed") == "true", (
        "A's mic shown open while the chair's mute holds"
    )

    await a.evaluate("() => window.hemicycle.connection.castVote('for')")  # no vote is open
    await until(a, lambda p: p["status"] == "Demande refusée : aucun vote n'est ouvert.", "A: refusal explained")
    log("A told to ask for the floor; a refused command explained")

    # The secretary (not held in the waiting room) records A as present in the chamber.
    s_url = await asyncio.to_thread(server.invite, "Sam Girard", "secretary")
    sec_b = await browser_factory("Sam Girard", fake_media["green"])
    sec = sec_b.page
    await sec.goto(s_url)
    await join_and_wait(sec, "Sam Girard")
    box = sec.locator(f'#roll-list li[data-member-id="{aid}"] input[data-action="present"]')
    await box.check()

    async def a_in_chamber():
        state = await hemicycle_state(chair)
        return any(m["member_id"] == aid and m["in_chamber"] for m in state["sitting"]["members"])

    await wait_until(a_in_chamber, STEP, what="chair: A recorded in the chamber by the secretary")
    await chair.locator("#vote-question").fill(QUESTION)
    await chair.locator("#open-vote-button").click()
    row = sec.locator(f'#roll-list li[data-member-id="{aid}"]')
    await row.locator('select[data-action="record-vote-choice"]').select_option("for")
    await screenshot(sec, "secretary-vote-open", tmp_path)
    await row.locator('button[data-action="record-vote"]').click()
    await until(chair, lambda p: p["open_vote"] and p["open_vote"]["count"].startswith("1 sur"), "chair: A's vote in")
    violations = await run_axe(sec)
    assert violations == [], f"axe on the secretary's page: {violations}"
    errors = [line for br in (chair_b, a_b, sec_b) for line in br.console if line.startswith("[pageerror]")]
    assert not errors, f"script errors in the pages: {errors}"
    log("the secretary recorded A in the chamber")

    await chair.locator("#lang-button").click()  # the panels follow the language
    await until(chair, lambda p: (p["quorum"] or "").startswith("Quorum: 3 / 2 required"), "chair: English")
    assert (await chair.locator("#chair-heading").text_content()).strip() == "Chair"
    assert (await chair.locator("#open-vote-count").text_content()).strip() == "1 of 3 members have voted"

"""Issue "Trust": a member whose network drops comes back by themself, in the same seat.

How the drop is made (only Bruno's browser is cut, inside the test's own network namespace):

* the kernel stops carrying any packet of Bruno's browser: a ``tc`` filter on ``lo`` sends
  every packet from or to one of his sockets' ports (the WebSocket's TCP port, the UDP
  ports of his WebRTC candidates) into a ``pfifo limit 0`` queue, which drops them. The
  media stops both ways, and the server hears nothing more from him: no close, no RST;
* his browser's TCP socket of the WebSocket is destroyed (``ss -K``), as the OS does when
  the interface goes away: the page sees an abnormal close (1006), the server does not
  (the reset is dropped too). That is the abrupt transport close of the issue. A page-side
  ``ws.close()`` would not do: it is a clean close, and the server would be told;
* the page is put offline through the Chrome DevTools Protocol
  (``Network.emulateNetworkConditions``): the reconnection attempts made while the
  network is down fail, and ``navigator.onLine`` / the ``online`` event behave as in a
  real outage. It does not touch WebRTC's UDP, hence the ``tc`` filter.

After ~3 s everything is restored; the page must be back within a few seconds by itself.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from pathlib import Path

import pytest

from .browser import frames_decoded, hemicycle_state, run_axe, sitting_panel, wait_until
from .test_chair_runs_sitting import CONFIG, join_and_wait, until

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

CHAIR = "Yvonne Roux"
A, B, C = "Alice Martin", "Bruno Keller", "Chloé Dubois"
PEOPLE = {CHAIR: ("chair", "yellow"), A: ("councillor", "red"), B: ("councillor", "green"), C: ("councillor", "blue")}
STEP = 10.0
QUESTION = "Adopter le budget annexe ?"
DROP_S = 3.0
BACK_WITHIN_S = 15.0  # after the network is restored: the back-off is at most 4 s by then

_T0 = [0.0]


def log(msg: str) -> None:
    now = time.monotonic()
    if msg.startswith("start"):
        _T0[0] = now
    print(f"[{now - _T0[0]:6.1f}s] {msg}", flush=True)


# ------------------------------------------------------------------ cutting one browser off


def _process_tree(roots: list[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid not in seen:
            seen.add(pid)
            stack.extend(children.get(pid, []))
    return seen


def _sockets(pids: set[int], proto: str) -> list[tuple[int, int | None]]:
    """(local port, peer port or None) of the TCP ("t") or UDP ("u") sockets of ``pids``."""
    out = subprocess.run(["ss", f"-{proto}anpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        owners = {int(x) for x in re.findall(r"pid=(\d+)", line)}
        if not owners & pids:
            continue
        fields = line.split()
        local, peer = fields[3], fields[4]
        peer_port = peer.rsplit(":", 1)[1]
        found.append((int(local.rsplit(":", 1)[1]), int(peer_port) if peer_port.isdigit() else None))
    return found


def _tc(*args: str) -> None:
    subprocess.run(["tc", *args], check=True, capture_output=True, text=True)


class NetworkDrop:
    """Cut one browser off the network (see the module's docstring), then restore it."""

    def __init__(self, councillor, server_port: int) -> None:
        self.councillor = councillor
        self.server_port = server_port
        self.cdp = None
        self.ports: set[int] = set()
        self.filtered = False

    async def start(self) -> None:
        pids = _process_tree(self.councillor.pids())
        tcp = [local for local, peer in _sockets(pids, "t") if peer == self.server_port]
        udp = [local for local, _peer in _sockets(pids, "u")]
        assert tcp, f"no TCP connection of {self.councillor.name}'s browser to the server"
        assert udp, f"no UDP socket of {self.councillor.name}'s browser (WebRTC)"
        self.ports = set(tcp) | set(udp)
        self.cdp = await self.councillor.context.new_cdp_session(self.councillor.page)
        await self.cdp.send("Network.enable")
        await self._emulate(offline=True)
        _tc("qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "1", "r2q", "100000")
        self.filtered = True
        _tc("class", "add", "dev", "lo", "parent", "1:", "classid", "1:1", "htb", "rate", "10gbit")
        _tc("class", "add", "dev", "lo", "parent", "1:", "classid", "1:2", "htb", "rate", "10gbit")
        _tc("qdisc", "add", "dev", "lo", "parent", "1:2", "handle", "20:", "pfifo", "limit", "0")  # a black hole
        for port in sorted(self.ports):
            for way in ("sport", "dport"):
                _tc("filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
                    "match", "ip", way, str(port), "0xffff", "flowid", "1:2")  # fmt: skip
                _tc("filter", "add", "dev", "lo", "parent", "1:", "protocol", "ipv6", "prio", "2", "u32",
                    "match", "ip6", way, str(port), "0xffff", "flowid", "1:2")  # fmt: skip
        for port in tcp:  # the browser's end of the WebSocket goes away, abruptly
            subprocess.run(["ss", "-K", "-tn", "sport", "=", f":{port}"], check=True, capture_output=True)
        log(f"{self.councillor.name} cut off: TCP {tcp}, UDP {udp}")

    async def stop(self) -> None:
        if self.filtered:
            subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)
            self.filtered = False
        if self.cdp is not None:
            await self._emulate(offline=False)
            await self.cdp.detach()
            self.cdp = None
        log(f"{self.councillor.name}'s network restored")

    async def _emulate(self, offline: bool) -> None:
        await self.cdp.send(
            "Network.emulateNetworkConditions",
            {"offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )


# ------------------------------------------------------------------ probes


async def _state(page) -> dict:
    return await hemicycle_state(page) or {}


async def _banner(page) -> dict:
    return await page.evaluate(
        """() => ({
          shown: !document.getElementById('reconnect-banner').hidden,
          text: document.getElementById('reconnect-text').textContent,
          button: !document.getElementById('reconnect-now-button').disabled,
          connection: document.body.dataset.connection || null,
        })"""
    )


async def _frames_rising(page, pid: str, who: str, timeout: float = STEP) -> None:
    first = {}

    async def rising():
        frames = (await frames_decoded(page) or {}).get(pid, 0)
        if "n" not in first:
            first["n"] = frames
            return False
        return frames > first["n"] + 5

    await wait_until(rising, timeout, interval=0.5, what=f"{who}: frames of {pid} decoded and rising")


def _open_vote(state: dict) -> dict | None:
    votes = [v for v in (state.get("sitting") or {}).get("votes", []) if v["open"]]
    return votes[0] if votes else None


# ------------------------------------------------------------------ the tests


async def test_member_back_in_seat_after_network_drop(server_factory, browser_factory, fake_media, tmp_path):
    log("start")
    server = server_factory(CONFIG.replace('id = "cc-test"', 'id = "cc-reconnect"'))
    names = list(PEOPLE)
    urls, browsers = await asyncio.gather(
        asyncio.gather(*(asyncio.to_thread(server.invite, n, PEOPLE[n][0]) for n in names)),
        asyncio.gather(*(browser_factory(n, fake_media[PEOPLE[n][1]]) for n in names)),
    )
    page = {n: br.page for n, br in zip(names, browsers)}
    await asyncio.gather(*(page[n].goto(u) for n, u in zip(names, urls)))
    ids = {}
    for n in names:
        ids[n] = await join_and_wait(page[n], n)
    chair, a, b, c = (page[n] for n in names)
    b_browser = browsers[names.index(B)]
    for n in names:
        await until(page[n], lambda p: p["quorum"] and "4 / 3" in p["quorum"], f"{n}: quorum 4 / 3")
    log(f"all four joined: {ids}")

    # ---- C gives a proxy to B and leaves; B raises a hand; a vote is opened; B votes twice
    await c.locator("#proxy-select").select_option(ids[B])
    await c.locator("#proxy-give-button").click()
    await wait_until(lambda: _text_has(b, "#proxy-note", C), STEP, what="B: holds C's proxy")
    await c.locator("#leave-button").click()
    await until(chair, lambda p: p["quorum"] and "3 / 3" in p["quorum"], "chair: quorum 3 / 3 after C left")
    await b.locator("#hand-button").click()
    for n in (CHAIR, A, B):
        await until(page[n], lambda p: [h["participant_id"] for h in p["queue"]] == [ids[B]], f"{n}: B's hand")
    await chair.locator("#vote-question").fill(QUESTION)
    await chair.locator("#open-vote-button").click()
    await until(b, lambda p: p["open_vote"] and QUESTION in p["open_vote"]["question"], "B: vote open")
    await b.locator("#vote-against").click()
    await b.locator("#proxy-vote-for").click()
    await until(chair, lambda p: p["open_vote"] and p["open_vote"]["count"].startswith("2 sur"), "chair: 2 votes")
    await b.locator("#mute-button").click()  # B's own choice, to be kept across the drop
    await wait_until(lambda: _attr(b, "#mute-button", "aria-pressed", "true"), STEP, what="B: mic muted")
    await _frames_rising(a, ids[B], "A watching B")
    await _frames_rising(b, ids[A], "B watching A")
    log("C's proxy held by B, B's hand up, B voted for self and for C, B muted")

    # ---- B's network drops for ~3 s
    drop = NetworkDrop(b_browser, server.port)
    try:
        await drop.start()
        cut_at = time.monotonic()
        banner = await wait_until(
            lambda: _banner_when(b, lambda s: s["shown"] and s["connection"] == "reconnecting"),
            5,
            interval=0.1,
            what="B: reconnection banner shown",
        )
        log(f"B sees: {banner['text']!r}")
        assert banner["text"].startswith("Connexion perdue"), banner
        status = (await sitting_panel(b))["status"]
        assert "reconnexion automatique" in status, f"B's status line: {status!r}"
        # a command given while cut off is said not to have been sent
        await b.evaluate("() => window.hemicycle.connection.raiseHand(true)")
        await until(b, lambda p: "pas été transmise" in (p["status"] or ""), "B: command not sent, and told so")
        # "Réessayer maintenant" starts an attempt at once (it fails: still offline)
        await b.locator("#reconnect-now-button:not([disabled])").wait_for(timeout=5000)
        before = await b.evaluate("() => window.hemicycle.connection._backoff.attempt")
        await b.locator("#reconnect-now-button").click()
        await wait_until(
            lambda: b.evaluate(f"() => window.hemicycle.connection._backoff.attempt > {before}"),
            5,
            interval=0.1,
            what="B: an attempt made at once, and failed",
        )
        violations = await run_axe(b)
        assert violations == [], f"axe on B's page while reconnecting: {violations}"
        attempts = []
        while time.monotonic() - cut_at < DROP_S:
            state = await _state(b)
            assert not state["joined"] and state["view"] == "room", f"B during the drop: {state['view']}"
            attempts.append((await _banner(b))["text"])
            await asyncio.sleep(0.25)
        log(f"B during the drop: {sorted(set(attempts))}")
    finally:
        await drop.stop()
    restored_at = time.monotonic()

    # ---- B is back by themself, in the same seat
    async def back():
        state = await _state(b)
        return state if state["joined"] and not state["reconnecting"] and state["reconnections"] >= 1 else None

    state = await wait_until(back, BACK_WITHIN_S, interval=0.2, what="B: reconnected by itself")
    log(f"B back {time.monotonic() - restored_at:.1f} s after the network came back")
    assert state["me"]["id"] == ids[B], f"B came back with another id: {state['me']['id']} != {ids[B]}"
    assert state["me"]["role"] == "councillor"
    banner = await _banner(b)
    assert not banner["shown"] and banner["connection"] is None, banner
    await until(b, lambda p: "Connexion rétablie" in (p["status"] or ""), "B: told the connection is back")

    for n in (CHAIR, A, B):  # the hand is still up, on every page
        await until(page[n], lambda p: [h["participant_id"] for h in p["queue"]] == [ids[B]], f"{n}: B's hand kept")
    await wait_until(lambda: _text_has(b, "#proxy-note", C), STEP, what="B: still holds C's proxy")
    chair_state = await _state(chair)
    members = {m["member_id"]: m for m in chair_state["sitting"]["members"]}
    assert members[ids[C]]["represented_by"] == ids[B], members[ids[C]]
    assert members[ids[B]]["remote"], f"B not counted as connected: {members[ids[B]]}"
    vote = _open_vote(chair_state)
    assert vote and {ids[B], ids[C]} <= set(vote["voters"]), f"B's votes lost: {vote}"
    p = await until(chair, lambda p: p["open_vote"] and p["open_vote"]["count"].startswith("2 sur"), "chair: 2 votes")
    log(f"chair: {p['open_vote']['count']}, queue {p['queue']}")
    assert (await b.locator("#my-vote-note").text_content() or "").strip(), "B's page forgot that B voted"

    # the mute choice is kept, and the others see it
    assert await b.get_attribute("#mute-button", "aria-pressed") == "true", "B's mute choice lost"

    async def a_sees_b_muted():
        me = {x["id"]: x for x in (await _state(a))["participants"]}.get(ids[B])
        sources = {s["source"]: s["muted"] for s in (me or {}).get("sources", [])}
        return sources if sources.get("mic") is True and sources.get("camera") is False else None

    await wait_until(a_sees_b_muted, STEP, what="A: B back with mic muted, camera on")

    # media flows again both ways
    await _frames_rising(a, ids[B], "A watching B after the reconnection", timeout=20)
    await _frames_rising(b, ids[A], "B watching A after the reconnection", timeout=20)
    log("B's video decoded on A's page again, and A's on B's")

    # the vote goes on with B's ballots: A and the chair vote, the chair closes it
    await a.locator("#vote-for").click()
    await chair.locator("#vote-for").click()
    await until(chair, lambda p: p["open_vote"] and p["open_vote"]["count"].startswith("4 sur"), "chair: 4 votes")
    await chair.locator("#close-vote-button").click()
    p = await until(chair, lambda p: len(p["results"]) == 1 and not p["open_vote"], "chair: result")
    rows = {row["member_id"]: row["choice"] for row in p["results"][0]["rows"]}
    assert rows == {ids[A]: "for", ids[B]: "against", ids[C]: "for", ids[CHAIR]: "for"}, rows
    assert (await _state(b))["reconnections"] == 1, "B reconnected more than once"
    server_log = (tmp_path / "server-stderr.log").read_text(errors="replace").splitlines()
    for line in server_log:
        if ids[B] in line or "failed" in line or "replaced" in line:
            log(f"server: {line[:160]}")
    errors = [line for br in browsers for line in br.console if line.startswith("[pageerror]")]
    assert not errors, f"script errors in the pages: {errors}"


async def test_replaced_page_does_not_come_back(server, browser_factory, fake_media):
    """The same link opened in a second page takes the seat; the first page stays out (no ping-pong)."""
    log("start")
    url = await asyncio.to_thread(server.invite, B)
    br = await browser_factory(B, fake_media["green"])
    first = br.page
    await first.goto(url)
    bid = await join_and_wait(first, B)
    second = await br.context.new_page()
    await second.goto(url)
    assert await join_and_wait(second, B + " (second page)") == bid

    async def first_replaced():
        state = await _state(first)
        return state if state["view"] == "ended" else None

    await wait_until(first_replaced, STEP, interval=0.2, what="first page: replaced")
    message = (await first.locator("#ended-message").text_content() or "").strip()
    assert message == "Vous avez rejoint la séance depuis un autre appareil ou onglet.", message
    # Long enough for several back-off steps: nothing comes back, the second page keeps the seat.
    for _ in range(12):
        await asyncio.sleep(0.5)
        one, two = await _state(first), await _state(second)
        assert one["view"] == "ended" and not one["joined"] and not one["reconnecting"], one
        assert two["joined"] and two["reconnections"] == 0 and two["me"]["id"] == bid, two
    assert (await _banner(first))["shown"] is False
    log("the replaced page stays out; the second page keeps the seat")


async def _banner_when(page, check):
    banner = await _banner(page)
    return banner if check(banner) else None


async def _attr(page, selector: str, name: str, value: str) -> bool:
    return await page.get_attribute(selector, name) == value


async def _text_has(page, selector: str, text: str) -> bool:
    return text in (await page.locator(selector).text_content() or "")

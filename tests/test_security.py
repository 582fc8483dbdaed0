"""Trust: origin check, limits, revocation and logs, on the in-process server with real
WebSocket clients (and aiortc peers for the members who must stay served).
HTTPS served by the server itself is in tests/test_tls.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from config import Settings
from config.settings import SittingSettings, _demo_sitting
from signaling import revocation
from signaling.cli import main as hemicycle
from signaling.limits import count_candidates
from tests.conftest import RunningServer
from tests.peers import Peer
from tests.test_media_relay import wait_for


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    other = SittingSettings(id="autre", title="Autre séance", regime="intercommunal", mode="remote")
    return Settings(port=0, data_dir=tmp_path, demo=False, sittings=[_demo_sitting(), other])


@pytest.fixture
async def member(server: RunningServer) -> AsyncIterator[Peer]:
    """A councillor already in the sitting, publishing audio and video."""
    peer = Peer(server.base_url, server.token("Témoin", seat="temoin"), "red", 440)
    await peer.join()
    await peer.publish()
    yield peer
    await peer.close()


async def assert_still_served(server: RunningServer, peer: Peer) -> None:
    """The member is connected, and the server still answers it."""
    seat = server.hub.sittings["demo"].seats[peer.me or ""]
    assert seat.session is not None and peer.ws is not None and not peer.ws.closed
    before = len(peer.messages)
    await peer.send({"type": "set_muted", "source": "mic", "muted": True})
    await wait_for(
        lambda: any(
            m["type"] == "participant_updated" and m["participant"]["id"] == peer.me for m in peer.messages[before:]
        ),
        timeout=5,
    )


def ws_url(server: RunningServer) -> str:
    return server.base_url.replace("http", "ws", 1) + "/ws"


def hello(token: str) -> str:
    return json.dumps({"type": "hello", "version": 1, "token": token})


async def replies(ws: aiohttp.ClientWebSocketResponse, timeout: float = 2.0) -> list[dict[str, Any]]:
    """Read until the server closes the socket or stays silent for ``timeout``."""
    out: list[dict[str, Any]] = []
    while True:
        try:
            msg = await ws.receive(timeout=timeout)
        except TimeoutError:
            return out
        if msg.type != aiohttp.WSMsgType.TEXT:
            return out
        out.append(json.loads(msg.data))


async def join_refused(server: RunningServer, token: str) -> dict[str, Any]:
    """Send hello; return the error that refused it (the socket must then be closed)."""
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(server)) as ws:
        await ws.send_str(hello(token))
        got = await replies(ws, timeout=5)
        assert got and got[0]["type"] == "error", got
        assert got[0]["fatal"] is True
        assert ws.closed
        return got[0]


# ---------------------------------------------------------------- origin


async def test_a_foreign_origin_is_refused_before_the_upgrade(server: RunningServer, member: Peer) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(ws_url(server), origin="https://evil.example")
        assert refused.value.status == 403
        async with http.get(server.base_url + "/ws", headers={"Origin": "null", "Upgrade": "websocket"}) as r:
            assert r.status == 403
    await assert_still_served(server, member)


async def test_the_servers_own_origin_and_allowed_ones_are_accepted(server: RunningServer) -> None:
    server.hub.settings.allowed_origins = ["https://intranet.mairie.example"]
    port = server.base_url.rsplit(":", 1)[1]
    origins = [f"http://127.0.0.1:{port}", f"http://localhost:{port}", "https://intranet.mairie.example"]
    async with aiohttp.ClientSession() as http:
        for number, origin in enumerate(origins):
            async with http.ws_connect(ws_url(server), origin=origin) as ws:
                await ws.send_str(hello(server.token(f"Élu {number}")))
                assert (await ws.receive_json(timeout=5))["type"] == "welcome", origin
        with pytest.raises(aiohttp.WSServerHandshakeError):  # same host, another port: another origin
            await http.ws_connect(ws_url(server), origin="http://127.0.0.1:1")


# ---------------------------------------------------------------- limits


async def test_a_flood_is_rate_limited_then_cut_and_the_sitting_goes_on(server: RunningServer, member: Peer) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(server)) as ws:
        await ws.send_str(hello(server.token("Bavard")))
        assert (await ws.receive_json(timeout=5))["type"] == "welcome"
        for _ in range(80):  # burst 40 (hello took one), 20/s: about 40 refused
            await ws.send_str(json.dumps({"type": "lower_hand", "participant_id": None}))
        got = await replies(ws, timeout=1.5)
        limited = [m for m in got if m["type"] == "error" and m["code"] == "rate_limited"]
        assert 20 <= len(limited) <= 45, len(limited)  # fewer if sending was slow and the bucket refilled
        assert not any(m["fatal"] for m in limited) and "per second" in limited[0]["message"]
        assert not ws.closed
        await asyncio.sleep(1.0)  # the bucket refills: served again
        await ws.send_str(json.dumps({"type": "set_muted", "source": "mic", "muted": True}))
        assert any(m["type"] == "participant_updated" for m in await replies(ws, timeout=1.5))
        with contextlib.suppress(ConnectionResetError):  # sustained abuse: 200 refused in all and the door
            for _ in range(400):
                await ws.send_str(json.dumps({"type": "lower_hand", "participant_id": None}))
        got = await replies(ws, timeout=5)
        assert got[-1]["code"] == "rate_limited" and got[-1]["fatal"] is True, got[-1]
        assert ws.closed
    await assert_still_served(server, member)


async def test_a_full_sitting_refuses_one_more_but_not_the_chair(server: RunningServer, member: Peer) -> None:
    server.hub.settings.limits.max_participants = 2
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(server)) as second:
        await second.send_str(hello(server.token("Deuxième", seat="deux")))
        assert (await second.receive_json(timeout=5))["type"] == "welcome"
        error = await join_refused(server, server.token("Troisième"))
        assert error["code"] == "forbidden" and "sitting full" in error["message"]
        async with http.ws_connect(ws_url(server)) as chair:  # a sitting cannot run without its chair
            await chair.send_str(hello(server.token("Présidente", role="chair")))
            assert (await chair.receive_json(timeout=5))["type"] == "welcome"
        async with http.ws_connect(ws_url(server)) as again:  # rejoining replaces one's own connection
            await again.send_str(hello(server.token("Deuxième", seat="deux")))
            assert (await again.receive_json(timeout=5))["type"] == "welcome"
    await assert_still_served(server, member)


async def test_one_sitting_too_many_is_refused(server: RunningServer, member: Peer) -> None:
    server.hub.settings.limits.max_sittings = 1
    error = await join_refused(server, server.token("Ailleurs", sitting="autre"))
    assert error["code"] == "forbidden" and "server full" in error["message"]
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(server)) as ws:  # the open sitting: fine
        await ws.send_str(hello(server.token("Voisin")))
        assert (await ws.receive_json(timeout=5))["type"] == "welcome"
    await assert_still_served(server, member)


def _offer_with_candidates(count: int, m_lines: int = 1) -> str:
    candidates = "".join(
        f"a=candidate:{i} 1 udp {2122260223 - i} 10.0.{i // 250}.{i % 250 + 1} {40000 + i} typ host\r\n"
        for i in range(count)
    )
    head = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    media = (
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 127.0.0.1\r\na=mid:{mid}\r\na=sendonly\r\na=rtcp-mux\r\n"
        "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=setup:actpass\r\na=rtpmap:111 opus/48000/2\r\n"
    )
    return head + "".join(media.format(mid=m) + candidates for m in range(m_lines))


def test_candidates_repeated_on_bundled_m_lines_count_once() -> None:
    assert count_candidates(_offer_with_candidates(5, m_lines=3)) == 5
    assert count_candidates("v=0\r\nA=CANDIDATE:1 1 udp 1 10.0.0.1 9 typ host\r\n") == 1


async def test_too_many_ice_candidates_is_bad_sdp(server: RunningServer, member: Peer) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(server)) as ws:
        await ws.send_str(hello(server.token("Multi-interfaces")))
        assert (await ws.receive_json(timeout=5))["type"] == "welcome"
        for message in (
            {"type": "publish", "sdp": _offer_with_candidates(21), "tracks": [{"mid": "0", "source": "mic"}]},
            {"type": "subscribe_answer", "revision": 0, "sdp": _offer_with_candidates(50, m_lines=2)},
        ):
            await ws.send_str(json.dumps(message))
            errors = [m for m in await replies(ws, timeout=1.5) if m["type"] == "error"]
            assert errors and errors[0]["code"] == "bad_sdp" and not errors[0]["fatal"], errors
            assert "too many ICE candidates" in errors[0]["message"]
        assert not ws.closed
    assert server.router.counts()["producers"] == 2  # only the member's: nothing reached the SFU
    await assert_still_served(server, member)


# ---------------------------------------------------------------- revocation


async def test_a_revoked_seat_is_refused_and_dropped(
    server: RunningServer,
    member: Peer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("HEMICYCLE_CONFIG", raising=False)
    monkeypatch.setenv("HEMICYCLE_DATA_DIR", str(tmp_path))
    revoked = Peer(server.base_url, server.token("Révoqué", seat="m-revoque"), "blue", 880)
    await revoked.join()
    try:
        assert hemicycle(["revoke", "--seat", "m-revoque", "--sitting", "demo"]) == 0
        assert "revoked" in capsys.readouterr().out
        listed = json.loads((tmp_path / "revoked.json").read_text())["revoked"]
        assert [(e["seat"], e["sitting"]) for e in listed] == [("m-revoque", "demo")]
        # connected: dropped within a few seconds (the list is polled every 2 s)
        await wait_for(lambda: revoked.ws is not None and revoked.ws.closed, timeout=6)
        assert any(m.get("code") == "bad_token" and m["message"] == "invitation revoked" for m in revoked.messages)
        await wait_for(lambda: revoked.me not in member.participants, timeout=5)  # told participant_left
        # joining again, with any invitation for that seat: refused at hello
        error = await join_refused(server, server.token("Révoqué", seat="m-revoque"))
        assert (error["code"], error["message"]) == ("bad_token", "invitation revoked")
        # the same seat in another sitting is not concerned
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(server)) as ws:
            await ws.send_str(hello(server.token("Révoqué", seat="m-revoque", sitting="autre")))
            assert (await ws.receive_json(timeout=5))["type"] == "welcome"
        assert hemicycle(["revoke", "--seat", "m-revoque", "--sitting", "demo", "--undo"]) == 0
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(server)) as ws:
            await ws.send_str(hello(server.token("Révoqué", seat="m-revoque")))
            assert (await ws.receive_json(timeout=5))["type"] == "welcome"
    finally:
        await revoked.close()
    await assert_still_served(server, member)


async def test_revoking_one_link_keeps_the_seat(
    server: RunningServer, member: Peer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEMICYCLE_CONFIG", raising=False)
    monkeypatch.setenv("HEMICYCLE_DATA_DIR", str(tmp_path))
    leaked = server.token("Claire Dupont", seat="m-dupont")
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(server)) as ws:
        await ws.send_str(hello(leaked))
        assert (await ws.receive_json(timeout=5))["type"] == "welcome"
        assert hemicycle(["revoke", "--token", leaked]) == 0
        got = await replies(ws, timeout=6)
        assert got[-1]["code"] == "bad_token" and got[-1]["fatal"] and ws.closed
    assert leaked not in (tmp_path / "revoked.json").read_text()  # only its digest is kept
    error = await join_refused(server, leaked)
    assert error["message"] == "invitation revoked"
    fresh = server.token("Claire Dupont", seat="m-dupont")
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(server)) as ws:
        await ws.send_str(hello(fresh))
        assert (await ws.receive_json(timeout=5))["type"] == "welcome"
        assert hemicycle(["revoke", "--seat", "m-autre"]) == 0  # the list changes: re-read, re-enforced
        got = await replies(ws, timeout=4.5)
        assert not [m for m in got if m["type"] == "error"] and not ws.closed  # the new link stays
        assert not ws.closed
    assert hemicycle(["revoke", "--token", "forged.token"]) == 2
    await assert_still_served(server, member)


def test_a_corrupt_list_keeps_the_last_good_one(tmp_path: Path) -> None:
    revocation.revoke(tmp_path, revocation.Revocation("m-x", None))
    listing = revocation.RevocationList(tmp_path / "revoked.json")
    assert listing.refresh() and listing.refuses("any", "m-x", None)
    (tmp_path / "revoked.json").write_text("{not json")
    assert not listing.refresh() and listing.refuses("any", "m-x", None)
    assert not listing.refuses("any", "m-y", None)


# ---------------------------------------------------------------- logs


async def test_no_token_ever_reaches_the_logs(
    server: RunningServer, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("signaling", "sfu", "aiohttp", "aiortc", "aioice"):
        caplog.set_level(logging.DEBUG, logger=name)
    token = server.token("Journalisé", seat="m-journal")
    peer = Peer(server.base_url, token, "green", 660)
    await peer.join()
    await peer.publish()
    other = Peer(server.base_url, server.token("Autre"), "red", 440)
    await other.join()
    await other.publish()
    await wait_for(lambda: len(other.received.get(peer.me or "", _Nothing).counters) > 5)
    # refused paths too: a forged copy, a revoked one, a bad message after hello
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    await join_refused(server, forged)
    revocation.revoke(tmp_path, revocation.Revocation("m-journal", "demo", revocation.token_digest(token)))
    await wait_for(lambda: peer.ws is not None and peer.ws.closed, timeout=6)
    await join_refused(server, token)
    await other.send({"type": "publish", "sdp": "hello", "tracks": [{"mid": "0", "source": "mic"}]})
    await other.close()
    await peer.close()
    await asyncio.sleep(0.5)
    assert any(r.name.startswith("signaling") for r in caplog.records)  # logging was captured
    body, _, mac = token.partition(".")
    for secret in (token, body, mac, forged):
        assert secret not in caplog.text
        assert not any(secret in r.getMessage() for r in caplog.records)


class _Nothing:
    counters: list[int] = []

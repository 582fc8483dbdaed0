"""Bad input on the WebSocket: each gets a clear error and the sitting carries on."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp
import pytest

from config.settings import LimitSettings
from tests.peers import Peer
from tests.test_media_relay import wait_for

pytestmark = pytest.mark.asyncio


async def _exchange(base_url: str, frames: list[Any], expect_close: bool) -> list[dict[str, Any]]:
    """Send raw frames on a fresh WebSocket; return the server's replies."""
    replies: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(base_url.replace("http", "ws", 1) + "/ws", max_msg_size=0)
        for frame in frames:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))
        while True:
            try:
                msg = await ws.receive(timeout=3)
            except TimeoutError:
                break
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            replies.append(json.loads(msg.data))
        assert ws.closed == expect_close or expect_close is False
        await ws.close()
    return replies


@pytest.fixture
async def member(server):  # type: ignore[no-untyped-def]
    peer = Peer(server.base_url, server.token("Témoin"), "red", 440)
    await peer.join()
    await peer.publish()
    yield peer
    await peer.close()


def hello(token: str, version: int = 1) -> dict[str, Any]:
    return {"type": "hello", "version": version, "token": token}


CASES = {
    "malformed json": (lambda s: ["{not json"], "bad_json"),
    "unknown type": (lambda s: [hello(s.token("X")), {"type": "teleport"}], "bad_message"),
    "missing field": (lambda s: [hello(s.token("X")), {"type": "set_muted", "source": "mic"}], "bad_message"),
    "message before hello": (lambda s: [{"type": "leave"}], "not_ready"),
    "oversized message": (lambda s: ["x" * (LimitSettings().max_message_bytes + 10)], "too_large"),
    "forged token": (lambda s: [hello(s.token("X")[:-4] + "AAAA")], "bad_token"),
    "garbage token": (lambda s: [hello("not-a-token")], "bad_token"),
    "expired token": (lambda s: [hello(s.token("X", lifetime=-10))], "expired_token"),
    "wrong sitting": (lambda s: [hello(s.token("X", sitting="elsewhere"))], "wrong_sitting"),
    "wrong version": (lambda s: [hello(s.token("X"), version=99)], "bad_version"),
    "sdp that is not sdp": (
        lambda s: [hello(s.token("X")), {"type": "publish", "sdp": "hello", "tracks": [{"mid": "0", "source": "mic"}]}],
        "bad_sdp",
    ),
    "offer with no usable codec": (
        lambda s: [hello(s.token("X")), {"type": "publish", "sdp": PCMU_ONLY, "tracks": [{"mid": "0", "source": "mic"}]}],
        "no_codec",
    ),
    "public tries to publish": (
        lambda s: [hello(s.token("X", role="public")), {"type": "publish", "sdp": PCMU_ONLY, "tracks": []}],
        "forbidden",
    ),
    "answer for unknown revision": (
        lambda s: [hello(s.token("X")), {"type": "subscribe_answer", "revision": 7, "sdp": "v=0"}],
        "bad_message",
    ),
}

PCMU_ONLY = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 127.0.0.1\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\n"
    "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=setup:actpass\r\na=rtpmap:0 PCMU/8000\r\n"
)


@pytest.mark.parametrize("case", list(CASES))
async def test_bad_input_gets_a_clear_error_and_others_stay(server, member, case: str) -> None:  # type: ignore[no-untyped-def]
    frames, code = CASES[case]
    replies = await _exchange(server.base_url, frames(server), expect_close=False)
    errors = [r for r in replies if r["type"] == "error"]
    assert errors, f"no error for {case}: {replies}"
    assert errors[0]["code"] == code, errors
    assert errors[0]["message"]
    # the member already in the sitting is still there and still served
    sitting = server.hub.sittings["demo"]
    assert any(seat.session is not None and seat.name == "Témoin" for seat in sitting.seats.values())
    assert server.router.counts()["producers"] == 2


async def test_binary_frame_is_refused(server) -> None:  # type: ignore[no-untyped-def]
    replies = await _exchange(server.base_url, [b"\x00\x01"], expect_close=False)
    assert replies and replies[0]["code"] == "bad_message"


async def test_peer_vanishing_mid_negotiation_leaves_others_served(server) -> None:  # type: ignore[no-untyped-def]
    stayer = Peer(server.base_url, server.token("Reste"), "red", 440)
    other = Peer(server.base_url, server.token("Autre"), "blue", 880)
    await stayer.join()
    await stayer.publish()
    await other.join()
    await other.publish()
    await wait_for(lambda: len(other.received.get(stayer.me or "", _Nothing).counters) > 5)
    # a third one sends hello and a publish offer, then vanishes before any ICE/DTLS
    ghost_pc_offer = await _ghost_offer()
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(server.base_url.replace("http", "ws", 1) + "/ws")
        await ws.send_str(json.dumps(hello(server.token("Fantôme"))))
        await ws.send_str(json.dumps({"type": "publish", "sdp": ghost_pc_offer, "tracks": [{"mid": "0", "source": "mic"}]}))
        await ws.close()
    before = len(other.received[stayer.me or ""].counters)
    await wait_for(lambda: len(other.received[stayer.me or ""].counters) > before + 30)
    await wait_for(lambda: all(seat.session is None for seat in server.hub.sittings["demo"].seats.values() if seat.name == "Fantôme"))
    await stayer.close()
    await other.close()


async def _ghost_offer() -> str:
    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.mediastreams import AudioStreamTrack

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return str(sdp)


class _Nothing:
    counters: list[int] = []


@pytest.fixture
def settings(tmp_path):  # type: ignore[no-untyped-def]
    from config import Settings

    return Settings(port=0, data_dir=tmp_path, demo=False, media={"rtcp_silence_timeout": 2.0, "reconnect_grace": 0.5})


async def test_a_member_whose_media_goes_silent_is_dropped_and_others_stay(server) -> None:  # type: ignore[no-untyped-def]
    stayer = Peer(server.base_url, server.token("Reste"), "red", 440)
    lost = Peer(server.base_url, server.token("Perdu"), "blue", 880)
    await stayer.join()
    await stayer.publish(video=False)
    await lost.join()
    await lost.publish(video=False)
    router = server.router
    await wait_for(lambda: lost.me in stayer.participants and any(
        p.packets_in > 0 for pid, p in router.producers.items() if router.owners.get(pid) == lost.me
    ))  # fmt: skip
    assert lost.publish_pc is not None
    # its media flowed; now the network is gone: the client's UDP sockets stop, nothing says goodbye, the WebSocket stays
    ice = lost.publish_pc.getTransceivers()[0].sender.transport.transport
    for protocol in ice._connection._protocols:
        protocol.transport.close()
    await wait_for(lambda: lost.me not in stayer.participants, timeout=10)
    seat = server.hub.sittings["demo"].seats[lost.me or ""]
    assert seat.session is None  # its media resources are released, its seat kept
    journal = server.hub.sittings["demo"].journal
    await wait_for(lambda: any(e.type == "connection_lost" for e in journal.entries("demo")), timeout=3)
    assert server.router.counts()["producers"] == 1
    await stayer.close()
    await lost.close()


async def test_a_member_who_publishes_long_after_joining_is_not_taken_for_silent(server) -> None:  # type: ignore[no-untyped-def]
    """Silence counts from the publishing answer (2 s here), not from the join."""
    stayer = Peer(server.base_url, server.token("Reste"), "red", 440)
    late = Peer(server.base_url, server.token("Tardif"), "blue", 880)
    await stayer.join()
    await late.join()
    await asyncio.sleep(3.0)  # reading the agenda before turning the microphone on
    await late.publish(video=False)
    await asyncio.sleep(3.0)
    assert late.me in stayer.participants
    journal = server.hub.sittings["demo"].journal
    assert not any(e.type == "connection_lost" for e in journal.entries("demo"))
    await stayer.close()
    await late.close()


async def test_a_bundle_group_naming_a_missing_m_line_is_refused(server, member) -> None:  # type: ignore[no-untyped-def]
    offer = (await _ghost_offer()).replace("a=group:BUNDLE 0", "a=group:BUNDLE 7 0")
    replies = await _exchange(
        server.base_url,
        [hello(server.token("X")), {"type": "publish", "sdp": offer, "tracks": [{"mid": "0", "source": "mic"}]}],
        expect_close=False,
    )
    assert [r["code"] for r in replies if r["type"] == "error"] == ["bad_sdp"]
    assert server.router.counts()["producers"] == 2  # only the witness's


async def test_an_answer_with_extension_ids_out_of_range_is_refused(server, member) -> None:  # type: ignore[no-untyped-def]
    """A subscriber's answer may only use one-byte header extension ids (1 to 14), as offered."""
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(server.base_url.replace("http", "ws", 1) + "/ws")
        await ws.send_json(hello(server.token("Curieux")))
        offer: dict[str, Any] | None = None
        while offer is None:
            message = json.loads((await ws.receive(timeout=10)).data)
            offer = message if message["type"] == "subscribe_offer" else None
        answer = re.sub(r"a=extmap:\d+", "a=extmap:15", offer["sdp"]).replace("a=sendonly", "a=recvonly")
        await ws.send_json({"type": "subscribe_answer", "revision": offer["revision"], "sdp": answer})
        error = None
        while error is None:
            message = json.loads((await ws.receive(timeout=10)).data)
            error = message if message["type"] == "error" else None
        assert error["code"] == "bad_sdp" and "1 to 14" in error["message"], error
        # the same offer may still be answered: the refusal changed nothing
        sitting = server.hub.sittings["demo"]
        session_ = next(s.session for s in sitting.seats.values() if s.name == "Curieux")
        assert server.router.transports[session_.recv_transport_id].pending_revision == offer["revision"]
        await ws.close()
    assert server.router.counts()["producers"] == 2  # the witness still publishes

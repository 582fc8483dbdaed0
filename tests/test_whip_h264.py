"""WHIP ingest in H.264 (what OBS sends): forwarded as is to the members who negotiated H.264.

The chamber's encoder is aiortc forced to H.264 (libx264, packetization mode 1).
Bruno answers like Chromium (VP8 and H.264) and sees the chamber's yellow picture
next to Alice's red VP8 one; Chloé answers like Firefox without OpenH264 (VP8 only):
she sees Alice and hears the chamber, and the chamber's video slot stays silent.
"""

from __future__ import annotations

import logging
import re
import socket
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from sfu.plain import pli_for
from sfu.programme.sources import Sources
from tests.peers import CounterVideo, Peer, ToneAudio, mean_colour
from tests.test_media_relay import wait_for
from tests.test_whip import WhipEncoder

pytestmark = pytest.mark.asyncio


def h264_only() -> list[Any]:
    codecs = RTCRtpSender.getCapabilities("video").codecs
    return [c for c in codecs if c.mimeType == "video/H264" and c.parameters.get("packetization-mode") == "1"]


class H264WhipEncoder(WhipEncoder):
    """Like OBS: Opus and H.264 only (no VP8 in the offer); ``profile`` rewrites the one offered."""

    def __init__(self, url: str, token: str | None, profile: str | None = None) -> None:
        super().__init__(url, token)
        self.profile = profile

    async def offer(self) -> str:
        self.pc.addTransceiver(ToneAudio(550.0), direction="sendonly")
        video = self.pc.addTransceiver(CounterVideo("yellow"), direction="sendonly")
        video.setCodecPreferences(h264_only())
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = str(self.pc.localDescription.sdp)
        assert "VP8" not in sdp and "H264/90000" in sdp
        if self.profile is not None:
            sdp = re.sub(r"profile-level-id=[0-9a-fA-F]{6}", f"profile-level-id={self.profile}", sdp)
        return sdp


def without_h264(sdp: str) -> str:
    """An answer as Firefox without OpenH264 writes it: the video m-lines keep VP8 (and its RTX) only."""
    sections = re.split(r"(?m)^(?=m=)", sdp)
    out = [sections[0]]
    for section in sections[1:]:
        if section.startswith("m=video"):
            h264 = set(re.findall(r"(?m)^a=rtpmap:(\d+) H264/", section))
            h264 |= set(re.findall(rf"(?m)^a=fmtp:(\d+) apt=(?:{'|'.join(h264) or 'x'})\r?$", section))
            lines = [line for line in section.splitlines()
                     if not any(line.startswith(f"a={a}:{pt} ") for a in ("rtpmap", "fmtp", "rtcp-fb") for pt in h264)]
            head = lines[0].split()
            lines[0] = " ".join(head[:3] + [pt for pt in head[3:] if pt not in h264])
            section = "\r\n".join(lines) + "\r\n"
        out.append(section)
    return "".join(out)


class Vp8OnlyPeer(Peer):
    """A member whose browser decodes VP8 but not H.264."""

    async def _on_offer(self, data: dict[str, Any]) -> None:
        if self.subscribe_pc is None:
            self.subscribe_pc = RTCPeerConnection(self._config())
            self.subscribe_pc.on("track", self._on_track)
        pc = self.subscribe_pc
        self.slots = {s["mid"]: s for s in data["slots"]}
        await pc.setRemoteDescription(RTCSessionDescription(data["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        answer = without_h264(pc.localDescription.sdp)
        assert "H264" not in answer and "VP8/90000" in answer
        await self.send({"type": "subscribe_answer", "revision": data["revision"], "sdp": answer})


def session_of(server: Any, peer: Peer) -> Any:
    return server.hub.sittings["demo"].seats[peer.me].session


async def test_h264_from_whip_reaches_the_members_who_negotiated_it(server, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING)
    alice = Peer(server.base_url, server.token("Alice"), "red", 440.0)
    bruno = Peer(server.base_url, server.token("Bruno"), "green", 660.0)
    chloe = Vp8OnlyPeer(server.base_url, server.token("Chloé"), "blue", 880.0)
    encoder = H264WhipEncoder(f"{server.base_url}/whip/demo", server.token("Salle du conseil", role="chamber"))
    async with aiohttp.ClientSession() as http:
        try:
            await alice.join()
            await alice.publish()
            await bruno.join()
            await chloe.join()
            assert await encoder.publish(http) == 201
            answer = encoder.pc.remoteDescription.sdp
            assert "H264/90000" in answer and "VP8" not in answer
            video = [p for p in server.router.list_producers() if p.owner == "chamber" and p.kind == "video"]
            assert [p.codec for p in video] == ["h264"]
            camera = next(p for p in server.router.list_producers() if p.owner == alice.me and p.kind == "video")
            assert camera.codec == "vp8"

            def bruno_sees_both() -> bool:
                chamber, member = bruno.received.get("chamber"), bruno.received.get(alice.me or "")
                return chamber is not None and member is not None and len(chamber.colours) > 15 \
                    and len(member.colours) > 15

            await wait_for(bruno_sees_both, timeout=30)
            assert set(bruno.received["chamber"].colours[-5:]) == {"yellow"}
            assert set(bruno.received[alice.me or ""].colours[-5:]) == {"red"}
            counters = bruno.received["chamber"].counters[-10:]
            assert counters == sorted(counters) and counters[-1] > counters[0]  # a moving picture

            def chloe_sees_alice_and_hears_the_chamber() -> bool:
                chamber, member = chloe.received.get("chamber"), chloe.received.get(alice.me or "")
                return chamber is not None and member is not None and len(member.colours) > 15 \
                    and chamber.audio_frames > 50

            await wait_for(chloe_sees_alice_and_hears_the_chamber, timeout=30)
            assert set(chloe.received[alice.me or ""].colours[-5:]) == {"red"}
            assert chloe.received["chamber"].colours == []
            assert all(abs(hz - 550.0) < 40 for hz in chloe.received["chamber"].audio_peak_hz[-2:])

            # the router tells which slot stays silent, and why
            router = server.router
            assert router.codec_missing(session_of(server, chloe).recv_transport_id) == [video[0].id]
            assert router.codec_missing(session_of(server, bruno).recv_transport_id) == []
            chloe_slots = router.transports[session_of(server, chloe).recv_transport_id].slots
            silent = next(s for s in chloe_slots if s.consumer is not None and s.consumer.producer.id == video[0].id)
            assert silent.consumer.packets_out == 0 and silent.consumer.codec_missing
            assert set(silent.writers) == {"vp8"}
            bruno_slots = router.transports[session_of(server, bruno).recv_transport_id].slots
            busy = next(s for s in bruno_slots if s.consumer is not None and s.consumer.producer.id == video[0].id)
            assert set(busy.writers) == {"vp8", "h264"}
            assert busy.consumer.writer is busy.writers["h264"] and busy.consumer.packets_out > 30
            for peer in (alice, bruno, chloe):
                assert [m for m in peer.messages if m["type"] == "error"] == []
            problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or "decode" in r.getMessage()]
            assert problems == []  # no receiver fed a codec it did not negotiate, no error on the server
        finally:
            await encoder.pc.close()
            for peer in (alice, bruno, chloe):
                await peer.close()
    await wait_for(lambda: server.router.counts() == {"transports": 0, "producers": 0, "consumers": 0}, timeout=10)


async def test_an_h264_profile_the_sfu_cannot_answer_is_refused_clearly(server) -> None:  # type: ignore[no-untyped-def]
    url = f"{server.base_url}/whip/demo"
    encoder = H264WhipEncoder(url, server.token("Salle du conseil", role="chamber"), profile="640c1f")  # High
    async with aiohttp.ClientSession() as http:
        try:
            sdp = await encoder.offer()
            headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {encoder.token}"}
            async with http.post(url, data=sdp, headers=headers) as response:
                text = await response.text()
                assert response.status == 400
                assert "no_codec" in text and "640c1f" in text and "42e01f" in text
            assert server.router.counts() == {"transports": 0, "producers": 0, "consumers": 0}
        finally:
            await encoder.pc.close()


async def test_the_programme_worker_decodes_a_tapped_h264_chamber(server) -> None:  # type: ignore[no-untyped-def]
    """The chain the public programme uses: Router.tap as plain RTP, then the worker's Sources (here in-process)."""
    router = server.router
    encoder = H264WhipEncoder(f"{server.base_url}/whip/demo", server.token("Salle du conseil", role="chamber"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    port = 0
    sources = Sources(lambda ssrc: sock.sendto(pli_for(ssrc), ("127.0.0.1", port)))
    async with aiohttp.ClientSession() as http:
        try:
            assert await encoder.publish(http) == 201
            info = next(p for p in router.list_producers() if p.kind == "video")
            assert info.codec == "h264"
            port = await router.create_plain_transport("test-worker")
            router.connect_plain("test-worker", "127.0.0.1", sock.getsockname()[1])
            sources.add(0x5000, "video", info.codec, 96)  # what signaling/programme.py sends the worker
            sources.set_wanted([], 0x5000)
            router.tap("test-worker", info.id, 0x5000, 96)

            def decoded() -> int:
                while True:
                    try:
                        sources.on_rtp(sock.recv(2048))
                    except BlockingIOError:
                        break
                return int(sources.stats()["sources"][str(0x5000)]["frames_decoded"])

            await wait_for(lambda: decoded() > 15, timeout=20)
            picture = sources.video()
            assert picture is not None and mean_colour(picture.to_ndarray(format="rgb24")) == "yellow"
            stats = sources.stats()["sources"][str(0x5000)]
            assert stats["malformed"] == 0 and stats["decode_errors"] == 0
        finally:
            await router.close_plain_transport("test-worker")
            await encoder.pc.close()
            sock.close()

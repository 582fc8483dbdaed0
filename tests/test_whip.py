"""WHIP ingest (RFC 9725): the chamber's encoder publishes into the sitting over HTTP.

The encoder is an aiortc client following the RFC (POST the offer with every
candidate, Bearer token, 201 + Location, DELETE to stop). Members see and hear the
chamber; the chamber's own page (same seat) hears the members but never itself.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from tests.peers import CounterVideo, Peer, ToneAudio
from tests.test_media_relay import wait_for

pytestmark = pytest.mark.asyncio


class WhipEncoder:
    """What OBS or GStreamer's whipclientsink does, with aiortc: VP8 + Opus, sendonly."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self.token = token
        self.pc = RTCPeerConnection()
        self.location: str | None = None

    async def offer(self) -> str:
        self.pc.addTransceiver(ToneAudio(550.0), direction="sendonly")
        video = self.pc.addTransceiver(CounterVideo("yellow"), direction="sendonly")
        video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/VP8"])
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def publish(self, http: aiohttp.ClientSession) -> int:
        sdp = await self.offer()
        headers = {"Content-Type": "application/sdp"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        async with http.post(self.url, data=sdp, headers=headers) as response:
            if response.status == 201:
                self.location = response.headers["Location"]
                await self.pc.setRemoteDescription(RTCSessionDescription(await response.text(), "answer"))
            return response.status


async def post(http: aiohttp.ClientSession, url: str, body: Any, **headers: str) -> tuple[int, str, Any]:
    async with http.post(url, data=body, headers=headers) as response:
        return response.status, await response.text(), response.headers


async def test_whip_publisher_joins_the_sitting_and_the_chamber_does_not_hear_itself(server) -> None:  # type: ignore[no-untyped-def]
    url = f"{server.base_url}/whip/demo"
    member = Peer(server.base_url, server.token("Alice"), "red", 440.0)
    chamber_page = Peer(server.base_url, server.token("Salle du conseil", role="chamber"), "blue", 880.0)
    encoder = WhipEncoder(url, server.token("Salle du conseil", role="chamber"))
    async with aiohttp.ClientSession() as http:
        try:
            await member.join()
            await member.publish()
            await chamber_page.join()
            assert chamber_page.me == "chamber"
            assert await encoder.publish(http) == 201
            assert encoder.location is not None and encoder.location.startswith("/whip/demo/")

            def member_sees_chamber() -> bool:
                got = member.received.get("chamber")
                return got is not None and len(got.colours) > 10 and got.audio_frames > 25

            await wait_for(member_sees_chamber, timeout=30)
            assert set(member.received["chamber"].colours[-5:]) == {"yellow"}
            assert all(abs(hz - 550.0) < 40 for hz in member.received["chamber"].audio_peak_hz[-2:])

            def chamber_hears_member() -> bool:
                got = chamber_page.received.get(member.me or "")
                return got is not None and got.audio_frames > 25

            await wait_for(chamber_hears_member, timeout=20)
            assert set(chamber_page.received) == {member.me}  # never its own sound or picture
            owners = {p.owner for p in server.router.list_producers()}
            assert owners == {member.me, "chamber"}

            async with http.delete(server.base_url + encoder.location) as response:
                assert response.status == 200
            await wait_for(lambda: {p.owner for p in server.router.list_producers()} == {member.me})
            async with http.delete(server.base_url + encoder.location) as response:
                assert response.status == 404
        finally:
            await encoder.pc.close()
            await member.close()
            await chamber_page.close()
    await wait_for(lambda: server.router.counts() == {"transports": 0, "producers": 0, "consumers": 0}, timeout=10)


async def test_whip_refuses_bad_requests_and_keeps_serving(server) -> None:  # type: ignore[no-untyped-def]
    url = f"{server.base_url}/whip/demo"
    member = Peer(server.base_url, server.token("Alice"), "red", 440.0)
    watcher = Peer(server.base_url, server.token("Bruno"), "green", 660.0)
    async with aiohttp.ClientSession() as http:
        try:
            await member.join()
            await member.publish()
            await watcher.join()
            sdp = "v=0\r\n"
            status, text, headers = await post(http, url, sdp, **{"Content-Type": "application/sdp"})
            assert status == 401 and "token" in text and headers["WWW-Authenticate"].startswith("Bearer")
            forged = server.token("X", role="chamber")[:-4] + "AAAA"
            status, text, _ = await post(http, url, sdp, **{"Content-Type": "application/sdp",
                                                             "Authorization": f"Bearer {forged}"})
            assert status == 401
            expired = server.token("X", role="chamber", lifetime=-10)
            status, text, _ = await post(http, url, sdp, **{"Content-Type": "application/sdp",
                                                             "Authorization": f"Bearer {expired}"})
            assert status == 401 and "expired" in text
            for role in ("public", "technician"):
                token = server.token("Y", role=role)
                status, text, _ = await post(http, url, sdp, **{"Content-Type": "application/sdp",
                                                                 "Authorization": f"Bearer {token}"})
                assert status == 403, role
            auth = {"Authorization": f"Bearer {server.token('Salle', role='chamber')}"}
            status, _, _ = await post(http, url, "hello", **{"Content-Type": "text/plain"}, **auth)
            assert status == 415
            status, text, _ = await post(http, url, "v=0\r\nm=nonsense\r\n", **{"Content-Type": "application/sdp"}, **auth)
            assert status == 400 and "bad_sdp" in text
            status, _, _ = await post(http, url, "v=0" + "x" * 70_000, **{"Content-Type": "application/sdp"}, **auth)
            assert status == 413
            status, _, _ = await post(http, f"{server.base_url}/whip/nosuch", "v=0", **{"Content-Type": "application/sdp"},
                                      **auth)
            assert status == 404
            async with http.patch(f"{url}/r1", data="a=candidate", headers={"Content-Type": "application/trickle-ice-sdpfrag"}) as r:
                assert r.status == 405
            # every refusal left nothing behind, and the sitting goes on
            assert server.router.counts()["transports"] == 4 and server.router.counts()["producers"] == 2
            await wait_for(lambda: len(watcher.received.get(member.me or "", _Nothing).colours) > 10, timeout=20)

            # an encoder that vanishes without DELETE: its seat's media goes when it falls silent
            encoder = WhipEncoder(url, server.token("Salle du conseil", role="chamber"))
            assert await encoder.publish(http) == 201
            await wait_for(lambda: server.router.counts()["producers"] == 4, timeout=10)
            await encoder.pc.close()
            await wait_for(lambda: server.router.counts()["producers"] == 2, timeout=20)
            assert len(watcher.received[member.me or ""].colours) > 10
        finally:
            await member.close()
            await watcher.close()


class _Nothing:
    colours: list[str] = []

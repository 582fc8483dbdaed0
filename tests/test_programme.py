"""The public programme, end to end in one server: members -> taps -> worker -> HLS/recording and WHEP.

Two aiortc members publish distinct tones (440 Hz red, 880 Hz green). The programme's
sound, decoded with PyAV from the HLS segments the worker writes (the live HLS and
the recording are the same files), holds both; once the chair mutes one, its tone is
gone; the chair's sound cut and a closed session silence both. A WHEP viewer (aiortc,
RFC-style offer) receives the programme's H.264 and Opus.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription

from config import Settings
from sfu.consumer import Consumer
from signaling.app import JOURNAL
from tests.commands import command
from tests.peers import COLOURS, Peer
from tests.test_media_relay import wait_for
from tests.test_metrics import parse, scrape, value

pytestmark = pytest.mark.asyncio


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    programme = {"enabled": True, "width": 320, "height": 180, "fps": 15, "video_bitrate": 300_000,
                 "hls_segment_s": 1.0}
    return Settings(port=0, data_dir=tmp_path, demo=False, programme=programme)


def segments(run: Path) -> list[Path]:
    return sorted(run.glob("seg*.ts"))


def tone_levels(paths: list[Path], frequencies: tuple[float, ...]) -> tuple[list[float], float]:
    """The spectrum's magnitude at each frequency, relative to the loudest bin; and the RMS level."""
    chunks = []
    for path in paths:
        with av.open(str(path)) as container:
            for frame in container.decode(audio=0):
                samples = frame.to_ndarray().astype(np.float64)
                chunks.append(samples.mean(axis=0) if samples.ndim == 2 and not frame.format.is_packed else
                              samples.reshape(-1, frame.layout.nb_channels).mean(axis=1))
    mono = np.concatenate(chunks)
    rate = 48000
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    freqs = np.fft.rfftfreq(len(mono), 1 / rate)
    peak = spectrum.max() or 1.0
    levels = [float(spectrum[(freqs > f - 15) & (freqs < f + 15)].max() / peak) for f in frequencies]
    return levels, float(np.sqrt(np.mean(mono**2)))


async def fresh_segments(run: Path, count: int = 2) -> list[Path]:
    """``count`` segments written after now (skipping the one being written)."""
    start = len(segments(run))
    await wait_for(lambda: len(segments(run)) >= start + count + 1, timeout=30)
    return segments(run)[start + 1 : start + 1 + count]


async def whep_view(base_url: str, sitting: str = "demo") -> tuple[RTCPeerConnection, str, dict[str, int]]:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")
    counts = {"video": 0, "audio": 0}

    @pc.on("track")
    def on_track(track):  # type: ignore[no-untyped-def]
        async def read() -> None:
            while True:
                try:
                    await track.recv()
                except Exception:
                    return
                counts[track.kind] += 1

        asyncio.get_running_loop().create_task(read())

    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http, http.post(
        f"{base_url}/whep/{sitting}", data=pc.localDescription.sdp, headers={"Content-Type": "application/sdp"}
    ) as response:
        assert response.status == 201, await response.text()
        location = response.headers["Location"]
        await pc.setRemoteDescription(RTCSessionDescription(await response.text(), "answer"))
    return pc, location, counts


def council(server) -> tuple[Peer, Peer, Peer]:  # type: ignore[no-untyped-def]
    """The chair (blue, 660 Hz) and two members: Alice (red, 440 Hz) and Bruno (green, 880 Hz)."""
    chair = Peer(server.base_url, server.token("Présidente", role="chair"), "blue", 660.0)
    alice = Peer(server.base_url, server.token("Alice"), "red", 440.0)
    bruno = Peer(server.base_url, server.token("Bruno"), "green", 880.0)
    return chair, alice, bruno


async def on_air(programme, chair: Peer, *members: Peer) -> None:  # type: ignore[no-untyped-def]
    """The chair joins, the members join and publish, and the programme runs."""
    await chair.join()
    for member in members:
        await member.join()
        await member.publish()
    await wait_for(lambda: programme.running and programme.run_dir is not None, timeout=30)


async def test_programme_mixes_the_unmuted_and_serves_whep(server) -> None:  # type: ignore[no-untyped-def]
    chair, alice, bruno = council(server)
    programme = server.hub.programmes["demo"]
    viewer: RTCPeerConnection | None = None
    try:
        await on_air(programme, chair, alice, bruno)
        run = programme.run_dir
        assert run is not None

        for _ in range(3):  # the last member's first sound may fall in the middle of a segment
            (a, b), _ = tone_levels(await fresh_segments(run), (440.0, 880.0))
            if a > 0.3 and b > 0.3:
                break
        assert a > 0.3 and b > 0.3, (a, b)

        viewer, location, counts = await whep_view(server.base_url)
        await wait_for(lambda: counts["video"] > 15 and counts["audio"] > 50, timeout=20)
        status, text = await scrape(server.base_url)
        metrics = parse(text)
        assert status == 200 and value(metrics, "hemicycle_programme_running", sitting="demo") == 1
        assert value(metrics, "hemicycle_programme_viewers", sitting="demo") == 1

        await chair.send({"type": "mute", "participant_id": bruno.me})
        await asyncio.sleep(0.5)
        (a, b), _ = tone_levels(await fresh_segments(run), (440.0, 880.0))
        assert a > 0.3 and b < 0.05, (a, b)

        await chair.send({"type": "programme_sound", "cut": True})
        await asyncio.sleep(0.5)
        _, rms = tone_levels(await fresh_segments(run), (440.0,))
        assert rms < 20, rms  # int16 scale: silence
        await chair.send({"type": "programme_sound", "cut": False})
        await chair.send({"type": "closed_session", "closed": True})
        await asyncio.sleep(0.5)
        _, rms = tone_levels(await fresh_segments(run), (440.0,))
        assert rms < 20, rms
        journal = [e.type for e in server.app[JOURNAL].entries("demo")]
        assert journal.count("programme_sound") == 2

        frames_before = counts["video"]
        await wait_for(lambda: counts["video"] > frames_before + 10, timeout=10)  # the slate goes on
        async with aiohttp.ClientSession() as http, http.delete(server.base_url + location) as response:
            assert response.status == 200
        assert programme.viewers == set()
    finally:
        if viewer is not None:
            await viewer.close()
        for peer in (chair, alice, bruno):
            await peer.close()
    await programme.stop()
    playlist = (run / "programme.m3u8").read_text()
    assert "#EXT-X-ENDLIST" in playlist
    with av.open(str(run / "programme.m3u8")) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in container.decode(video=0)) > 15 * 5


async def test_whep_refuses_bad_offers_and_vanished_viewers_go(server) -> None:  # type: ignore[no-untyped-def]
    url = f"{server.base_url}/whep/demo"
    sdp = {"Content-Type": "application/sdp"}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data="v=0\r\n", headers=sdp) as response:
            assert response.status == 503 and response.headers["Retry-After"]  # nobody in: no programme yet
        member = Peer(server.base_url, server.token("Alice"), "red", 440.0)
        try:
            await member.join()
            await member.publish()
            programme = server.hub.programmes["demo"]
            await wait_for(lambda: programme.running, timeout=30)
            async with http.post(url, data="hello", headers={"Content-Type": "text/plain"}) as response:
                assert response.status == 415
            async with http.post(url, data="v=0\r\nm=garbage\r\n", headers=sdp) as response:
                assert response.status == 400 and "bad_sdp" in await response.text()
            async with http.post(f"{server.base_url}/whep/nosuch", data="v=0\r\n", headers=sdp) as response:
                assert response.status == 404
            vp8_only = RTCPeerConnection()
            transceiver = vp8_only.addTransceiver("video", direction="recvonly")
            transceiver.setCodecPreferences(
                [c for c in RTCRtpReceiver.getCapabilities("video").codecs if c.mimeType == "video/VP8"]
            )
            await vp8_only.setLocalDescription(await vp8_only.createOffer())
            async with http.post(url, data=vp8_only.localDescription.sdp, headers=sdp) as response:
                text = await response.text()
                assert response.status == 400 and "H.264" in text, text
            await vp8_only.close()
            async with http.delete(f"{url}/v999") as response:
                assert response.status == 404
            async with http.patch(f"{url}/v1", data="x") as response:
                assert response.status == 405

            viewer, _, counts = await whep_view(server.base_url)
            await wait_for(lambda: counts["video"] > 5, timeout=20)
            assert len(programme.viewers) == 1
            await viewer.close()  # gone without DELETE
            await wait_for(lambda: programme.viewers == set(), timeout=20)
            assert programme.running
        finally:
            await member.close()


async def test_a_sitting_held_in_the_chamber_reaches_the_public(server) -> None:  # type: ignore[no-untyped-def]
    """Only the chamber's encoder (WHIP) publishes: the programme runs and shows and plays it."""
    from tests.test_whip import WhipEncoder

    programme = server.hub.programmes["demo"]
    encoder = WhipEncoder(f"{server.base_url}/whip/demo", server.token("Salle du conseil", role="chamber"))
    try:
        async with aiohttp.ClientSession() as http:
            assert await encoder.publish(http) == 201
        await wait_for(lambda: programme.running and programme.run_dir is not None, timeout=30)
        run = programme.run_dir
        assert run is not None
        fresh = await fresh_segments(run)
        (level,), _ = tone_levels(fresh, (550.0,))
        assert level > 0.5, level
        with av.open(str(fresh[-1])) as container:
            frame = next(iter(container.decode(video=0)))
        image = frame.to_ndarray(format="rgb24")
        h, w, _ = image.shape
        # below the counter blocks of the source, above the caption band
        red, green, blue = image[int(0.55 * h) : int(0.65 * h), w // 3 : 2 * w // 3].reshape(-1, 3).mean(axis=0)
        assert red > 150 and green > 150 and blue < 100, (red, green, blue)  # the encoder's yellow
    finally:
        await encoder.pc.close()

# ------------------------------------------------------------------ the taps follow the scene
# The SFU feeds the worker only what its scene shows or mixes: an unshown camera is not
# forwarded at all (at 45 members, ~2,400 packets/s the worker would drop), nothing reaches it
# during a closed session, and a newly shown camera is in the picture (its tap restarts on a
# keyframe).


def taps(server, peer: Peer) -> dict[str, Consumer]:  # type: ignore[no-untyped-def]
    """The programme's tap of each of ``peer``'s tracks, by source."""
    sitting = server.hub.sittings["demo"]
    programme = server.hub.programmes["demo"]
    found: dict[str, Consumer] = {}
    for slot in sitting.router.plain[programme.transport_id].slots:
        consumer = slot.consumer
        if consumer is not None and sitting.router.owners.get(consumer.producer.id) == peer.me:
            found[consumer.producer.spec.source] = consumer
    return found


async def picture_colour(run: Path) -> str:
    """The main colour of the programme's picture in a fresh segment, above the caption band."""
    fresh = await fresh_segments(run, count=1)
    with av.open(str(fresh[-1])) as container:
        frames = list(container.decode(video=0))
    image = frames[-1].to_ndarray(format="rgb24")
    h, w, _ = image.shape
    sample = image[int(0.4 * h) : int(0.65 * h), w // 3 : 2 * w // 3].reshape(-1, 3).mean(axis=0)
    return min(COLOURS, key=lambda name: sum((a - b) ** 2 for a, b in zip(COLOURS[name], sample, strict=True)))


async def wait_for_picture(run: Path, colour: str) -> None:
    seen = []
    for _ in range(10):
        seen.append(await picture_colour(run))
        if seen[-1] == colour:
            return
    raise AssertionError(f"the programme never showed {colour}: {seen}")


async def test_only_the_shown_camera_reaches_the_programme(server) -> None:  # type: ignore[no-untyped-def]
    chair, alice, bruno = council(server)
    programme = server.hub.programmes["demo"]
    try:
        await on_air(programme, chair, alice, bruno)
        await wait_for(lambda: len(taps(server, alice)) == 2 and len(taps(server, bruno)) == 2, timeout=10)
        run = programme.run_dir
        assert run is not None

        for shown, hidden in ((alice, bruno), (bruno, alice)):
            await command(chair, {"type": "give_floor", "participant_id": shown.me, "mute_others": False},
                          lambda s=shown: not taps(server, s)["camera"].paused)  # type: ignore[misc]
            hidden_camera = taps(server, hidden)["camera"]
            assert hidden_camera.paused
            assert not taps(server, hidden)["mic"].paused  # still heard in the mix
            sent = hidden_camera.packets_out
            await wait_for(lambda s=shown: taps(server, s)["camera"].packets_out > 30, timeout=10)  # type: ignore[misc]
            await wait_for_picture(run, shown.colour)
            assert hidden_camera.packets_out == sent  # not one packet of the unshown camera

        await command(chair, {"type": "closed_session", "closed": True},
                      lambda: taps(server, bruno)["camera"].paused)
        before = {id(c): c.packets_out for p in (alice, bruno) for c in taps(server, p).values()}
        assert all(c.paused for p in (alice, bruno) for c in taps(server, p).values())
        await asyncio.sleep(1.0)
        assert {id(c): c.packets_out for p in (alice, bruno) for c in taps(server, p).values()} == before
    finally:
        for peer in (chair, alice, bruno):
            await peer.close()
    await programme.stop()


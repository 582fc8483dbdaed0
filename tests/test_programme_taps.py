"""The SFU feeds the programme worker only what its scene shows or mixes.

An unshown camera is not forwarded to the worker at all (at 45 members that is ~2,400
packets/s the worker would drop), and nothing reaches it during a closed session. When the
scene switches, the newly shown camera is in the programme's picture: the resumed tap
restarts on a keyframe.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
import pytest

from config import Settings
from sfu.consumer import Consumer
from tests.commands import command
from tests.peers import COLOURS, Peer
from tests.test_media_relay import wait_for
from tests.test_programme import fresh_segments

pytestmark = pytest.mark.asyncio


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    programme = {"enabled": True, "width": 320, "height": 180, "fps": 15, "video_bitrate": 300_000,
                 "hls_segment_s": 1.0}
    return Settings(port=0, data_dir=tmp_path, demo=False, programme=programme)


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
    chair = Peer(server.base_url, server.token("Présidente", role="chair"), "blue", 660.0)
    alice = Peer(server.base_url, server.token("Alice"), "red", 440.0)
    bruno = Peer(server.base_url, server.token("Bruno"), "green", 880.0)
    programme = server.hub.programmes["demo"]
    try:
        await chair.join()
        for member in (alice, bruno):
            await member.join()
            await member.publish()
        await wait_for(lambda: programme.running and programme.run_dir is not None, timeout=30)
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


"""Integration: each member receives at most ``media.max_videos`` videos, the most useful first.

aiortc members on loopback through the real signaling and SFU: what a member *decodes* is
what the server forwards (a held-back camera sends nothing), and the ``video_selection``
messages say the same thing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from config import Settings
from tests.peers import Peer
from tests.test_media_relay import wait_for

pytestmark = pytest.mark.asyncio


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(port=0, data_dir=tmp_path, demo=False, programme={"enabled": False}, media={"max_videos": 1})


async def _decoding(peer: Peer, others: list[Peer], seconds: float = 1.5) -> set[str]:
    """The members whose video ``peer`` decodes new frames of during ``seconds``."""
    before = {o.me: len(peer.received[o.me].counters) if o.me in peer.received else 0 for o in others}
    await asyncio.sleep(seconds)
    return {o.colour for o in others if o.me in peer.received and len(peer.received[o.me].counters) > before[o.me] + 5}


def _last_selection(peer: Peer) -> tuple[int, set[str]] | None:
    for message in reversed(peer.messages):
        if message["type"] == "video_selection":
            return message["limit"], {v["participant_id"] for v in message["videos"]}
    return None


async def _until_decoding(peer: Peer, others: list[Peer], expected: set[str], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    seen: set[str] = set()
    while asyncio.get_running_loop().time() < deadline:
        seen = await _decoding(peer, others)
        if seen == expected:
            return
    raise AssertionError(f"decoding {seen}, expected {expected}")


async def test_the_limit_the_ranking_and_the_members_own_choice(server) -> None:  # type: ignore[no-untyped-def]
    chair = Peer(server.base_url, server.token("Présidente", role="chair"), "red", 440.0)
    bruno = Peer(server.base_url, server.token("Bruno"), "green", 660.0)
    chloe = Peer(server.base_url, server.token("Chloé"), "blue", 880.0)
    watcher = Peer(server.base_url, server.token("Denis"), "red", 550.0)
    publishers = [chair, bruno, chloe]
    try:
        for peer in publishers:
            await peer.join()
            await peer.publish()
        await watcher.join()
        await watcher.publish(video=False)

        # Limit 1: the chair's camera, nobody else's; every microphone is still heard.
        await _until_decoding(watcher, publishers, {"red"})
        assert _last_selection(watcher) == (1, {chair.me})
        await wait_for(
            lambda: (
                all(watcher.received[p.me].audio_frames > 50 for p in publishers if p.me in watcher.received)
                and len(watcher.received) == 3
            ),
            timeout=20,
        )
        # The chair is not sent their own camera but one other (the last of the two to have spoken:
        # every member here sends a tone, so the active speaker moves between them).
        for _ in range(10):
            seen = await _decoding(chair, [bruno, chloe])
            selection = _last_selection(chair)
            told = {p.colour for p in (bruno, chloe) if selection is not None and p.me in selection[1]}
            if len(seen) == 1 and seen == told:
                break
        else:
            raise AssertionError(f"the chair decodes {seen}, was told {told}")

        # The chair gives the floor to Chloé: her camera comes first now.
        await chair.send({"type": "give_floor", "participant_id": chloe.me, "mute_others": False})
        await _until_decoding(watcher, publishers, {"blue"})
        assert _last_selection(watcher) == (1, {chloe.me})

        # A member asks for none (sound only), then for more than the server allows.
        await watcher.send({"type": "receive_videos", "max": 0})
        await _until_decoding(watcher, publishers, set())
        assert _last_selection(watcher) == (0, set())
        await watcher.send({"type": "receive_videos", "max": 50})
        await _until_decoding(watcher, publishers, {"blue"})
        assert _last_selection(watcher) == (1, {chloe.me})

        # Chloé turns her camera off: the limit goes to a camera that is on (the chair's).
        held_back = len(watcher.received[chair.me].counters)  # frames decoded before it was held back
        await chloe.send({"type": "set_muted", "source": "camera", "muted": True})
        await _until_decoding(watcher, publishers, {"red"})
        assert _last_selection(watcher) == (1, {chair.me})
        # forwarding resumes on a keyframe, and from there every frame arrives (no gap); the
        # first frame decoded may be the last one before the hold-back, which aiortc's jitter
        # buffer only hands over when the next packet (the resumed keyframe) arrives
        counters = watcher.received[chair.me].counters[held_back:]
        if len(counters) > 1 and counters[1] != counters[0] + 1:
            counters = counters[1:]
        assert len(counters) > 5 and all(b == a + 1 for a, b in zip(counters, counters[1:])), counters
    finally:
        for peer in [*publishers, watcher]:
            await peer.close()


async def test_a_bad_receive_videos_is_refused_and_the_member_keeps_receiving(server) -> None:  # type: ignore[no-untyped-def]
    speaker = Peer(server.base_url, server.token("Bruno"), "green", 660.0)
    watcher = Peer(server.base_url, server.token("Denis"), "red", 550.0)
    try:
        await speaker.join()
        await speaker.publish()
        await watcher.join()
        await _until_decoding(watcher, [speaker], {"green"})
        for bad in (
            {"type": "receive_videos", "max": -1},
            {"type": "receive_videos", "max": "all"},
            {"type": "receive_videos"},
            {"type": "receive_videos", "max": 10**9},
        ):
            await watcher.send(bad)
        await wait_for(lambda: sum(m["type"] == "error" for m in watcher.messages) == 4)
        assert {m["code"] for m in watcher.messages if m["type"] == "error"} == {"bad_message"}
        await _until_decoding(watcher, [speaker], {"green"})
    finally:
        await speaker.close()
        await watcher.close()

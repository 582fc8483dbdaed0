"""Integration: aiortc peers on loopback, through the real signaling and the SFU."""

from __future__ import annotations

import asyncio

import pytest

from tests.peers import Peer

pytestmark = pytest.mark.asyncio


async def wait_for(predicate, timeout: float = 15.0, step: float = 0.1) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step)


async def test_three_members_receive_each_other(server) -> None:  # type: ignore[no-untyped-def]
    specs = [("Alice", "red", 440.0), ("Bruno", "green", 660.0), ("Chloé", "blue", 880.0)]
    peers = [Peer(server.base_url, server.token(name), colour, tone) for name, colour, tone in specs]
    try:
        for peer in peers:
            await peer.join()
            await peer.publish()
        ids = {peer.me: peer for peer in peers}

        def everyone_sees_everyone() -> bool:
            return all(
                len(p.received.get(other, _Empty).counters) > 20 and p.received[other].audio_frames > 50
                for p in peers
                for other in ids
                if other != p.me
            )

        await wait_for(everyone_sees_everyone, timeout=30)
        for peer in peers:
            for other_id, received in peer.received.items():
                other = ids[other_id]
                assert set(received.colours[-10:]) == {other.colour}, (peer.me, other_id, received.colours[-10:])
                peaks = received.audio_peak_hz[-3:]
                assert peaks and all(abs(hz - other.tone) < 40 for hz in peaks), (peer.tone, other.tone, peaks)
                tail = received.counters[-15:]
                assert all(b == a + 1 for a, b in zip(tail, tail[1:])), tail
    finally:
        for peer in peers:
            await peer.close()
    await wait_for(lambda: server.router.counts() == {"transports": 0, "producers": 0, "consumers": 0}, timeout=10)


class _Empty:
    counters: list[int] = []
    audio_frames = 0

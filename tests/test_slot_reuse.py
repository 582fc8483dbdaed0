"""Arrivals and departures re-point free slots: the others get the slot table, not a new offer.

Each new m-line costs every member a renegotiation (at 45 members ~50 ms of server CPU each),
so a receiving connection grows by blocks of free slots and re-points them. Through the real
signaling and SFU, aiortc members check that a member arriving in a reserved slot, and one
arriving in the slot a departed member freed, are seen (their colour, every frame) and heard.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.peers import Peer
from tests.test_media_relay import wait_for

pytestmark = pytest.mark.asyncio


def offers(peer: Peer) -> int:
    return sum(1 for m in peer.messages if m["type"] == "subscribe_offer")


def tables(peer: Peer) -> list[dict[str, Any]]:
    return [m for m in peer.messages if m["type"] == "subscribe_slots"]


def sees(peer: Peer, other: Peer, frames: int = 20) -> bool:
    received = peer.received.get(other.me or "")
    return received is not None and len(received.counters) > frames and received.audio_frames > 50


def consecutive(counters: list[int]) -> bool:
    return all(b == a + 1 for a, b in zip(counters, counters[1:]))


async def test_a_newcomer_takes_a_free_slot_and_a_departure_frees_it_without_renegotiation(server) -> None:  # type: ignore[no-untyped-def]
    alice = Peer(server.base_url, server.token("Alice"), "red", 440.0)
    bruno = Peer(server.base_url, server.token("Bruno"), "green", 660.0)
    chloe = Peer(server.base_url, server.token("Chloé"), "blue", 880.0)
    denis = Peer(server.base_url, server.token("Denis"), "red", 550.0)
    peers = [alice, bruno, chloe, denis]
    try:
        for peer in (alice, bruno):
            await peer.join()
            await peer.publish()
        await wait_for(lambda: sees(alice, bruno), timeout=30)
        offered = offers(alice)
        transport = server.router.transports[server.hub.sittings["demo"].seats[alice.me].session.recv_transport_id]
        negotiated = len(transport.negotiated_slots())
        assert negotiated >= 8  # Bruno's two slots came in a block of 4 per kind

        # Chloé arrives: Alice gets the table (Chloé in two of her reserved slots), no offer
        await chloe.join()
        await chloe.publish()
        await wait_for(lambda: sees(alice, chloe), timeout=30)
        assert offers(alice) == offered and len(transport.negotiated_slots()) == negotiated
        owners = {s["participant_id"] for s in tables(alice)[-1]["slots"]}
        assert {bruno.me, chloe.me} <= owners
        assert set(alice.received[chloe.me or ""].colours[-10:]) == {"blue"}
        assert consecutive(alice.received[chloe.me or ""].counters[-15:])

        # Chloé leaves: her slots are freed by a table, still no offer
        await chloe.send({"type": "leave"})
        await chloe.close()
        peers.remove(chloe)
        await wait_for(lambda: chloe.me not in {s["participant_id"] for s in tables(alice)[-1]["slots"]}, timeout=10)
        assert offers(alice) == offered

        # Denis arrives and takes the slots Chloé freed: a re-pointed slot carries him, frame by frame
        await denis.join()
        await denis.publish()
        await wait_for(lambda: sees(alice, denis) and sees(bruno, denis), timeout=30)
        assert offers(alice) == offered and len(transport.negotiated_slots()) == negotiated
        received = alice.received[denis.me or ""]
        assert set(received.colours[-10:]) == {"red"}
        assert consecutive(received.counters[-15:]), received.counters[-15:]
        peaks = received.audio_peak_hz[-3:]
        assert peaks and all(abs(hz - 550.0) < 40 for hz in peaks), peaks
        # Denis himself got one offer with every slot, as any newcomer
        assert {s["participant_id"] for s in denis.slots.values()} >= {alice.me, bruno.me}
    finally:
        for peer in peers:
            await peer.close()
    await wait_for(lambda: server.router.counts() == {"transports": 0, "producers": 0, "consumers": 0}, timeout=10)

"""After each negotiation the SFU keeps of aiortc's parsed descriptions only what aiortc reads
again (sfu/aiortc_glue/transceivers.py, ``slim_descriptions``): every full garbage collection
walks what stays. Re-offers still work on a slimmed connection, and media still flows."""

from __future__ import annotations

import asyncio
import gc
import types

import pytest

from tests.peers import Peer
from tests.test_media_relay import wait_for

pytestmark = pytest.mark.asyncio

SIDES = ("Local", "Remote")


def kept(pc: object, side: str) -> object:
    """The description aiortc uses for this side: the pending one, else the current one."""
    return (getattr(pc, f"_RTCPeerConnection__pending{side}Description")
            or getattr(pc, f"_RTCPeerConnection__current{side}Description"))


def tracked_under(root: object) -> int:
    """GC-tracked objects reachable from ``root`` (what a collection walks for it)."""
    seen: set[int] = set()
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or not gc.is_tracked(obj) or isinstance(obj, (type, types.ModuleType)):
            continue  # a class leads to its module, and from there to everything
        seen.add(id(obj))
        todo.extend(gc.get_referents(obj))
    return len(seen)


async def receiving_mlines(peer: Peer) -> int:
    """How many of ``peer``'s receiving m-lines have had RTP."""
    assert peer.subscribe_pc is not None
    count = 0
    for transceiver in peer.subscribe_pc.getTransceivers():
        stats = (await transceiver.receiver.getStats()).values()
        count += any(s.type == "inbound-rtp" and s.packetsReceived > 0 for s in stats)
    return count


async def test_descriptions_are_slimmed_and_renegotiation_still_works(server) -> None:  # type: ignore[no-untyped-def]
    bruno = Peer(server.base_url, server.token("Bruno"), "green", 660.0)
    publishers = [Peer(server.base_url, server.token(name), colour, tone)
                  for name, colour, tone in (("Alice", "red", 440.0), ("Chloé", "blue", 880.0), ("Dan", "yellow", 550.0))]
    try:
        await bruno.join()
        for peer in publishers:
            await peer.join()
            await peer.publish()
        await wait_for(lambda: all(p.me in bruno.received and len(bruno.received[p.me].counters) > 20
                                   for p in publishers), timeout=30)
        first = list(publishers)
        offers = sum(1 for m in bruno.messages if m["type"] == "subscribe_offer")
        while sum(1 for m in bruno.messages if m["type"] == "subscribe_offer") == offers:  # until Bruno needs more slots
            assert len(publishers) < 12
            publishers.append(Peer(server.base_url, server.token(f"M{len(publishers)}"), "yellow", 550.0))
            await publishers[-1].join()
            await publishers[-1].publish()
            await wait_for(lambda: publishers[-1].me in bruno.received, timeout=20)
        # the re-offer went through a slimmed connection: the first publishers' pictures keep coming
        # (frame by frame, in their colours), and RTP arrives on every m-line that carries a track
        before = {p.me: len(bruno.received[p.me].counters) for p in first}
        await wait_for(lambda: all(len(bruno.received[p.me].counters) > before[p.me] + 20 for p in first), timeout=30)
        for p in first:
            assert bruno.received[p.me].colours[-1] == p.colour
        for _ in range(100):
            if await receiving_mlines(bruno) >= 2 * len(publishers):
                break
            await asyncio.sleep(0.2)
        assert await receiving_mlines(bruno) >= 2 * len(publishers)

        sitting = server.hub.sittings["demo"]
        transports = list(server.router.transports.values())
        await wait_for(lambda: not any(t.slim_pending for t in transports), timeout=10)  # once applied
        checked: set[tuple[str, str]] = set()
        for seat in sitting.seats.values():
            if seat.session is None:
                continue
            for transport_id in (seat.session.send_transport_id, seat.session.recv_transport_id):
                if not server.router.has_transport(transport_id):
                    continue
                pc = server.router.transports[transport_id].pc
                for name in SIDES:
                    description = kept(pc, name)
                    if description is None or pc.signalingState != "stable":
                        continue  # not negotiated yet (a receiving connection waiting for its answer)
                    checked.add((transport_id, name))
                    assert all(not m.rtp.codecs and not m.ssrc for m in description.media)
                    # what stays per m-line: its mid and ICE candidates, the shared DTLS and ICE parameters
                    assert tracked_under(description) < 12 * len(description.media) + 40, name
        bruno_session = sitting.seats[bruno.me].session
        wanted = {s.send_transport_id for p in publishers if (s := sitting.seats[p.me].session) is not None}
        wanted.add(bruno_session.recv_transport_id)
        assert {(t, n) for t in wanted for n in SIDES} <= checked  # every sending connection, Bruno's receiving one
    finally:
        for peer in (bruno, *publishers):
            await peer.close()

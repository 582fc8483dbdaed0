"""Sender reports to subscribers: the SFU sends one per forwarded stream, none for a free slot.

aiortc's own RTCP loop (one task per m-line, an SR every second whatever the slot carries) is
parked; the transport sends the SRs of the slots that forward media, translated to the leg's
timestamps and counts, in compound packets. An aiortc member reads them as a browser does
(remote-outbound-rtp statistics of each receiver).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.peers import Peer
from tests.test_media_relay import wait_for

pytestmark = pytest.mark.asyncio


async def remote_outbound(peer: Peer) -> dict[int, Any]:
    """SSRC -> the latest sender report ``peer`` received about it (what its receivers saw)."""
    assert peer.subscribe_pc is not None
    out = {}
    for transceiver in peer.subscribe_pc.getTransceivers():
        for stats in (await transceiver.receiver.getStats()).values():
            if stats.type == "remote-outbound-rtp":
                out[stats.ssrc] = stats
    return out


async def test_each_forwarded_stream_gets_sender_reports_and_a_free_slot_none(server) -> None:  # type: ignore[no-untyped-def]
    alice = Peer(server.base_url, server.token("Alice"), "red", 440.0)
    bruno = Peer(server.base_url, server.token("Bruno"), "green", 660.0)
    try:
        await alice.join()
        await alice.publish()
        await bruno.join()
        await wait_for(lambda: alice.me in bruno.received and len(bruno.received[alice.me].counters) > 30, timeout=20)
        session = server.hub.sittings["demo"].seats[bruno.me].session
        transport = server.router.transports[session.recv_transport_id]
        busy = {slot.writer.ssrc: slot for slot in transport.slots if slot.consumer is not None}
        free = {slot.writer.ssrc for slot in transport.slots if slot.consumer is None and slot.writer is not None}
        assert len(busy) == 2 and free  # Alice's microphone and camera; the rest of the block in reserve

        reports: dict[int, Any] = {}

        async def reported() -> bool:
            reports.update(await remote_outbound(bruno))
            return set(busy) <= set(reports)

        for _ in range(50):
            if await reported():
                break
            await asyncio.sleep(0.1)
        assert set(busy) <= set(reports), (busy, reports)
        assert not set(reports) & free  # nothing about slots that carry nothing
        for ssrc, slot in busy.items():
            consumer = slot.consumer
            assert consumer is not None
            # the counts are the leg's own, taken at most a second before
            assert 0 < reports[ssrc].packetsSent <= consumer.packets_out
            assert 0 < reports[ssrc].bytesSent <= consumer.bytes_out
        # and they keep coming, every second or so
        first = {ssrc: reports[ssrc].packetsSent for ssrc in busy}
        await asyncio.sleep(2.5)
        later = await remote_outbound(bruno)
        assert all(later[ssrc].packetsSent > first[ssrc] for ssrc in busy)
    finally:
        await alice.close()
        await bruno.close()

"""Integration: late joiners, loss repair, payload integrity and clean-up, with aiortc peers."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from sfu.vp8 import parse_descriptor
from tests.peers import Peer
from tests.test_media_relay import wait_for

pytestmark = pytest.mark.asyncio


def consecutive(counters: list[int]) -> bool:
    return all(b == (a + 1) & 0xFFFF for a, b in zip(counters, counters[1:]))


async def test_late_joiner_gets_a_keyframe_at_once(server) -> None:  # type: ignore[no-untyped-def]
    early = Peer(server.base_url, server.token("Early"), "red", 440)
    late = Peer(server.base_url, server.token("Late"), "green", 660)
    try:
        await early.join()
        await early.publish()
        await asyncio.sleep(3)  # aiortc's encoder would not send another keyframe for minutes
        await late.join()
        started = asyncio.get_running_loop().time()
        await wait_for(lambda: len(late.received.get(early.me or "", _none()).counters) >= 10, timeout=10)
        assert asyncio.get_running_loop().time() - started < 5
        assert consecutive(late.received[early.me or ""].counters)
        camera = next(p for p in server.router.producers.values() if p.spec.source == "camera")
        assert camera.keyframe_requests >= 1
    finally:
        await early.close()
        await late.close()


@pytest.mark.parametrize("direction", ["upstream", "downstream"])
async def test_two_percent_loss_is_repaired(server, direction: str) -> None:  # type: ignore[no-untyped-def]
    server.router.loss_injection[direction] = 0.02
    sender = Peer(server.base_url, server.token("Sender"), "blue", 880)
    receiver = Peer(server.base_url, server.token("Receiver"), "yellow", 1100)
    try:
        await receiver.join()
        await sender.join()
        await sender.publish(audio=False)
        await wait_for(lambda: len(receiver.received.get(sender.me or "", _none()).counters) >= 120, timeout=30)
        counters = receiver.received[sender.me or ""].counters
        assert consecutive(counters), [(a, b) for a, b in zip(counters, counters[1:]) if b != a + 1]
        camera = next(p for p in server.router.producers.values() if p.spec.source == "camera")
        assert sum(i.dropped for i in server.router.injectors) >= 2
        if direction == "downstream":
            consumer = next(iter(camera.consumers))
            assert consumer.retransmits > 0  # NACKs were answered from the SFU's cache
        else:
            assert camera.stats.received > 0 and camera.nacks is not None
    finally:
        await sender.close()
        await receiver.close()


async def test_payload_after_vp8_descriptor_is_untouched(server) -> None:  # type: ignore[no-untyped-def]
    sender = Peer(server.base_url, server.token("Sender"), "red", 440)
    receiver = Peer(server.base_url, server.token("Receiver"), "green", 660)
    sent: set[bytes] = set()
    received: list[bytes] = []
    try:
        await receiver.join()
        await sender.join()
        await sender.publish(audio=False)
        _record_sent(sender, sent)
        await wait_for(lambda: receiver.subscribe_pc is not None, timeout=10)
        _record_received(receiver, received)
        await wait_for(lambda: len(received) > 150, timeout=20)
        assert sent
        missing = [p for p in received[20:] if p not in sent]
        assert not missing, f"{len(missing)} of {len(received)} payloads changed by the SFU"
    finally:
        await sender.close()
        await receiver.close()


def _vp8_body(packet: bytes) -> bytes | None:
    from sfu.rtp import read_packet

    try:
        view = read_packet(packet, 0, 0)
        if view.payload_type < 96 or view.payload_end - view.payload_offset < 4:
            return None
        payload = packet[view.payload_offset : view.payload_end]
        return payload[parse_descriptor(payload).size :]
    except ValueError:
        return None


def _record_sent(peer: Peer, into: set[bytes]) -> None:
    assert peer.publish_pc is not None
    dtls = peer.publish_pc.getTransceivers()[0].sender.transport
    original = dtls._send_rtp

    async def send_rtp(data: bytes) -> None:
        body = _vp8_body(data) if data[1] & 0x7F == 97 else None
        if body:
            into.add(body)
        await original(data)

    dtls._send_rtp = send_rtp


def _record_received(peer: Peer, into: list[bytes]) -> None:
    assert peer.subscribe_pc is not None
    dtls = peer.subscribe_pc.getTransceivers()[0].receiver.transport
    original = dtls._handle_rtp_data

    async def handle(data: bytes, arrival_time_ms: int) -> None:
        body = _vp8_body(data) if data[1] & 0x7F == 97 else None
        if body:
            into.append(body)
        await original(data, arrival_time_ms)

    dtls._handle_rtp_data = handle


async def test_resources_return_to_baseline_after_everyone_leaves(server) -> None:  # type: ignore[no-untyped-def]
    def snapshot() -> tuple[int, int]:
        return len(os.listdir("/proc/self/fd")), len(asyncio.all_tasks())

    await asyncio.sleep(0.5)
    fds_before, tasks_before = snapshot()
    peers = [Peer(server.base_url, server.token(f"M{i}"), colour, 440 + 220 * i) for i, colour in enumerate(["red", "green", "blue"])]
    for peer in peers:
        await peer.join()
        await peer.publish()
    await wait_for(lambda: all(len(p.received) == 2 for p in peers), timeout=20)
    assert server.router.counts()["consumers"] == 12
    for peer in peers:
        await peer.close()
    await wait_for(lambda: server.router.counts() == {"transports": 0, "producers": 0, "consumers": 0}, timeout=10)
    await wait_for(lambda: snapshot() <= (fds_before, tasks_before + 1), timeout=15)
    seats = server.hub.sittings["demo"].seats
    assert len(seats) == 3 and all(seat.session is None for seat in seats.values())  # seats stay known


def _none() -> Any:
    class Nothing:
        counters: list[int] = []

    return Nothing

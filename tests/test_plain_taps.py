"""Integration: the SFU's plain-RTP link to a local worker (sfu/plain.py), the test being the worker.

A member (aiortc peer) publishes through the real signaling; the router taps its
tracks to the test's UDP socket as plain RTP (fixed SSRC and payload type, starting
on a keyframe), answers the worker's PLI with a new keyframe, ignores datagrams from
any other address, and routes the worker's own RTP to an injected producer.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import av
import pytest

from sfu import rtcp
from sfu.producer import ProducerSpec
from sfu.rtp import read_packet
from sfu.vp8 import parse_descriptor
from tests.peers import Peer
from tests.test_media_relay import wait_for

pytestmark = pytest.mark.asyncio

AUDIO_SSRC, VIDEO_SSRC = 0x1111, 0x2222


class Worker:
    """A UDP socket standing for the programme worker: collects what the taps send."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.packets: list[bytes] = []

    def drain(self) -> None:
        while True:
            try:
                self.packets.append(self.sock.recv(2048))
            except BlockingIOError:
                return

    def of(self, ssrc: int) -> list[bytes]:
        self.drain()
        return [p for p in self.packets if struct.unpack_from("!I", p, 8)[0] == ssrc]

    def keyframes(self) -> int:
        starts = 0
        for packet in self.of(VIDEO_SSRC):
            view = read_packet(packet, 0, 0)
            if parse_descriptor(packet[view.payload_offset : view.payload_end]).keyframe:
                starts += 1
        return starts


async def test_taps_forward_plain_rtp_and_answer_pli(server) -> None:  # type: ignore[no-untyped-def]
    router = server.router
    worker = Worker()
    member = Peer(server.base_url, server.token("Alice"), "red", 440.0)
    try:
        await member.join()
        await member.publish()
        await wait_for(lambda: len(router.list_producers()) == 2)
        port = await router.create_plain_transport("programme")
        router.connect_plain("programme", "127.0.0.1", worker.port)
        for info in router.list_producers():
            ssrc, pt = (AUDIO_SSRC, 111) if info.kind == "audio" else (VIDEO_SSRC, 96)
            router.tap("programme", info.id, ssrc, pt)
        await wait_for(lambda: len(worker.of(AUDIO_SSRC)) > 50 and worker.keyframes() >= 1)

        first_video = read_packet(worker.of(VIDEO_SSRC)[0], 0, 0)
        assert first_video.payload_type == 96
        assert parse_descriptor(worker.of(VIDEO_SSRC)[0][first_video.payload_offset :]).keyframe
        decoder = av.CodecContext.create("opus", "r")
        samples = 0
        for packet in worker.of(AUDIO_SSRC)[:50]:
            view = read_packet(packet, 0, 0)
            assert view.payload_type == 111 and packet[0] == 0x80  # no header extension on a tap
            for frame in decoder.decode(av.Packet(packet[view.payload_offset : view.payload_end])):
                samples += frame.samples
        assert samples >= 49 * 960

        before = worker.keyframes()
        await asyncio.sleep(0.6)  # the producer's keyframe requests are throttled to one per 500 ms
        worker.sock.sendto(rtcp.pli(1, VIDEO_SSRC), ("127.0.0.1", port))
        await wait_for(lambda: worker.keyframes() > before, timeout=5)

        # Another local process cannot inject media or feedback.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as intruder:
            spec = ProducerSpec("video", "video", "programme", 102, 90000, "h264", 0x3333, None, None, "programme")
            producer_id = router.inject("programme", spec)
            rtp = struct.pack("!BBHII", 0x80, 102, 1, 1000, 0x3333) + b"\x65" + b"\x00" * 100
            intruder.sendto(rtp, ("127.0.0.1", port))
            intruder.sendto(b"\xff" * 40, ("127.0.0.1", port))
            worker.sock.sendto(rtp, ("127.0.0.1", port))
            worker.sock.sendto(b"\x80" * 5, ("127.0.0.1", port))  # garbage from the worker: ignored
            await wait_for(lambda: router.injected[producer_id].packets_in == 1)
            await asyncio.sleep(0.2)
            assert router.injected[producer_id].packets_in == 1
            # the worker's sender reports time its streams (viewers lip-sync by them)
            report = struct.pack("!BBHIQIII", 0x80, 200, 6, 0x3333, 0xE000_0000_8000_0000, 123456, 1, 100)
            intruder.sendto(report, ("127.0.0.1", port))
            worker.sock.sendto(report, ("127.0.0.1", port))
            await wait_for(lambda: router.injected[producer_id].last_sr is not None)
            assert router.injected[producer_id].last_sr == (0xE000_0000_8000_0000, 123456)
    finally:
        await member.close()
        worker.sock.close()
        await router.close_plain_transport("programme")
    await wait_for(lambda: router.counts() == {"transports": 0, "producers": 0, "consumers": 0}, timeout=10)
    assert router.injected == {}

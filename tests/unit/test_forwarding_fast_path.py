"""The fast forwarding path: packets built in the sender's scratch buffer, libsrtp called in
place, only active consumers called. It must send exactly what the plain path sends."""

from __future__ import annotations

import asyncio
import os
import socket
from types import SimpleNamespace

import aioice.ice
import pylibsrtp
import pytest

import sfu.consumer
import sfu.producer
import sfu.rtp
import tests.unit.test_consumer_continuity as cc
from sfu import aiortc_glue as glue
from sfu.rtp import ExtensionIds, LegWriter, ScratchSink


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> cc.Clock:
    c = cc.Clock()
    fake_time = SimpleNamespace(monotonic=c.monotonic)
    monkeypatch.setattr(sfu.producer, "time", fake_time)
    monkeypatch.setattr(sfu.consumer, "time", fake_time)
    monkeypatch.setattr(sfu.rtp, "abs_send_time_now", lambda: b"\x01\x02\x03")
    return c


class CapturingSink(ScratchSink):
    """A sink with its own scratch buffer that keeps what it was asked to send."""

    capacity = 1500

    def __init__(self) -> None:
        self.buffer = memoryview(bytearray(self.capacity))
        self.sent: list[bytes] = []

    def __call__(self, packet: bytes) -> bool:
        self.sent.append(bytes(packet))
        return True

    def send_built(self, length: int) -> bool:
        self.sent.append(bytes(self.buffer[:length]))
        return True


@pytest.mark.parametrize("kind", ["video", "audio"])
def test_scratch_path_sends_the_bytes_of_the_plain_path(clock: cc.Clock, kind: str) -> None:
    pub = cc.make_pub(kind, 0xA0)
    plain, built = cc.make_sub(kind), cc.make_sub(kind)
    built.slot.last_seq, built.slot.last_ts = plain.slot.last_seq, plain.slot.last_ts  # (drawn at random)
    sink = CapturingSink()
    plain.consume(pub, "plain")
    built_consumer = sfu.consumer.Consumer("built", pub.producer, built.slot, sink)
    for _ in range(2):  # a pause makes the VP8 PictureID/TL0PICIDX offsets non-zero: rewritten in place
        if kind == "video":
            cc.send_video(pub, clock, 4, picture_id=pub.seq & 0x7FFF, tl0=pub.seq & 0xFF, key_first=True)
        else:
            cc.send_audio(pub, clock, 4)
        pub.producer.pause()
        cc.send_video(pub, clock, 3, picture_id=0, tl0=0) if kind == "video" else cc.send_audio(pub, clock, 3)
        pub.producer.resume()
    assert built_consumer.picture_id_offset or kind == "audio"
    assert len(plain.sent) == 8 and sink.sent == plain.sent
    wanted = [v.sequence for v in plain.views()[5:7]]
    built_consumer.on_rtcp("nack", wanted)  # retransmissions take the plain call
    assert sink.sent[8:] == plain.sent[5:7]


def test_write_into_matches_write() -> None:
    for ids, audio in ((ExtensionIds(3, 2, 1), True), (ExtensionIds(mid=5), False), (ExtensionIds(), True)):
        writer = LegWriter(0xDEADBEEF, 111, "12", ids, audio)
        for level in (None, 40):
            buf = bytearray(100)
            size = writer.write_into(buf, True, 65535, 0xFFFFFFFF, level, True, b"abc")
            assert bytes(buf[:size]) + b"payload" == writer.write(True, 65535, 0xFFFFFFFF, level, True, b"payload", b"abc")


def test_only_active_consumers_are_called(clock: cc.Clock) -> None:
    pub, a, b = cc.make_pub("audio", 0xB0), cc.make_sub("audio"), cc.make_sub("audio")
    ca, cb = a.consume(pub, "a"), b.consume(pub, "b")
    assert set(pub.producer._active) == {ca, cb}
    cb.set_paused(True)
    assert cb.paused and pub.producer._active == (ca,)
    cc.send_audio(pub, clock, 3)
    assert len(a.sent) == 3 and b.sent == []
    cb.paused = False  # the attribute still works, and keeps the list right
    cb.resync()
    assert set(pub.producer._active) == {ca, cb}
    cc.send_audio(pub, clock, 2)
    assert len(b.sent) == 2
    b.slot.writers = {}  # renegotiated without the producer's codec
    cb.bind()
    assert cb.codec_missing and pub.producer._active == (ca,)
    ca.close()
    assert pub.producer._active == ()


def srtp_pair() -> tuple[pylibsrtp.Session, pylibsrtp.Session]:
    key = os.urandom(28)
    profile = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM
    tx = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
    rx = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile)
    tx.allow_repeat_tx = True
    return pylibsrtp.Session(tx), pylibsrtp.Session(rx)


async def test_srtp_sender_protects_in_place_and_sends_on_the_nominated_pair() -> None:
    loop = asyncio.get_running_loop()
    rx_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx_sock.bind(("127.0.0.1", 0))
    rx_sock.settimeout(2)
    udp, protocol = await loop.create_datagram_endpoint(
        lambda: aioice.ice.StunProtocol(SimpleNamespace(protocol_lost=lambda _p: None)), local_addr=("127.0.0.1", 0)
    )
    tx, rx = srtp_pair()
    nominated: dict[int, object] = {}
    dtls = SimpleNamespace(
        _tx_srtp=tx, _state=glue.DtlsState.NEW, transport=SimpleNamespace(_connection=SimpleNamespace(_nominated=nominated))
    )
    try:
        sender = glue.SrtpSender(dtls)  # type: ignore[arg-type]
        packet = LegWriter(0x1234, 96, "0", ExtensionIds(mid=1), False).write(False, 7, 9, None, False, b"x" * 1000)
        assert not sender(packet)  # not connected yet
        dtls._state = glue.DtlsState.CONNECTED
        assert not sender(packet)  # no nominated pair yet
        nominated[1] = SimpleNamespace(protocol=protocol, remote_addr=rx_sock.getsockname())
        assert sender(packet)
        assert rx.unprotect(await loop.run_in_executor(None, rx_sock.recv, 2048)) == packet
        packet = packet[:2] + b"\x00\x08" + packet[4:]  # the next sequence number (the receiver checks replays)
        sender.buffer[: len(packet)] = packet  # built in place
        assert sender.send_built(len(packet))
        assert rx.unprotect(await loop.run_in_executor(None, rx_sock.recv, 2048)) == packet
        sender.drop = lambda: True
        assert sender(packet)  # dropped on purpose: counted as sent
        sender.drop = None
        assert not sender(bytes(glue.SCRATCH_CAPACITY + 1))
        dtls._state = glue.DtlsState.CLOSED
        assert not sender(packet)
        rx_sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            rx_sock.recv(2048)
    finally:
        udp.close()
        rx_sock.close()

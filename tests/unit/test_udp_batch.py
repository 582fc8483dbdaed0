"""sfu/udp_batch.py: datagrams of the muxed port sent by one sendmmsg, with real sockets on loopback."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import aioice.ice
import pytest
from aiortc.rtp import RtcpRtpfbPacket

import tests.unit.test_consumer_continuity as cc
from sfu import aiortc_glue as glue
from sfu import udp_batch
from sfu.consumer import Consumer, Slot
from sfu.udp_batch import UdpBatch
from sfu.udp_mux import SharedUdpPort, UdpMux
from tests.unit.test_forwarding_fast_path import srtp_pair

pytestmark = pytest.mark.skipif(not udp_batch.available(), reason="no sendmmsg here")


class Receiver:
    """A peer's socket: what reached it, in order."""

    def __init__(self, family: int = socket.AF_INET, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.addr = self.sock.getsockname()

    def received(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096))
            except BlockingIOError:
                return out


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made = [Receiver() for _ in range(3)]
    yield made
    for receiver in made:
        receiver.sock.close()


async def bound_mux(address: str = "127.0.0.1") -> tuple[SharedUdpPort, UdpMux, UdpBatch]:
    shared = SharedUdpPort(0)
    await shared.open([address])
    mux = shared.muxes[address]
    assert mux.batch is not None
    return shared, mux, mux.batch


@pytest.fixture
async def muxed() -> AsyncIterator[tuple[UdpMux, UdpBatch, list[Exception]]]:
    shared, mux, batch = await bound_mux()
    errors: list[Exception] = []
    batch.on_error = errors.append
    yield mux, batch, errors
    shared.close()


def add(batch: UdpBatch, data: bytes, to: Any) -> None:
    batch.add(data, len(data), to)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0.005)


async def test_held_datagrams_leave_in_one_call_in_order(muxed: Any, receivers: list[Receiver]) -> None:
    _, batch, errors = muxed
    to = [batch.destination(r.addr) for r in receivers]
    udp_batch.hold()
    for i in range(9):
        add(batch, b"packet %d" % i, to[i % 3])
    assert batch.count == 9 and batch.calls == 0 and receivers[0].received() == []
    udp_batch.release()
    assert batch.count == 0 and batch.calls == 1 and batch.sent == 9
    for k, receiver in enumerate(receivers):
        assert receiver.received() == [b"packet %d" % i for i in range(k, 9, 3)]
    add(batch, b"alone", to[1])  # outside a hold: at once
    assert batch.calls == 2 and receivers[1].received() == [b"alone"] and errors == []


async def test_a_full_batch_is_sent_while_held(muxed: Any, receivers: list[Receiver]) -> None:
    _, batch, _ = muxed
    to = batch.destination(receivers[0].addr)
    udp_batch.hold()
    try:
        for i in range(batch.capacity + 3):
            add(batch, b"%d" % i, to)
        assert batch.calls == 1 and batch.count == 3
        first = receivers[0].received()  # (read now: a default receive buffer holds about 256 small datagrams)
    finally:
        udp_batch.release()
    assert batch.calls == 2
    assert first + receivers[0].received() == [b"%d" % i for i in range(batch.capacity + 3)]


class FakeLibc:
    """sendmmsg that sends at most ``limit`` datagrams a call, then fails with ``fail`` (errno) once."""

    def __init__(self, real: Any, limit: int, fail: int | None = None, fail_at_call: int = 2) -> None:
        self.real, self.limit, self.fail, self.fail_at_call, self.calls = real, limit, fail, fail_at_call, 0

    def sendmmsg(self, fd: int, msgs: Any, count: int, flags: int) -> int:
        self.calls += 1
        if self.fail is not None and self.calls == self.fail_at_call:
            udp_batch.ffi.errno = self.fail
            return -1
        return int(self.real.sendmmsg(fd, msgs, min(count, self.limit), flags))


async def test_a_datagram_too_big_for_a_slot_goes_alone_in_order(muxed: Any, receivers: list[Receiver]) -> None:
    _, batch, _ = muxed
    to = batch.destination(receivers[0].addr)
    big = bytes(batch.slot_size + 1)
    udp_batch.hold()
    add(batch, b"before", to)
    add(batch, big, to)
    add(batch, b"after", to)
    udp_batch.release()
    await settle()
    assert receivers[0].received() == [b"before", big, b"after"]


async def test_partial_sends_go_on_from_where_they_stopped(
    muxed: Any, receivers: list[Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, batch, _ = muxed
    fake = FakeLibc(udp_batch._libc, limit=2)
    monkeypatch.setattr(udp_batch, "_libc", fake)
    to = [batch.destination(r.addr) for r in receivers]
    udp_batch.hold()
    for i in range(7):
        add(batch, b"p%d" % i, to[i % 2])
    udp_batch.release()
    assert fake.calls == 4 and batch.sent == 7 and batch.fallbacks == 0
    assert receivers[0].received() == [b"p0", b"p2", b"p4", b"p6"]
    assert receivers[1].received() == [b"p1", b"p3", b"p5"]


@pytest.mark.parametrize("code", [errno.EAGAIN, errno.ENOBUFS])
async def test_a_full_socket_hands_the_rest_to_the_transport_in_order(
    muxed: Any, receivers: list[Receiver], monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    _, batch, errors = muxed
    fake = FakeLibc(udp_batch._libc, limit=2, fail=code)
    monkeypatch.setattr(udp_batch, "_libc", fake)
    to = batch.destination(receivers[0].addr)
    udp_batch.hold()
    for i in range(6):
        add(batch, b"p%d" % i, to)
    udp_batch.release()
    assert fake.calls == 2 and batch.sent == 2 and batch.fallbacks == 4 and errors == []
    await settle()  # the transport may have queued them
    assert receivers[0].received() == [b"p%d" % i for i in range(6)]


async def test_while_the_transport_has_a_queue_the_batch_goes_behind_it(
    muxed: Any, receivers: list[Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, batch, _ = muxed
    sent: list[tuple[bytes, Any]] = []
    monkeypatch.setattr(batch, "transport", SimpleNamespace(
        get_write_buffer_size=lambda: 1, is_closing=lambda: False, sendto=lambda d, a: sent.append((d, a))
    ))  # fmt: skip
    to = batch.destination(receivers[0].addr)
    udp_batch.hold()
    add(batch, b"one", to)
    add(batch, b"two", to)
    udp_batch.release()
    assert batch.calls == 0 and sent == [(b"one", receivers[0].addr), (b"two", receivers[0].addr)]


async def test_an_error_loses_only_its_datagram(muxed: Any, receivers: list[Receiver]) -> None:
    _, batch, errors = muxed
    broadcast = batch.destination(("255.255.255.255", 9))  # no SO_BROADCAST: EACCES
    to = batch.destination(receivers[0].addr)
    udp_batch.hold()
    for data, where in ((b"a", to), (b"lost", broadcast), (b"b", to), (b"c", to)):
        add(batch, data, where)
    udp_batch.release()
    assert receivers[0].received() == [b"a", b"b", b"c"]
    assert len(errors) == 1 and isinstance(errors[0], OSError)  # EACCES (or ENETUNREACH without a route)


async def test_other_sends_on_the_socket_flush_the_batch_first(muxed: Any, receivers: list[Receiver]) -> None:
    mux, batch, _ = muxed
    transport = mux.attach(asyncio.DatagramProtocol(), "abcd", owner=object(), remote_ufrag=lambda: None)
    to = batch.destination(receivers[0].addr)
    udp_batch.hold()
    add(batch, b"srtp", to)
    transport.sendto(b"\x16dtls", receivers[0].addr)  # a DTLS record, sent by aiortc meanwhile
    udp_batch.release()
    await settle()
    assert receivers[0].received() == [b"srtp", b"\x16dtls"]
    transport.close()


def test_addresses() -> None:
    v4 = udp_batch.sockaddr(socket.AF_INET, ("192.0.2.7", 5004))
    assert v4 is not None and len(v4) == 16 and v4[2:8] == bytes([0x13, 0x8C, 192, 0, 2, 7])
    v6 = udp_batch.sockaddr(socket.AF_INET6, ("2001:db8::1", 5004, 0, 3))
    assert v6 is not None and len(v6) == 28 and v6[2:4] == b"\x13\x8c"
    assert v6[8:24] == socket.inet_pton(socket.AF_INET6, "2001:db8::1") and v6[24:] == (3).to_bytes(4, "little")
    assert udp_batch.sockaddr(socket.AF_INET, ("2001:db8::1", 5004)) is None
    assert udp_batch.sockaddr(socket.AF_INET6, ("192.0.2.7", 5004)) is None
    assert udp_batch.sockaddr(socket.AF_INET, ("not an address", 5004)) is None


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
async def test_ipv6_socket() -> None:
    shared, _, batch = await bound_mux("::1")
    receiver = Receiver(socket.AF_INET6, "::1")
    try:
        assert batch.destination(("127.0.0.1", 9)) is None
        to = batch.destination(receiver.addr)
        assert to is not None and batch.destination(receiver.addr[:2]) is not None
        udp_batch.hold()
        add(batch, b"six", to)
        add(batch, b"six again", to)
        udp_batch.release()
        assert batch.calls == 1 and receiver.received() == [b"six", b"six again"]
    finally:
        receiver.sock.close()
        shared.close()


async def test_a_closed_mux_sends_nothing(receivers: list[Receiver]) -> None:
    shared, _, batch = await bound_mux()
    to = batch.destination(receivers[0].addr)
    udp_batch.hold()
    add(batch, b"late", to)
    shared.close()
    udp_batch.release()
    add(batch, b"later", to)
    assert batch.calls == 0 and receivers[0].received() == []


# ---------------------------------------------------------------------- through the SFU's send path


class Leg:
    """A subscriber leg on the muxed port: an aioice protocol on a muxed transport, SRTP, a peer socket."""

    def __init__(self, mux: UdpMux, name: str, kind: str) -> None:
        self.peer = Receiver()
        self.protocol = aioice.ice.StunProtocol(SimpleNamespace(protocol_lost=lambda _p: None))  # type: ignore[arg-type]
        self.protocol.connection_made(mux.attach(self.protocol, name, owner=self, remote_ufrag=lambda: None))
        tx, self.rx = srtp_pair()
        pair = SimpleNamespace(protocol=self.protocol, remote_addr=self.peer.addr)
        nominated = {1: pair}
        self.dtls = SimpleNamespace(
            _tx_srtp=tx, _state=glue.DtlsState.CONNECTED, transport=SimpleNamespace(_connection=SimpleNamespace(_nominated=nominated))
        )  # fmt: skip
        self.sender = glue.SrtpSender(self.dtls)  # type: ignore[arg-type]
        self.slot = Slot("12", kind, handle=None)  # as cc.make_sub's
        self.slot.configure(0x5105, 100 if kind == "video" else 109, cc.OUT_IDS, 90000 if kind == "video" else 48000)

    def received(self) -> list[bytes]:
        return [self.rx.unprotect(d) for d in self.peer.received()]


async def test_one_incoming_packet_one_sendmmsg_for_every_leg(muxed: Any) -> None:
    clock = cc.Clock()  # only counts: the producer reads the real clock
    mux, batch, _ = muxed
    pub = cc.make_pub("audio", 0xA0)
    legs = [Leg(mux, f"leg{i}", "audio") for i in range(4)]
    plain = cc.make_sub("audio")
    plain.slot.last_seq, plain.slot.last_ts = legs[0].slot.last_seq, legs[0].slot.last_ts
    plain.consume(pub)
    for i, leg in enumerate(legs):
        Consumer(f"c{i}", pub.producer, leg.slot, leg.sender)
    try:
        cc.send_audio(pub, clock, 5)
        assert batch.calls == 5 and batch.sent == 20
        got = [leg.received() for leg in legs]
        assert got[0] == plain.sent  # what the plain path builds, protected, sent and decrypted
        assert all(len(packets) == 5 for packets in got)
    finally:
        for leg in legs:
            leg.peer.sock.close()


async def test_retransmissions_leave_together_and_at_once(muxed: Any) -> None:
    clock = cc.Clock()  # only counts: the producer reads the real clock
    mux, batch, _ = muxed
    pub = cc.make_pub("video", 0xB0)
    leg = Leg(mux, "leg", "video")
    consumer = Consumer("c", pub.producer, leg.slot, leg.sender)
    transceiver = SimpleNamespace(sender=SimpleNamespace(_ssrc=0x5105, _handle_rtcp_packet=None))
    glue.hook_sender_rtcp(transceiver, consumer.on_rtcp)  # type: ignore[arg-type]
    try:
        cc.send_video(pub, clock, 4, picture_id=1, tl0=1, key_first=True)
        sent = leg.received()
        assert len(sent) == 4 and batch.calls == 4
        first = int.from_bytes(sent[1][2:4], "big")
        nack = RtcpRtpfbPacket(fmt=1, ssrc=1, media_ssrc=0x5105, lost=[first, first + 1])
        await transceiver.sender._handle_rtcp_packet(nack)
        assert batch.calls == 5 and batch.count == 0 and consumer.retransmits == 2
        again = leg.peer.received()  # unprotected with repeated sequence numbers: compare the encrypted bytes' sizes
        assert len(again) == 2 and [len(d) for d in again] == [len(d) + 16 for d in sent[1:3]]
        consumer.retransmit([first])  # outside any hold (a caller that forgot): sent at once
        assert batch.calls == 6 and len(leg.peer.received()) == 1
    finally:
        leg.peer.sock.close()


async def test_without_sendmmsg_the_legs_send_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = cc.Clock()  # only counts: the producer reads the real clock
    monkeypatch.setattr(udp_batch, "ENABLED", False)
    assert not udp_batch.available()
    shared = SharedUdpPort(0)
    await shared.open(["127.0.0.1"])
    mux = shared.muxes["127.0.0.1"]
    leg = Leg(mux, "leg", "audio")
    try:
        assert mux.batch is None
        pub = cc.make_pub("audio", 0xC0)
        Consumer("c", pub.producer, leg.slot, leg.sender)
        cc.send_audio(pub, clock, 3)
        await settle()
        assert len(leg.received()) == 3
    finally:
        leg.peer.sock.close()
        shared.close()

"""sfu/udp_mux.py on its own: which connection of the shared socket each datagram reaches."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aioice import stun

from sfu.udp_mux import RoutingCounts, SharedUdpPort, UdpMux, stun_class, stun_username

EMPTY = RoutingCounts(connections=0, ufrags=0, addresses=0, transactions=0)


class Recorder(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self.lost = False

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append((data, addr))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


def message(kind: stun.Class, username: str | None = None, transaction: bytes | None = None) -> bytes:
    msg = stun.Message(message_method=stun.Method.BINDING, message_class=kind, transaction_id=transaction)
    if username is not None:
        msg.attributes["USERNAME"] = username
    return bytes(msg)


@pytest.fixture
async def shared() -> AsyncIterator[SharedUdpPort]:
    port = SharedUdpPort(0)  # any free port: the unit does not care which
    await port.open(["127.0.0.1"])
    yield port
    port.close()


@pytest.fixture
def peer() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.005)


def test_stun_is_told_from_dtls_and_rtp() -> None:
    request = message(stun.Class.REQUEST, "ab12:cd34")
    assert stun_class(request) == 0 and stun_username(request) == "ab12:cd34"
    assert stun_class(message(stun.Class.RESPONSE)) == 2
    assert stun_class(message(stun.Class.ERROR)) == 3
    assert stun_class(message(stun.Class.INDICATION)) == 1
    assert stun_username(message(stun.Class.REQUEST)) is None
    assert stun_class(b"\x16\xfe\xfd" + bytes(40)) is None  # DTLS
    assert stun_class(b"\x80\x60" + bytes(40)) is None  # RTP
    assert stun_class(b"\x00\x01\x00\x00" + bytes(16)) is None  # no magic cookie
    request_cut_short = message(stun.Class.REQUEST, "ab12:cd34")[:-6]
    assert stun_class(request_cut_short) is None
    assert stun_username(request_cut_short) is None


async def test_requests_by_ufrag_answers_by_transaction_then_media_by_address(
    shared: SharedUdpPort, peer: socket.socket
) -> None:
    mux = shared.muxes["127.0.0.1"]
    loop = asyncio.get_running_loop()
    one, two = Recorder(), Recorder()
    t1 = mux.attach(one, "aaaa", owner=one, remote_ufrag=lambda: "rem1")
    t2 = mux.attach(two, "bbbb", owner=two, remote_ufrag=lambda: None)  # remote ufrag not known yet
    server = mux.sockname[:2]
    here = peer.getsockname()

    await loop.sock_sendto(peer, message(stun.Class.REQUEST, "bbbb:rem2"), server)
    await loop.sock_sendto(peer, message(stun.Class.REQUEST, "aaaa:other"), server)  # wrong remote ufrag
    await loop.sock_sendto(peer, b"\x17\xfe\xfd media", server)  # address not learnt yet
    await settle()
    assert [d[:1] for d, _ in two.received] == [b"\x00"] and not one.received
    assert mux.dropped == 2

    t2.sendto(message(stun.Class.RESPONSE), here)  # a success answer binds the address
    await loop.sock_sendto(peer, b"\x17\xfe\xfd media", server)
    await settle()
    assert two.received[-1] == (b"\x17\xfe\xfd media", here)

    t1.sendto(message(stun.Class.REQUEST, "rem1:aaaa", transaction=b"T" * 12), here)  # one's own check
    await loop.sock_sendto(peer, message(stun.Class.RESPONSE, transaction=b"T" * 12), server)
    await settle()
    assert one.received and stun_class(one.received[-1][0]) == 2
    assert mux.by_address[here] is t1  # the answered check moved the address to one
    assert here not in t2.addresses

    t1.close()
    await settle()
    assert one.lost and not two.lost
    t2.close()
    await settle()
    assert mux.counts() == EMPTY


async def test_unanswered_transactions_are_bounded(shared: SharedUdpPort) -> None:
    mux: UdpMux = shared.muxes["127.0.0.1"]
    transport = mux.attach(Recorder(), "aaaa", owner=None, remote_ufrag=lambda: None)
    for i in range(500):
        transport.sendto(message(stun.Class.REQUEST, "x:aaaa", transaction=i.to_bytes(12, "big")), ("127.0.0.1", 9))
    assert mux.counts().transactions == 64
    transport.close()
    assert mux.counts() == EMPTY


def test_a_ufrag_another_connection_has_is_replaced() -> None:
    port = SharedUdpPort(0)
    mux = UdpMux()
    port.muxes["127.0.0.1"] = mux
    first, second = object(), object()
    mux.owners["abcd"] = first
    assert port.unique_ufrag("abcd", first) == "abcd"  # its own
    fresh = port.unique_ufrag("abcd", second)
    assert fresh != "abcd" and len(fresh) == 8
    assert port.unique_ufrag("wxyz", second) == "wxyz"

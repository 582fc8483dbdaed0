"""The shared socket is read as fast as the kernel queues datagrams, not one (or 32) per turn of the loop.

With one socket per connection the event loop reads every ready socket at each turn, so a
joining connection's ICE checks and DTLS handshake, or a consent answer, never wait behind
other connections' media. On the shared port they all queue in one kernel buffer: read at
the loop's pace (asyncio reads one datagram per turn, uvloop 32), a busy server fell seconds
behind during a join storm (megabytes queued, thousands dropped), members were cut for
silence before their handshake went through, and consent checks (0.5 s) timed out.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from aioice import stun

from sfu.udp_mux import UdpMux

MEDIA = 150  # datagrams queued ahead of the request (a few hundred KB at most: any rmem_max holds them)


class Recorder(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.received.append(data)


def loops() -> list[Callable[[], asyncio.AbstractEventLoop]]:
    factories: list[Callable[[], asyncio.AbstractEventLoop]] = [asyncio.new_event_loop]
    try:
        import uvloop

        factories.append(uvloop.new_event_loop)
    except ImportError:
        pass
    return factories


def run(factory: Callable[[], asyncio.AbstractEventLoop], coro: Coroutine[Any, Any, None]) -> None:
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(coro)


def binding(cls: stun.Class, username: str | None = None, transaction_id: bytes | None = None) -> bytes:
    message = stun.Message(message_method=stun.Method.BINDING, message_class=cls, transaction_id=transaction_id)
    if username is not None:
        message.attributes["USERNAME"] = username
    return bytes(message)


async def a_request_behind_a_media_burst() -> None:
    mux = UdpMux()
    await mux.bind("127.0.0.1", 0)
    port = mux.sockname[1]
    busy, joining = Recorder(), Recorder()
    busy_transport = mux.attach(busy, "busy", owner=busy, remote_ufrag=lambda: "peer")
    mux.attach(joining, "join", owner=joining, remote_ufrag=lambda: None)
    publisher = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    newcomer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        publisher.bind(("127.0.0.1", 0))
        newcomer.bind(("127.0.0.1", 0))
        # The publisher's address is bound to its connection (it answered the publisher's check).
        busy_transport.sendto(binding(stun.Class.RESPONSE), publisher.getsockname())
        await asyncio.sleep(0.05)
        # A burst of the publisher's media, then a joining member's first ICE check, all queued at once.
        for sequence in range(MEDIA):
            publisher.sendto(b"\x90\x60" + sequence.to_bytes(2, "big") + bytes(60), ("127.0.0.1", port))
        newcomer.sendto(binding(stun.Class.REQUEST, "join:peer"), ("127.0.0.1", port))
        turns = 0
        while not joining.received and turns < 2 * MEDIA:
            await asyncio.sleep(0)
            turns += 1
        assert joining.received, "the request never arrived"
        assert turns <= 3, f"the joining member's check waited {turns} turns of the loop behind the media"
        while len(busy.received) < MEDIA and turns < 2 * MEDIA:
            await asyncio.sleep(0)
            turns += 1
        assert [int.from_bytes(d[2:4], "big") for d in busy.received] == list(range(MEDIA))  # all, in order
        assert mux.dropped == 0
    finally:
        publisher.close()
        newcomer.close()
        mux.close()
    await asyncio.sleep(0)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind(("127.0.0.1", port))  # the port is free again: nothing kept the socket open
    finally:
        probe.close()


@pytest.mark.parametrize("factory", loops(), ids=lambda f: f.__module__.split(".")[0])
def test_a_joining_members_check_does_not_wait_behind_queued_media(factory: Callable[[], Any]) -> None:
    run(factory, a_request_behind_a_media_burst())

"""Media sockets bound in a configured UDP port range, so a town hall's firewall opens only that."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config import Settings
from tests.peers import Peer
from tests.test_media_relay import wait_for

pytestmark = pytest.mark.asyncio
LOW, HIGH = 41000, 41015


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(port=0, data_dir=tmp_path, demo=False, ice={"udp_port_min": LOW, "udp_port_max": HIGH})


def candidate_ports(sdp: str) -> list[int]:
    return [int(m.group(1)) for m in re.finditer(r"^a=candidate:\S+ \d+ udp \d+ \S+ (\d+) typ host", sdp, re.MULTILINE)]


async def test_the_sfu_binds_its_media_sockets_in_the_range_and_media_flows(server) -> None:  # type: ignore[no-untyped-def]
    a = Peer(server.base_url, server.token("A"), "red", 440)
    b = Peer(server.base_url, server.token("B"), "green", 660)
    try:
        for peer in (a, b):
            await peer.join()
            await peer.publish()
        await wait_for(lambda: len(b.received.get(a.me or "", _none()).counters) > 10)
        answers = [m["sdp"] for p in (a, b) for m in p.messages if m["type"] in ("publish_answer", "subscribe_offer")]
        ports = [port for sdp in answers for port in candidate_ports(sdp)]
        assert ports and all(LOW <= port <= HIGH for port in ports), ports
        assert len(set(ports)) == 4  # one per peer connection: two members, two each
    finally:
        for peer in (a, b):
            await peer.close()


async def test_after_the_server_stops_any_port_may_be_used_again(server) -> None:  # type: ignore[no-untyped-def]
    import aioice.ice

    assert aioice.ice.asyncio is not __import__("asyncio")  # restricted while the server runs
    await server.app.shutdown()
    await server.app.cleanup()
    assert aioice.ice.asyncio is __import__("asyncio")


def _none():  # type: ignore[no-untyped-def]
    class Nothing:
        counters: list[int] = []

    return Nothing

"""One UDP port for every peer connection (``ice.udp_port``): members in another process."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import psutil
import pytest
from aioice import stun
from pydantic import ValidationError

from config import Settings
from sfu import aiortc_glue
from sfu.udp_mux import RoutingCounts, SharedUdpPort
from tests.remote_peers import RemoteMembers
from tests.test_media_relay import wait_for

PORT = 20500  # below the kernel's ephemeral range: no member's socket takes it by chance
NO_ROUTES = RoutingCounts(connections=0, ufrags=0, addresses=0, transactions=0)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(port=0, data_dir=tmp_path, demo=False, programme={"enabled": False}, ice={"udp_port": PORT})


def server_candidates(sdp: str) -> list[tuple[str, int]]:
    return [(m[1], int(m[2])) for m in re.finditer(r"^a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ", sdp, re.MULTILINE)]


def shared() -> SharedUdpPort:
    port = aiortc_glue.shared_udp_port()
    assert port is not None
    return port


def binding_request(username: str | None) -> bytes:
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    if username is not None:
        request.attributes["USERNAME"] = username
    return bytes(request)


async def test_members_share_one_port_media_flows_both_ways_and_leaving_empties_the_routes(server) -> None:  # type: ignore[no-untyped-def]
    members = RemoteMembers(server.base_url, [server.token(name) for name in ("Alice", "Bruno", "Chloé")])
    await members.start()
    try:
        report = await members.wait(frames=20, seconds=40)
        assert report["ok"], report["received"]  # each member decodes each other's camera and microphone
        sdps = report["server_sdps"]
        assert len(sdps) >= 6  # three publish answers, at least three subscribe offers
        candidates = [c for sdp in sdps for c in server_candidates(sdp)]
        assert candidates and {port for _, port in candidates} == {PORT}, candidates
        assert {int(p) for sdp in sdps for p in re.findall(r"^m=\w+ (\d+) ", sdp, re.MULTILINE)} == {PORT}
        assert {address.rsplit(":", 1)[1] for address in report["nominated"]} == {str(PORT)}

        udp_ports = {c.laddr.port for c in psutil.Process().net_connections(kind="udp")}
        assert udp_ports == {PORT}  # the server's process has no other UDP socket
        counts = shared().counts()
        assert counts.connections == counts.ufrags == 6  # two peer connections per member
        assert counts.addresses >= 6  # each connection learnt its member's address

        await _strangers_are_dropped_without_harm(server)

        report = await members.wait(frames=20, seconds=30)
        assert report["ok"], report["received"]  # still flowing after the strangers
    finally:
        await members.leave()
    await wait_for(lambda: shared().counts() == NO_ROUTES, timeout=15)
    await wait_for(lambda: server.router.counts() == {"transports": 0, "producers": 0, "consumers": 0}, timeout=10)


async def test_connections_drawing_the_same_ufrag_get_fresh_ones(server, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import aioice.ice

    draw = aioice.ice.random_string
    monkeypatch.setattr(aioice.ice, "random_string", lambda n: "same" if n == 4 else draw(n))  # every ufrag clashes
    members = RemoteMembers(server.base_url, [server.token("Alice"), server.token("Bruno")])
    await members.start()
    try:
        report = await members.wait(frames=15, seconds=30)
    finally:
        await members.leave()
    assert report["ok"], report["received"]
    ufrags = {u for sdp in report["server_sdps"] for u in re.findall(r"^a=ice-ufrag:(\S+)", sdp, re.MULTILINE)}
    assert len(ufrags) == 4 and "same" in ufrags  # the first connection kept it, three were renamed
    await wait_for(lambda: shared().counts() == NO_ROUTES, timeout=15)


async def _strangers_are_dropped_without_harm(server) -> None:  # type: ignore[no-untyped-def]
    mux = shared().muxes["127.0.0.1"]
    ufrag, transports = next(iter(mux.by_ufrag.items()))
    real_username = f"{ufrag}:{transports[0].remote_ufrag()}"
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    stranger.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        dropped = shared().dropped
        for datagram in (
            b"\x00garbage",  # not even STUN
            b"\x16\xfe\xfd" + bytes(60),  # a DTLS record from an address no connection learnt
            binding_request("zzzzzzzz:yyyy"),  # a ufrag nobody has
            binding_request(None),  # a request naming nobody
        ):
            await loop.sock_sendto(stranger, datagram, ("127.0.0.1", PORT))
        await wait_for(lambda: shared().dropped == dropped + 4, timeout=5)

        # A request naming a real connection reaches it, without MESSAGE-INTEGRITY: refused, and
        # the stranger's address is not learnt: what it sends next is dropped.
        await loop.sock_sendto(stranger, binding_request(real_username), ("127.0.0.1", PORT))
        answer = stun.parse_message(await asyncio.wait_for(loop.sock_recv(stranger, 1500), 5))
        assert answer.message_class == stun.Class.ERROR
        assert stranger.getsockname() not in mux.by_address
        await loop.sock_sendto(stranger, b"\x17\xfe\xfd" + bytes(60), ("127.0.0.1", PORT))
        await wait_for(lambda: shared().dropped == dropped + 5, timeout=5)
    finally:
        stranger.close()


async def test_the_port_is_closed_when_the_server_stops(server) -> None:  # type: ignore[no-untyped-def]
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(OSError):
            probe.bind(("127.0.0.1", PORT))  # bound at start-up, before anyone joins
        await server.app.shutdown()
        await server.app.cleanup()
        assert aiortc_glue.shared_udp_port() is None
        await asyncio.sleep(0)  # asyncio closes a socket at the next turn of the loop
        probe.bind(("127.0.0.1", PORT))
    finally:
        probe.close()


def test_one_shared_port_excludes_a_port_range() -> None:
    with pytest.raises(ValidationError, match="excludes"):
        Settings(ice={"udp_port": PORT, "udp_port_min": 41000, "udp_port_max": 41015})
    with pytest.raises(ValidationError, match="excludes"):
        Settings(ice={"udp_port": PORT, "udp_port_min": 41000})
    with pytest.raises(ValidationError, match="1024-65535"):
        Settings(ice={"udp_port": 80})
    assert Settings(ice={"udp_port": PORT}).ice.udp_port == PORT

"""``ice.announced_address`` behind a 1:1 NAT, simulated by nftables in the test's network namespace.

The server binds its media sockets on 127.0.0.1 (its "private" address) and announces
10.99.0.1 (its "public" one). The simulated network: nothing reaches the server's
media ports directly (a filter drops what no NAT rule translated, as the private
address is unreachable from outside); the NAT rules map 10.99.0.1 to 127.0.0.1 port for
port, both ways (DNAT in, SNAT out; conntrack translates the replies). The members run
in another process (tests/remote_peers.py) on ephemeral ports outside the server's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from config import Settings
from sfu import aiortc_glue, sdp_munging
from sfu.viewer import ViewerTransport
from tests.remote_peers import RemoteMembers

PUBLIC = "10.99.0.1"
PRIVATE = "127.0.0.1"
TABLE = "hemicycle_nat_test"
MODES = {  # how the server binds its media ports: the rules name the same ports
    "port range": ({"udp_port_min": 20100, "udp_port_max": 20115}, "20100-20115"),
    "shared port": ({"udp_port": 20200}, "20200"),
}


class SimulatedNat:
    """An nftables table of the test's namespace, deleted afterwards."""

    def __init__(self, nft: str, ports: str) -> None:
        self.nft = nft
        self.ports = ports

    def run(self, *args: str) -> None:
        subprocess.run([self.nft, *args], check=True, capture_output=True, text=True)

    def private_ports_unreachable(self) -> None:
        self.run("add", "chain", "ip", TABLE, "input", "{ type filter hook input priority 0 ; }")
        self.run("add", "rule", "ip", TABLE, "input", f"udp dport {self.ports} ct status & (snat | dnat) == 0 drop")

    def map_public_address(self) -> None:
        self.run("add", "chain", "ip", TABLE, "inbound", "{ type nat hook output priority -100 ; }")
        self.run("add", "rule", "ip", TABLE, "inbound", f"ip daddr {PUBLIC} udp dport {self.ports} dnat to {PRIVATE}")
        self.run("add", "chain", "ip", TABLE, "outbound", "{ type nat hook postrouting priority 100 ; }")
        self.run("add", "rule", "ip", TABLE, "outbound", f"ip saddr {PRIVATE} udp sport {self.ports} snat to {PUBLIC}")


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(tmp_path: Path, mode: str) -> Settings:
    ports, _ = MODES[mode]
    ice = {"host_addresses": [PRIVATE], "announced_address": PUBLIC, **ports}
    return Settings(port=0, data_dir=tmp_path, demo=False, programme={"enabled": False}, ice=ice)


@pytest.fixture
def nat(mode: str) -> Iterator[SimulatedNat]:
    nft = shutil.which("nft", path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin")
    if nft is None:
        pytest.skip("nft (nftables) is not installed: no NAT to test through")
    rules = SimulatedNat(nft, MODES[mode][1])
    try:
        rules.run("add", "table", "ip", TABLE)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"nftables not permitted here (run as root in a private network namespace): {exc.stderr}")
    try:
        rules.private_ports_unreachable()
        yield rules
    finally:
        rules.run("delete", "table", "ip", TABLE)


def server_addresses(sdp: str) -> set[str]:
    candidates = re.findall(r"^a=candidate:\S+ \d+ udp \d+ (\S+) \d+ typ", sdp, re.MULTILINE)
    connections = re.findall(r"^c=IN IP[46] (\S+)", sdp, re.MULTILINE)
    return set(candidates) | set(connections)


async def test_members_reach_the_server_at_its_announced_address(server, nat: SimulatedNat) -> None:  # type: ignore[no-untyped-def]
    nat.map_public_address()
    members = RemoteMembers(server.base_url, [server.token("Alice"), server.token("Bruno")])
    await members.start()
    try:
        report = await members.wait(frames=15, seconds=30)
    finally:
        await members.leave()
    assert report["ok"], report["received"]
    sdps = report["server_sdps"]
    assert len(sdps) >= 4 and all(server_addresses(sdp) == {PUBLIC} for sdp in sdps), sdps
    assert report["nominated"] and all(address.startswith(PUBLIC + ":") for address in report["nominated"])


async def test_without_the_nat_the_announced_address_leads_nowhere(server, nat: SimulatedNat) -> None:  # type: ignore[no-untyped-def]
    members = RemoteMembers(server.base_url, [server.token("Alice"), server.token("Bruno")])
    await members.start()
    try:
        report = await members.wait(frames=1, seconds=8)
    finally:
        await members.leave()
    assert not report["ok"]
    assert all(not counts for counts in report["received"].values()), report["received"]
    assert "connected" not in report["states"] and not report["nominated"]
    assert report["server_sdps"] and all(server_addresses(sdp) == {PUBLIC} for sdp in report["server_sdps"])


async def test_a_whep_viewer_is_answered_with_the_announced_address() -> None:
    aiortc_glue.install()
    aiortc_glue.restrict_host_addresses([PRIVATE])
    sdp_munging.set_announced_address(PUBLIC)
    player = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    viewer = ViewerTransport("viewer", [])
    try:
        player.addTransceiver("audio", direction="recvonly")
        player.addTransceiver("video", direction="recvonly")
        await player.setLocalDescription(await player.createOffer())
        answer = await viewer.answer(player.localDescription.sdp)
        assert server_addresses(answer) == {PUBLIC}, answer
    finally:
        sdp_munging.set_announced_address(None)
        await viewer.close()
        await player.close()

"""Where ICE gathers and binds: the host addresses of the candidates, and their sockets, in a
port range or all on one shared UDP port (sfu/udp_ports.py, sfu/udp_mux.py), by giving aioice
its own view of ``asyncio``."""

from __future__ import annotations

import asyncio
from typing import Any

import aioice.ice

from ..udp_mux import SharedUdpPort
from ..udp_ports import HostEndpoint, LoopWithHostEndpoints, PortRange


def restrict_host_addresses(addresses: list[str]) -> None:
    """Gather ICE host candidates only on ``addresses`` (loopback included, unlike aioice)."""
    fixed = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in fixed if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


def _shim_aioice_loop(host_endpoint: HostEndpoint) -> None:
    class _AsyncioForAioice:
        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

        @staticmethod
        def get_running_loop() -> Any:
            return LoopWithHostEndpoints(asyncio.get_running_loop(), host_endpoint)

    setattr(aioice.ice, "asyncio", _AsyncioForAioice())  # noqa: B010  (only aioice sees the shim)


def restrict_udp_ports(low: int, high: int) -> None:
    """Bind every ICE host candidate in ``low``-``high`` (a firewall opens just that range)."""
    ports = PortRange(low, high)
    allow_any_udp_port()
    _shim_aioice_loop(ports.bind)


_shared_port: SharedUdpPort | None = None


async def share_udp_port(port: int, addresses: list[str]) -> SharedUdpPort:
    """Give every ICE host candidate the one UDP ``port`` (a firewall opens just that port).

    The port is bound now on each of ``addresses``: an OSError at start-up if it is taken.
    """
    global _shared_port
    if not 1024 <= port <= 65535:
        raise ValueError("the shared UDP port must be within 1024-65535")
    allow_any_udp_port()
    shared = SharedUdpPort(port)
    try:
        await shared.open(addresses)
    except OSError:
        shared.close()
        raise
    _shared_port = shared

    async def muxed_endpoint(loop: asyncio.AbstractEventLoop, factory: Any, address: str) -> Any:
        mux = await shared.mux_for(address)
        protocol = factory()  # an aioice StunProtocol, for the ICE connection protocol.receiver
        connection = protocol.receiver
        # The ufrag routes STUN requests: if another connection on the port has it, this one gets
        # a fresh one now, before the SDP carries it (aiortc writes it once candidates are gathered).
        ufrag = shared.unique_ufrag(connection.local_username, owner=connection)
        if ufrag != connection.local_username:
            connection._local_username = ufrag
        transport = mux.attach(protocol, ufrag, owner=connection, remote_ufrag=lambda: connection.remote_username)
        protocol.connection_made(transport)
        return transport, protocol

    _shim_aioice_loop(muxed_endpoint)
    return shared


def shared_udp_port() -> SharedUdpPort | None:
    """The shared port in use (its routing tables, its dropped datagrams), if any."""
    return _shared_port


def allow_any_udp_port() -> None:
    """Undo :func:`restrict_udp_ports` or :func:`share_udp_port` (closing the shared sockets)."""
    global _shared_port
    setattr(aioice.ice, "asyncio", asyncio)  # noqa: B010
    if _shared_port is not None:
        _shared_port.close()
        _shared_port = None


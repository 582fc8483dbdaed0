"""Where the SFU's media sockets are bound: the event loop aioice is given, and the port range.

sfu/aiortc_glue/ice_sockets.py hands aioice a :class:`LoopWithHostEndpoints`, whose host-candidate
sockets come from a :class:`PortRange` (``ice.udp_port_min/max``) or from the shared
port of sfu/udp_mux.py (``ice.udp_port``). This module itself knows nothing of aioice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


class PortRange:
    """Ports ``low``-``high``, handed out in turn so that a port just closed rests a while."""

    def __init__(self, low: int, high: int) -> None:
        if not 1024 <= low <= high <= 65535:
            raise ValueError("UDP port range must be within 1024-65535, low <= high")
        self.low, self.high = low, high
        self._next = low

    def candidates(self) -> list[int]:
        """Every port of the range once, starting after the last one handed out."""
        size = self.high - self.low + 1
        start = self._next
        self._next = self.low + (start - self.low + 1) % size
        return [self.low + (start - self.low + i) % size for i in range(size)]

    async def bind(
        self, loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.DatagramProtocol], address: str
    ) -> tuple[asyncio.DatagramTransport, Any]:
        """A UDP endpoint on ``address`` and the first free port of the range."""
        for port in self.candidates():
            try:
                return await loop.create_datagram_endpoint(factory, local_addr=(address, port))
            except OSError:
                continue  # in use: the next one
        raise OSError(f"no free UDP port in {self.low}-{self.high}")


HostEndpoint = Callable[[asyncio.AbstractEventLoop, Any, str], Awaitable[tuple[asyncio.DatagramTransport, Any]]]


class LoopWithHostEndpoints:
    """The running loop, except that UDP sockets asked for on port 0 come from ``host_endpoint``.

    aioice asks so for the sockets of its host candidates; every other call passes through.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, host_endpoint: HostEndpoint) -> None:
        self._loop = loop
        self._host_endpoint = host_endpoint

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    async def create_datagram_endpoint(self, factory: Any, local_addr: Any = None, **kwargs: Any) -> Any:
        if local_addr is None or local_addr[1] != 0:
            return await self._loop.create_datagram_endpoint(factory, local_addr=local_addr, **kwargs)
        return await self._host_endpoint(self._loop, factory, local_addr[0])

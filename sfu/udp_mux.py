"""One UDP port for the media of every peer connection (ICE-mux, like mediasoup's WebRtcServer).

:class:`SharedUdpPort` binds one socket per host address, all on the same port. Each
ICE connection's host-candidate endpoint is a :class:`MuxedTransport`: a virtual
``asyncio.DatagramTransport`` that sends through the shared socket and receives what
the :class:`UdpMux` of that socket routes to it. A datagram from ``addr`` goes
(RFC 7983 tells STUN from DTLS and SRTP by the first byte):

* a STUN request: to the connection named by its USERNAME, ``<local ufrag>:<remote
  ufrag>``;
* a STUN response: to the connection whose request had that transaction id;
* anything else (DTLS, SRTP, STUN indications): to the connection that ``addr`` is
  bound to. An address is bound to a connection when the connection answers a request
  from it with a success (the ICE library only does once MESSAGE-INTEGRITY checked
  out) or receives a success response from it to one of its own requests (whose
  96-bit transaction id nobody else saw);
* nowhere else: it is dropped and counted.

The socket is drained at each turn of the event loop (up to :data:`DRAIN_PER_TURN`
datagrams), not read at the loop's pace (asyncio reads one datagram per turn, uvloop 32).
With a socket per connection every ready socket is read at each turn, so a joining
connection's checks and handshake, or a consent answer, never wait behind the others'
media; routing only queues a datagram for its connection, so draining is cheap. Read at
the loop's pace, the shared queue held megabytes during a join storm: joining members were
cut for silence before their handshake went through, consent checks (0.5 s) timed out.

Closing a muxed transport removes everything routed to it. Nothing here knows aioice:
sfu/aiortc_glue/ attaches its protocols, and sends SRTP through the socket's
:class:`~sfu.udp_batch.UdpBatch` (one ``sendmmsg`` for the legs one packet goes to) when
there is one.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import socket
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from . import udp_batch
from .udp_batch import UdpBatch

log = logging.getLogger(__name__)

Address = tuple[str, int]

STUN_MAGIC_COOKIE = b"\x21\x12\xa4\x42"
STUN_HEADER = 20
STUN_USERNAME = 0x0006
REQUEST, INDICATION, SUCCESS, ERROR = 0, 1, 2, 3
SOCKET_BUFFER = 4 * 1024 * 1024  # all the media of the server go through it (capped by net.core.*mem_max)
TRANSACTIONS_PER_CONNECTION = 64  # requests in flight remembered per connection (checks, consent)
UFRAG_CHARACTERS = string.ascii_letters + string.digits
UFRAG_LENGTH = 8  # a fresh ufrag replacing a clashing one (aioice draws 4 characters)
DRAIN_PER_TURN = 1024  # datagrams read per turn of the event loop besides the one it hands over
RECEIVE_SIZE = 65536  # the largest datagram read whole (the loops read as much)
_MSG_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)


def stun_class(data: bytes) -> int | None:
    """REQUEST, INDICATION, SUCCESS or ERROR for a STUN message; None for anything else."""
    if len(data) < STUN_HEADER or data[0] & 0xC0 or data[4:8] != STUN_MAGIC_COOKIE:
        return None
    if STUN_HEADER + int.from_bytes(data[2:4], "big") != len(data):
        return None  # truncated or padded: not a STUN message
    message_type = int.from_bytes(data[0:2], "big")
    return ((message_type >> 7) & 0x2) | ((message_type >> 4) & 0x1)


def stun_username(data: bytes) -> str | None:
    """The USERNAME attribute of a STUN message (not checked: the ICE library does)."""
    end = min(len(data), STUN_HEADER + int.from_bytes(data[2:4], "big"))
    position = STUN_HEADER
    while position + 4 <= end:
        kind = int.from_bytes(data[position : position + 2], "big")
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        value = data[position + 4 : position + 4 + length]
        if kind == STUN_USERNAME:
            return value.decode("utf-8", "replace") if len(value) == length else None
        position += 4 + (length + 3) // 4 * 4
    return None


def stun_transaction_id(data: bytes) -> bytes:
    return bytes(data[8:STUN_HEADER])


@dataclass(frozen=True)
class RoutingCounts:
    """How much a mux routes by each key; all zero once every connection closed."""

    connections: int
    ufrags: int
    addresses: int
    transactions: int


class MuxedTransport(asyncio.DatagramTransport):
    """One connection's endpoint on a shared socket: what the ICE library sees as its socket."""

    def __init__(
        self, mux: UdpMux, protocol: asyncio.DatagramProtocol, ufrag: str, remote_ufrag: Callable[[], str | None]
    ) -> None:
        super().__init__(extra={"sockname": mux.sockname})
        self.mux = mux
        self.protocol = protocol
        self.ufrag = ufrag
        self.remote_ufrag = remote_ufrag
        self.addresses: set[Address] = set()
        self.transactions: dict[bytes, None] = {}  # in order of sending: the oldest is forgotten first
        self._closing = False

    def sendto(self, data: Any, addr: Any = None) -> None:
        if not self._closing and addr is not None:
            self.mux.send(self, bytes(data), (addr[0], addr[1]))

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self.mux.detach(self)
        asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self._closing

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.DatagramProtocol)
        self.protocol = protocol

    def get_write_buffer_size(self) -> int:
        return 0


class UdpMux(asyncio.DatagramProtocol):
    """The demultiplexer of one shared socket (one host address, the shared port)."""

    def __init__(self) -> None:
        self.by_ufrag: dict[str, list[MuxedTransport]] = {}
        self.by_address: dict[Address, MuxedTransport] = {}
        self.by_transaction: dict[bytes, MuxedTransport] = {}
        self.owners: dict[str, object] = {}  # ufrag -> the ICE connection that has it
        self.dropped = 0
        self.sockname: tuple[Any, ...] = ("", 0)
        self.batch: UdpBatch | None = None  # sendmmsg on the socket, where available
        self._socket: asyncio.DatagramTransport | None = None
        self._reader: socket.socket | None = None  # the same socket, for draining it (a duplicate descriptor)
        self._buffer = memoryview(bytearray(RECEIVE_SIZE))
        self._drained = False  # drained during this turn of the loop

    async def bind(self, address: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(address, port))
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            if udp_batch.available():
                sending = cast(udp_batch.SocketTransport, transport)  # both loops' have get_write_buffer_size
                self.batch = UdpBatch(sending, sock.family, self.error_received)
            reader = socket.socket(sock.family, socket.SOCK_DGRAM, 0, os.dup(sock.fileno()))
            if not _MSG_DONTWAIT:
                reader.setblocking(False)  # the loop's socket already is: same open file
            self._reader = reader
        self.sockname = transport.get_extra_info("sockname")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._socket = cast(asyncio.DatagramTransport, transport)  # asyncio's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self._socket = None
        self._close_reader()
        if self.batch is not None:
            self.batch.close()
        for transport in [t for ts in self.by_ufrag.values() for t in ts]:
            transport.close()

    def error_received(self, exc: Exception) -> None:
        log.debug("shared UDP socket %s: %s", self.sockname, exc)

    def close(self) -> None:
        if self.batch is not None:
            self.batch.close()  # before the descriptor goes (a later one may get its number)
        self._close_reader()
        if self._socket is not None:
            self._socket.close()

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()  # the duplicate only: the port is free once the loop closes its own
            self._reader = None

    # ------------------------------------------------------------------ connections

    def attach(
        self,
        protocol: asyncio.DatagramProtocol,
        ufrag: str,
        owner: object,
        remote_ufrag: Callable[[], str | None],
    ) -> MuxedTransport:
        """A transport for ``protocol`` of the ICE connection ``owner``, whose local ufrag is ``ufrag``."""
        if self._socket is None:
            raise OSError(f"the shared UDP socket {self.sockname} is closed")
        transport = MuxedTransport(self, protocol, ufrag, remote_ufrag)
        self.by_ufrag.setdefault(ufrag, []).append(transport)
        self.owners[ufrag] = owner
        return transport

    def detach(self, transport: MuxedTransport) -> None:
        same_ufrag = self.by_ufrag.get(transport.ufrag, [])
        if transport in same_ufrag:
            same_ufrag.remove(transport)
        if not same_ufrag:
            self.by_ufrag.pop(transport.ufrag, None)
            self.owners.pop(transport.ufrag, None)
        for address in transport.addresses:
            if self.by_address.get(address) is transport:
                del self.by_address[address]
        transport.addresses.clear()
        for transaction in transport.transactions:
            if self.by_transaction.get(transaction) is transport:
                del self.by_transaction[transaction]
        transport.transactions.clear()

    def counts(self) -> RoutingCounts:
        return RoutingCounts(
            connections=sum(len(ts) for ts in self.by_ufrag.values()),
            ufrags=len(self.by_ufrag),
            addresses=len(self.by_address),
            transactions=len(self.by_transaction),
        )

    # ------------------------------------------------------------------ datagrams

    def send(self, transport: MuxedTransport, data: bytes, addr: Address) -> None:
        if self._socket is None:
            return
        if data and data[0] < 4:  # maybe STUN: remember what routes the answer back
            kind = stun_class(data)
            if kind == REQUEST:
                self._remember_transaction(transport, stun_transaction_id(data))
            elif kind == SUCCESS:
                self._bind_address(addr, transport)
        if self.batch is not None and self.batch.count:
            self.batch.flush()  # what the legs queued goes first
        self._socket.sendto(data, addr)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._deliver(data, addr)
        if not self._drained and self._reader is not None:
            self._drain(self._reader)

    def _drain(self, reader: socket.socket) -> None:
        """Route what else the kernel queued, in order, so nobody's datagram waits behind the others'."""
        self._drained = True
        asyncio.get_running_loop().call_soon(self._next_turn)
        buffer = self._buffer
        for _ in range(DRAIN_PER_TURN):
            if self._socket is None:
                return  # a connection closed the socket meanwhile
            try:
                size, addr = reader.recvfrom_into(buffer, RECEIVE_SIZE, _MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.EBADF:
                    return
                self.error_received(exc)  # e.g. an ICMP error, as the loop's transport reports it
                continue
            self._deliver(bytes(buffer[:size]), addr)  # one copy

    def _next_turn(self) -> None:
        self._drained = False

    def _deliver(self, data: bytes, addr: tuple[Any, ...]) -> None:
        remote = (addr[0], addr[1])
        target = self.route(data, remote)
        if target is None:
            self.dropped += 1
            return
        try:
            target.protocol.datagram_received(data, remote)
        except Exception:  # one connection's failure must not stop the others' media
            log.exception("muxed connection failed on a datagram from the shared socket %s", self.sockname)

    def route(self, data: bytes, remote: Address) -> MuxedTransport | None:
        kind = stun_class(data) if data and data[0] < 4 else None
        if kind == REQUEST:
            username = stun_username(data)
            return None if username is None else self._by_username(username)
        if kind in (SUCCESS, ERROR):
            transport = self.by_transaction.pop(stun_transaction_id(data), None)
            if transport is not None:
                transport.transactions.pop(stun_transaction_id(data), None)
                if kind == SUCCESS:
                    self._bind_address(remote, transport)
                return transport
        return self.by_address.get(remote)

    def _by_username(self, username: str) -> MuxedTransport | None:
        local, _, remote = username.partition(":")
        for transport in self.by_ufrag.get(local, ()):
            expected = transport.remote_ufrag()
            if expected is None or expected == remote:
                return transport
        return None

    def _bind_address(self, address: Address, transport: MuxedTransport) -> None:
        previous = self.by_address.get(address)
        if previous is transport:
            return
        if previous is not None:  # the peer's address now serves another connection
            previous.addresses.discard(address)
        self.by_address[address] = transport
        transport.addresses.add(address)

    def _remember_transaction(self, transport: MuxedTransport, transaction: bytes) -> None:
        if transaction in transport.transactions:
            return  # a retransmission
        transport.transactions[transaction] = None
        self.by_transaction[transaction] = transport
        while len(transport.transactions) > TRANSACTIONS_PER_CONNECTION:
            oldest = next(iter(transport.transactions))
            del transport.transactions[oldest]
            if self.by_transaction.get(oldest) is transport:
                del self.by_transaction[oldest]


class SharedUdpPort:
    """The shared port: one :class:`UdpMux` per host address, bound at once or when first asked."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.muxes: dict[str, UdpMux] = {}
        self._lock = asyncio.Lock()

    async def open(self, addresses: list[str]) -> None:
        """Bind the port on every address now (start-up fails at once if it is taken)."""
        for address in addresses:
            await self.mux_for(address)

    async def mux_for(self, address: str) -> UdpMux:
        async with self._lock:
            mux = self.muxes.get(address)
            if mux is None:
                mux = UdpMux()
                await mux.bind(address, self.port)
                self.muxes[address] = mux
            return mux

    def unique_ufrag(self, ufrag: str, owner: object) -> str:
        """``ufrag``, or a fresh one if another connection on the port has it already."""
        while any(mux.owners.get(ufrag, owner) is not owner for mux in self.muxes.values()):
            ufrag = "".join(secrets.choice(UFRAG_CHARACTERS) for _ in range(UFRAG_LENGTH))
        return ufrag

    def counts(self) -> RoutingCounts:
        every = [mux.counts() for mux in self.muxes.values()]
        return RoutingCounts(*(sum(getattr(c, name) for c in every) for name in RoutingCounts.__dataclass_fields__))

    @property
    def dropped(self) -> int:
        return sum(mux.dropped for mux in self.muxes.values())

    def close(self) -> None:
        for mux in self.muxes.values():
            mux.close()
        self.muxes.clear()

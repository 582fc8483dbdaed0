"""The send path: packets protected with a DTLS transport's SRTP keys, in one shared scratch
buffer, and sent on its nominated ICE pair (or into the muxed port's batch, or a TURN relay)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aioice.ice
import pylibsrtp
from aiortc.rtcdtlstransport import State as DtlsState
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

from .. import udp_batch
from ..rtp import ScratchSink
from ..udp_mux import MuxedTransport
from .dtls_tap import TappedDtlsTransport

_pending: set[asyncio.Task[None]] = set()  # sends through a TURN relay, held until done

# One scratch buffer for every leg (the event loop sends one packet at a time): a packet is
# built in it, protected in place by libsrtp (which appends its tag) and copied out to sendto.
SCRATCH_CAPACITY = 2048  # largest plaintext packet; a browser's are below 1300 bytes
_scratch = srtp_ffi.new("unsigned char[]", SCRATCH_CAPACITY + pylibsrtp.SRTP_MAX_SRTCP_TRAILER_LEN)
_scratch_bytes = srtp_ffi.buffer(_scratch)
_scratch_view = memoryview(_scratch_bytes)
_length = srtp_ffi.new("int *")
_CONNECTED = DtlsState.CONNECTED  # an enum member read per packet: looked up once


class SrtpSender(ScratchSink):
    """Protects packets with a DTLS transport's SRTP keys and sends them on its nominated ICE pair.

    Calls libsrtp directly on the shared scratch buffer (pylibsrtp's ``protect`` allocates and
    copies twice per packet) and ``sendto``s on the pair's socket: no task, no await; on the
    muxed port the datagram goes to the socket's batch instead (sfu/udp_batch.py). The
    route (SRTP context, socket, address) is looked up once and kept while the nominated pair
    and the SRTP session stay the same. Returns False when the transport is not (or no
    longer) connected; ``drop`` (loss injection in tests) makes it drop a packet yet say it went.
    """

    buffer = _scratch_view
    capacity = SCRATCH_CAPACITY

    def __init__(self, dtls: TappedDtlsTransport | None = None, rtcp: bool = False) -> None:
        self.drop: Callable[[], bool] | None = None
        self._protect = srtp_lib.srtp_protect_rtcp if rtcp else srtp_lib.srtp_protect
        self._dtls: TappedDtlsTransport | None = None
        self._nominated: dict[int, Any] = {}
        self._pair: Any = None
        self._session: pylibsrtp.Session | None = None
        self._context: Any = None
        self._sendto: Callable[[bytes, Any], object] = _nowhere
        self._addr: Any = None
        self._batch: udp_batch.UdpBatch | None = None  # on the muxed port: its batch, the peer's sockaddr
        self._to: Any = None
        self._muxed: Any = None
        if dtls is not None:
            self.attach(dtls)

    def attach(self, dtls: TappedDtlsTransport) -> None:
        """Send on ``dtls`` from now on (once it is connected)."""
        self._dtls = dtls
        self._nominated = dtls.transport._connection._nominated
        self.reroute()

    def reroute(self) -> None:
        """Look the route up again before the next packet."""
        self._pair = self._session = None

    def __call__(self, packet: bytes) -> bool:
        size = len(packet)
        if size > SCRATCH_CAPACITY:
            return False
        _scratch_view[0:size] = packet
        return self.send_built(size)

    def send_built(self, length: int) -> bool:
        drop = self.drop
        if drop is not None and drop():
            return True  # counted as sent: the loss is on the wire
        dtls = self._dtls
        if dtls is None or dtls._state is not _CONNECTED:
            return False
        pair = self._nominated.get(1)
        if (pair is not self._pair or dtls._tx_srtp is not self._session) and not self._route(dtls, pair):
            return False
        _length[0] = length
        if self._protect(self._context, _scratch, _length):
            return False  # a libsrtp error (e.g. the key's packet limit)
        batch = self._batch
        if batch is None:
            self._sendto(_scratch_bytes[0 : _length[0]], self._addr)
        elif not self._muxed._closing:
            batch.add(_scratch, _length[0], self._to)
        return True

    def _route(self, dtls: TappedDtlsTransport, pair: Any) -> bool:
        session = dtls._tx_srtp
        if pair is None or session is None:
            return False
        protocol = pair.protocol
        transport = getattr(protocol, "transport", None)
        self._batch = None
        if type(protocol) is aioice.ice.StunProtocol and transport is not None:
            self._sendto = transport.sendto
            if type(transport) is MuxedTransport and transport.mux.batch is not None:
                self._to = transport.mux.batch.destination(pair.remote_addr)
                self._batch, self._muxed = (transport.mux.batch, transport) if self._to is not None else (None, None)
        else:  # a TURN allocation: its protocol frames the data itself

            def relay(data: bytes, addr: Any) -> None:
                task = asyncio.get_running_loop().create_task(protocol.send_data(data, addr))
                _pending.add(task)
                task.add_done_callback(_pending.discard)

            self._sendto = relay
        self._context = session._srtp[0]
        self._session, self._pair, self._addr = session, pair, pair.remote_addr
        return True


def _nowhere(data: bytes, addr: Any) -> None:
    pass


make_sender = SrtpSender  # make_sender(dtls, rtcp=False)(packet) -> bool: protect and send one packet

"""Batched sending on one UDP socket: many datagrams, one ``sendmmsg(2)`` (Linux).

With the muxed port (``ice.udp_port``) every subscriber leg sends through the same
socket, so the datagrams one incoming packet produces (one per subscriber) can leave in
one system call instead of one ``sendto`` each. A :class:`UdpBatch` keeps them in
preallocated slots (the datagram copied in, the destination's ``sockaddr`` built once
per address and pointed to) until it is flushed.

Datagrams are only held back inside a *hold*: the producer holds while it hands a packet
to its consumers, so are NACK answers (:func:`hold` … :func:`release`, the last release
flushes). Outside a hold a datagram goes out at once, so nothing can wait in a batch.
Order is kept: a datagram sent on the socket some other way (STUN, DTLS) flushes the
batch first, and while the event loop's transport has datagrams queued (its socket was
full) the batch goes through the transport too, behind them. When ``sendmmsg`` says the
socket is full (EAGAIN, ENOBUFS) the rest goes through the transport's ``sendto``, which
queues what cannot go now and never blocks; any other error is reported for its one
datagram (``error_received``, as the transport does for ``sendto``) and the next ones
are sent. Where ``sendmmsg`` is missing, :func:`available` is False and nobody batches.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import struct
import sys
from collections.abc import Callable, Iterator
from typing import Any, Protocol

log = logging.getLogger(__name__)

ENABLED = True  # batching on the muxed port (bench.relay turns it off to compare)
CAPACITY = 256  # datagrams per sendmmsg call (the kernel takes at most 1024)
SLOT_SIZE = 2304  # bytes per datagram slot: the SRTP sender's 2048-byte packets plus any SRTP/SRTCP trailer
MAX_DESTINATIONS = 4096  # cached sockaddrs per socket before the cache starts again
_FULL = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS)
_MSG_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0x40)

_CDEF = """
struct iovec { void *iov_base; size_t iov_len; };
struct msghdr {
    void *msg_name; unsigned int msg_namelen; struct iovec *msg_iov; size_t msg_iovlen;
    void *msg_control; size_t msg_controllen; int msg_flags;
};
struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; };
int sendmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags);
"""

ffi: Any = None
_libc: Any = None
if sys.platform.startswith("linux"):
    try:
        import cffi

        ffi = cffi.FFI()
        ffi.cdef(_CDEF)  # glibc's (and musl's, little-endian) layout: cffi computes the offsets
        _libc = ffi.dlopen(None)
        _libc.sendmmsg  # noqa: B018  (AttributeError: the C library has none)
    except (ImportError, OSError, AttributeError):
        ffi = _libc = None


def available() -> bool:
    """``sendmmsg`` can be called here, and batching is on."""
    return ENABLED and _libc is not None


# ---------------------------------------------------------------------- holds

_held = 0
_dirty: list[UdpBatch] = []  # batches holding datagrams, in the order they got their first


def hold() -> None:
    """Keep datagrams in their batches until the matching :func:`release`."""
    global _held
    _held += 1


def release() -> None:
    """End a hold; the last one flushes every batch."""
    global _held
    _held -= 1
    if not _held and _dirty:
        flush_all()


@contextlib.contextmanager
def held() -> Iterator[None]:
    """:func:`hold` … :func:`release` around a block (not on the per-packet path: a bit slower)."""
    hold()
    try:
        yield
    finally:
        release()


def flush_all() -> None:
    while _dirty:
        _dirty.pop(0).flush()


# ---------------------------------------------------------------------- addresses


class Destination:
    """One peer's address: the Python tuple and its ``sockaddr``, built once."""

    __slots__ = ("addr", "length", "pointer", "sockaddr")

    def __init__(self, addr: tuple[Any, ...], raw: bytes) -> None:
        self.addr = addr
        self.sockaddr = ffi.new("char[]", raw)  # kept alive by this object
        self.pointer = int(ffi.cast("uintptr_t", self.sockaddr))
        self.length = len(raw)


def sockaddr(family: int, addr: tuple[Any, ...]) -> bytes | None:
    """``struct sockaddr_in`` / ``sockaddr_in6`` for ``addr`` (numeric host), None if not of ``family``."""
    host, port = str(addr[0]), int(addr[1])
    try:
        if family == socket.AF_INET:
            return struct.pack("=H", family) + struct.pack("!H", port) + socket.inet_pton(family, host) + bytes(8)
        if family == socket.AF_INET6:
            host, _, scope = host.partition("%")
            scope_id = int(addr[3]) if len(addr) > 3 else 0
            if scope:
                scope_id = int(scope) if scope.isdigit() else socket.if_nametoindex(scope)
            flowinfo = int(addr[2]) if len(addr) > 2 else 0
            packed = socket.inet_pton(family, host)
            return struct.pack("=H", family) + struct.pack("!HI", port, flowinfo) + packed + struct.pack("=I", scope_id)
    except (OSError, ValueError, OverflowError, struct.error):
        return None
    return None


# ---------------------------------------------------------------------- the batch


class SocketTransport(Protocol):
    """What the batch needs of the event loop's datagram transport (asyncio's or uvloop's)."""

    def sendto(self, data: Any, addr: Any = None) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def is_closing(self) -> bool: ...
    def get_extra_info(self, name: str, default: Any = None) -> Any: ...


class UdpBatch:
    """Datagrams waiting to leave one socket, sent by one ``sendmmsg``.

    ``transport`` is the event loop's datagram transport of that socket: the batch writes on
    its file descriptor and falls back to its ``sendto``. ``on_error`` gets the OSError of a
    datagram that could not be sent (the transport's protocol's ``error_received``).
    """

    def __init__(
        self,
        transport: SocketTransport,
        family: int,
        on_error: Callable[[Exception], None],
        slot_size: int = SLOT_SIZE,
        capacity: int = CAPACITY,
    ) -> None:
        assert _libc is not None, "sendmmsg is not available"
        self.transport = transport
        self.family = family
        self.fd = transport.get_extra_info("socket").fileno()
        self.on_error = on_error
        self.slot_size = slot_size
        self.capacity = capacity
        self.count = 0
        self.closed = False
        self.calls = 0  # sendmmsg calls and datagrams they sent (tests, benches)
        self.sent = 0
        self.fallbacks = 0  # datagrams handed to the transport's sendto instead
        self._arena = ffi.new("char[]", slot_size * capacity)
        self._slots = [self._arena + i * slot_size for i in range(capacity)]
        self._iov = ffi.new("struct iovec[]", capacity)
        self._msgs = ffi.new("struct mmsghdr[]", capacity)
        for i in range(capacity):
            self._iov[i].iov_base = self._slots[i]
            self._msgs[i].msg_hdr.msg_iov = self._iov + i
            self._msgs[i].msg_hdr.msg_iovlen = 1
        # Per datagram only three numbers change: written through flat views, not cdata fields.
        self._iov_q = memoryview(ffi.buffer(self._iov)).cast("Q")
        self._msg_q = memoryview(ffi.buffer(self._msgs)).cast("Q")
        self._msg_i = memoryview(ffi.buffer(self._msgs)).cast("I")
        iov_size, msg_size = ffi.sizeof("struct iovec"), ffi.sizeof("struct mmsghdr")
        name, namelen = ffi.offsetof("struct msghdr", "msg_name"), ffi.offsetof("struct msghdr", "msg_namelen")
        iov_len = ffi.offsetof("struct iovec", "iov_len")
        assert iov_size % 8 == 0 and msg_size % 8 == 0 and name % 8 == 0 and iov_len % 8 == 0 and namelen % 4 == 0
        self._len_at = [(i * iov_size + iov_len) // 8 for i in range(capacity)]
        self._name_at = [(i * msg_size + name) // 8 for i in range(capacity)]
        self._namelen_at = [(i * msg_size + namelen) // 4 for i in range(capacity)]
        self._to: list[Destination | None] = [None] * capacity
        self._destinations: dict[tuple[Any, ...], Destination | None] = {}

    def destination(self, addr: tuple[Any, ...]) -> Destination | None:
        """The cached address of ``addr``; None if the socket's family cannot send there."""
        key = tuple(addr)
        found = self._destinations.get(key, self)
        if found is self:
            if len(self._destinations) >= MAX_DESTINATIONS:
                self._destinations.clear()  # senders keep their own Destination alive
            raw = sockaddr(self.family, key)
            found = self._destinations[key] = None if raw is None else Destination(key, raw)
        return found  # type: ignore[return-value]

    def add(self, data: Any, length: int, to: Destination) -> None:
        """Queue ``length`` bytes of ``data`` (a cdata pointer or a buffer) for ``to``.

        Sent at once outside a hold; within one, at the last release (or when the batch is full).
        """
        if self.closed:
            return
        if length > self.slot_size:  # never from the SRTP sender: sent alone, after what is queued
            self.flush()
            cut = ffi.buffer(data, length)[:] if isinstance(data, ffi.CData) else bytes(memoryview(data)[:length])
            self.transport.sendto(cut, to.addr)
            return
        i = self.count
        ffi.memmove(self._slots[i], data, length)
        self._iov_q[self._len_at[i]] = length
        self._msg_q[self._name_at[i]] = to.pointer
        self._msg_i[self._namelen_at[i]] = to.length
        self._to[i] = to
        self.count = i + 1
        if _held and i + 1 < self.capacity:
            if not i:
                _dirty.append(self)
            return
        self.flush()

    def flush(self) -> None:
        """Send every queued datagram, in order."""
        count = self.count
        if not count:
            return
        self.count = 0
        if self in _dirty:
            _dirty.remove(self)
        if self.closed or self.transport.is_closing():
            return
        start = 0
        if self.transport.get_write_buffer_size():
            self._fall_back(0, count)  # datagrams are queued in the transport: go behind them
            return
        while start < count:
            sent = _libc.sendmmsg(self.fd, self._msgs + start, count - start, _MSG_DONTWAIT)
            self.calls += 1
            if sent > 0:
                self.sent += sent
                start += sent
                continue
            code = ffi.errno if sent < 0 else errno.EAGAIN
            if code == errno.EINTR:
                continue
            if code in _FULL:
                self._fall_back(start, count)
                return
            self._report(OSError(code, os.strerror(code)))
            start += 1  # that datagram is lost, as with sendto; the next ones still go

    def _fall_back(self, start: int, count: int) -> None:
        sendto = self.transport.sendto
        for i in range(start, count):
            to = self._to[i]
            assert to is not None
            length = self._iov_q[self._len_at[i]]
            self.fallbacks += 1
            sendto(bytes(ffi.buffer(self._slots[i], length)), to.addr)

    def _report(self, exc: OSError) -> None:
        try:
            self.on_error(exc)
        except Exception:
            log.exception("error_received failed")

    def close(self) -> None:
        """Drop what is queued; send nothing more."""
        self.closed = True
        self.count = 0
        if self in _dirty:
            _dirty.remove(self)

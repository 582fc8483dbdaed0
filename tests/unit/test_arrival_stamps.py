"""The bench's receivers time a datagram's arrival by the kernel's stamp, not by when they read it."""

from __future__ import annotations

import socket
import time

from bench.synthetic_rx import arrival_ns, enable_arrival_stamps


def test_the_arrival_is_when_the_datagram_reached_the_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        receiver.bind(("127.0.0.1", 0))
        assert enable_arrival_stamps(receiver.fileno())
        sent = time.monotonic_ns()
        sender.sendto(b"rtp", receiver.getsockname())
        time.sleep(0.2)  # a busy load generator reads late
        assert receiver.recv(16) == b"rtp"
        read = time.monotonic_ns()
        arrived = arrival_ns(receiver.fileno())
        assert sent - 2_000_000 <= arrived <= sent + 50_000_000  # within the clocks' conversion
        assert read - arrived > 150_000_000  # not the time it was read

"""Sending a sitting command from a test peer, and waiting until the server has handled it.

A fixed sleep after each command (0.2 s) was enough on a quiet machine and failed under the
full suite's load: the next assertion, or the next member's command (a ballot before the vote
is open), raced the server. Each command now names what it changes, and the test waits for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.peers import Peer
from tests.test_media_relay import wait_for


def error_count(peer: Peer) -> int:
    return sum(1 for m in peer.messages if m["type"] == "error")


async def command(peer: Peer, message: dict[str, Any], until: Callable[[], object]) -> None:
    """Send `message` and wait (10 s at most) until `until()` holds."""
    await peer.send(message)
    await wait_for(until, timeout=10, step=0.02)


async def refused(peer: Peer, message: dict[str, Any]) -> dict[str, Any]:
    """Send a command the server must refuse; return the error it sends back to `peer`."""
    before = error_count(peer)
    await command(peer, message, lambda: error_count(peer) > before)
    return next(m for m in reversed(peer.messages) if m["type"] == "error")

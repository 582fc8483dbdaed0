"""A client that stops reading (its TCP window closed) is dropped; nobody else waits for it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from config import Settings
from tests.peers import Peer
from tests.test_media_relay import wait_for

pytestmark = pytest.mark.asyncio


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(port=0, data_dir=tmp_path, demo=False, limits={"send_queue": 8})


async def test_a_stalled_client_is_dropped_and_the_sitting_goes_on(server) -> None:  # type: ignore[no-untyped-def]
    chair = Peer(server.base_url, server.token("Maire", role="chair"), "red", 440)
    stalled = Peer(server.base_url, server.token("Figé"), "green", 660)
    other = Peer(server.base_url, server.token("Vive"), "blue", 880)
    for peer in (chair, stalled, other):
        await peer.join()
    sitting = server.hub.sittings["demo"]
    session = sitting.seats[stalled.me].session
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def blocked_send(_text: str) -> None:  # what a dead peer's full TCP window looks like
        await never

    session.ws.send_str = blocked_send
    try:
        started = asyncio.get_running_loop().time()
        for _ in range(10):  # each change is broadcast to everyone
            await chair.send({"type": "lock", "locked": True})
            await chair.send({"type": "lock", "locked": False})
        await wait_for(lambda: sitting.seats[stalled.me].session is None, timeout=5)
        assert asyncio.get_running_loop().time() - started < 5
        # the others were served all along, and the chair's commands all went through
        await wait_for(lambda: sum(1 for m in other.messages if m["type"] == "sitting_state") >= 20, timeout=5)
        assert [e.type for e in sitting.journal.entries("demo")].count("locked") == 20
        assert stalled.me not in other.participants
    finally:
        never.cancel()
        for peer in (chair, stalled, other):
            await peer.close()

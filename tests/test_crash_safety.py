"""kill -9 of the server in the middle of a sitting: after a restart, nothing recorded is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from signaling.tokens import TokenSigner
from tests.peers import Peer

pytestmark = pytest.mark.asyncio


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start(data: Path, port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signaling", "serve", "--port", str(port), "--no-demo",
        env={**os.environ, "HEMICYCLE_DATA_DIR": str(data)}, cwd=data,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line, "the server exited before it was ready"
        if line.startswith("HEMICYCLE READY"):
            return proc


async def settle() -> None:
    """Commands from different connections: let each be recorded before the next."""
    await asyncio.sleep(0.3)


def state(peer: Peer) -> dict[str, Any]:
    return next(m for m in reversed(peer.messages) if m["type"] == "sitting_state")


async def test_kill_9_then_restart_keeps_roll_proxies_votes_and_journal(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = await start(tmp_path, port)
    signer = TokenSigner((tmp_path / "secret.key").read_bytes())
    names = ["Maire", "Adjoint", "Élue", "Absent"]
    tokens = [signer.mint("demo", n, "chair" if i == 0 else "councillor", 3600) for i, n in enumerate(names)]
    peers = [Peer(base, t) for t in tokens]
    try:
        for peer in peers:
            await peer.join()
        chair, a, b, c = peers
        for peer, message in [
            (c, {"type": "give_proxy", "holder_id": b.me}),
            (chair, {"type": "set_item", "item_id": "2"}),
            (b, {"type": "raise_hand"}),
            (chair, {"type": "open_vote", "question": "Adopter la subvention ?"}),
            (a, {"type": "cast_vote", "choice": "for"}),
        ]:
            await peer.send(message)
            await settle()
        # the acknowledgement of the vote reached a (its sitting_state lists a as having voted)
        errors = [m for p in peers for m in p.messages if m["type"] == "error"]
        assert not errors, errors
        assert a.me in state(a)["votes"][-1]["voters"]
    finally:
        server.send_signal(signal.SIGKILL)
        await server.wait()
        for peer in peers:
            await peer.close()

    server = await start(tmp_path, port)  # same data directory, same port: the members come back
    again = [Peer(base, t) for t in tokens[:3]]
    try:
        for peer in again:
            await peer.join()
        await settle()
        snapshot = state(again[0])
        members = {m["member_id"]: m for m in snapshot["members"]}
        assert members[peers[3].me]["represented_by"] == peers[2].me  # the proxy
        assert [h["participant_id"] for h in snapshot["queue"]] == [peers[2].me]  # the raised hand
        vote = snapshot["votes"][-1]
        assert vote["open"] and vote["voters"] == [peers[1].me]  # the vote cast before the crash stands
        assert snapshot["current_item"] == "2"
        # the sitting goes on: the proxy holder votes for both, the chair closes
        for peer, message in [
            (again[2], {"type": "cast_vote", "choice": "against"}),
            (again[2], {"type": "cast_vote", "choice": "against", "on_behalf_of": peers[3].me}),
            (again[0], {"type": "cast_vote", "choice": "for"}),
            (again[0], {"type": "close_vote"}),
        ]:
            await peer.send(message)
            await settle()
        result = state(again[1])["votes"][-1]
        assert (result["votes_for"], result["votes_against"], result["adopted"]) == (2, 2, True)
        # the journal verifies, and records the connections the crash cut
        out = tmp_path / "journal.jsonl"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "signaling", "journal", "export", "--sitting", "demo", "--out", str(out),
            "--db", str(tmp_path / "journal.sqlite3"), "--key", str(tmp_path / "journal-key.pem"),
        )
        assert await proc.wait() == 0
        verify = await asyncio.create_subprocess_exec(sys.executable, "-m", "signaling", "journal", "verify", str(out))
        assert await verify.wait() == 0
        assert '"connection_lost"' in out.read_text(encoding="utf-8")
    finally:
        for peer in again:
            await peer.close()
        server.terminate()
        await server.wait()

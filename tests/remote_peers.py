"""aiortc members in a process of their own, driven line by line from a test.

Tests of how the server's process binds its media sockets (``ice.udp_port``,
``ice.announced_address``) run their members here: in the server's process, the
members' aioice would go through the same socket shims, and their sockets would be
counted as the server's.

    python -m tests.remote_peers BASE_URL TOKEN...

Every member joins, publishes (camera and microphone) and subscribes. Commands, one
line each on standard input; each answers one JSON line on standard output:

``wait FRAMES SECONDS``
    until every member has decoded FRAMES more video frames and FRAMES more audio
    frames of every other member than at the previous ``wait`` (or SECONDS passed):
    ``{"ok", "received", "server_sdps", "nominated", "states"}``.
``leave``
    closes the members: ``{"left": true}``, and the process ends.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from aiortc import RTCPeerConnection

from sfu import aiortc_glue
from tests.peers import COLOURS, Peer

TONES = [440.0, 660.0, 880.0, 550.0]
ROOT = Path(__file__).resolve().parent.parent


def _counts(peers: list[Peer]) -> dict[str, dict[str, tuple[int, int]]]:
    return {
        p.me or "": {other: (len(r.counters), r.audio_frames) for other, r in p.received.items()} for p in peers
    }


def _nominated(pc: RTCPeerConnection | None) -> list[str]:
    """The server address each nominated ICE pair sends to (aiortc has no public getter for it)."""
    if pc is None or not pc.getTransceivers():
        return []
    connection = pc.getTransceivers()[0].receiver.transport.transport._connection
    return [f"{pair.remote_addr[0]}:{pair.remote_addr[1]}" for pair in connection._nominated.values()]


def _report(peers: list[Peer], ok: bool) -> dict[str, Any]:
    return {
        "ok": ok,
        "received": _counts(peers),
        "server_sdps": [
            m["sdp"] for p in peers for m in p.messages if m["type"] in ("publish_answer", "subscribe_offer")
        ],
        "nominated": [address for p in peers for pc in (p.publish_pc, p.subscribe_pc) for address in _nominated(pc)],
        "states": [pc.connectionState for p in peers for pc in (p.publish_pc, p.subscribe_pc) if pc is not None],
    }


async def _wait(peers: list[Peer], before: dict[str, dict[str, tuple[int, int]]], frames: int, seconds: float) -> bool:
    ids = [p.me or "" for p in peers]
    deadline = asyncio.get_running_loop().time() + seconds

    def enough() -> bool:
        now = _counts(peers)
        for me in ids:
            for other in ids:
                if other == me:
                    continue
                video, audio = now[me].get(other, (0, 0))
                video_before, audio_before = before.get(me, {}).get(other, (0, 0))
                if video - video_before < frames or audio - audio_before < frames:
                    return False
        return True

    while not enough():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


class RemoteMembers:
    """The test's side: the members' process, its commands and answers."""

    def __init__(self, base_url: str, tokens: list[str]) -> None:
        self.base_url = base_url
        self.tokens = tokens
        self.process: asyncio.subprocess.Process | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115  (the process's stderr, closed in leave)

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.remote_peers", self.base_url, *self.tokens,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=self._log, cwd=ROOT,
        )

    async def wait(self, frames: int, seconds: float) -> dict[str, Any]:
        """Until each member got ``frames`` more of each other's video and audio frames (see the module)."""
        return await self._ask(f"wait {frames} {seconds}", seconds + 30)

    async def leave(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        try:
            await self._ask("leave", 20)
            await asyncio.wait_for(self.process.wait(), 10)
        finally:
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            self._log.close()

    async def _ask(self, command: str, timeout: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            self._log.seek(0)
            raise RuntimeError("the members' process ended: " + self._log.read().decode(errors="replace")[-3000:])
        answer: dict[str, Any] = json.loads(line)
        return answer


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def main(base_url: str, tokens: list[str]) -> None:
    aiortc_glue.restrict_host_addresses(["127.0.0.1"])  # aioice leaves loopback out, the tests have nothing else
    colours = list(COLOURS)
    peers = [Peer(base_url, token, colours[i % 4], TONES[i % 4]) for i, token in enumerate(tokens)]
    try:
        for peer in peers:
            await peer.join()
        for peer in peers:
            try:
                await peer.publish()
            except TimeoutError:
                pass  # no answer: the test sees it in the report
        before: dict[str, dict[str, tuple[int, int]]] = {}
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            command = line.split()
            if not command or command[0] == "leave":
                break
            if command[0] == "wait":
                ok = await _wait(peers, before, int(command[1]), float(command[2]))
                before = _counts(peers)
                _say(_report(peers, ok))
    finally:
        for peer in peers:
            await peer.close()
    _say({"left": True})


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))

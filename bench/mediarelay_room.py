"""Baseline for the scenarios: a room of several publishers through aiortc's ``MediaRelay``
(decode each publisher once, re-encode for every subscriber), for comparison with Hemicycle.

``python -m bench.mediarelay_room [--port 0] [--bitrate 500000] [--no-uvloop]`` prints
``MEDIARELAY READY http://127.0.0.1:PORT``.

Unlike ``bench/mediarelay_server.py`` (one publisher), every member may publish. It
speaks the subset of Hemicycle's protocol the synthetic members use: ``hello`` →
``welcome``; ``publish`` → ``publish_answer``; the server offers each member, on its
receiving connection, a ``MediaRelay`` proxy of every other member's tracks
(``subscribe_offer``, renegotiated as publishers arrive) and takes ``subscribe_answer``.
It has no sitting: no chair, no mutes (the load generator publishes only what Hemicycle
would forward). ``GET /bench/stats`` gives the packets sent to subscribers. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import signal
from typing import Any

from aiohttp import WSMsgType, web
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaRelay

from . import common
from .mediarelay_server import SOURCE, configuration

log = logging.getLogger("mediarelay-room")


class Member:
    def __init__(self, room: Room, member_id: str, ws: web.WebSocketResponse) -> None:
        self.room = room
        self.id = member_id
        self.ws = ws
        self.publish_pc: RTCPeerConnection | None = None
        self.subscribe_pc: RTCPeerConnection | None = None
        self.slots: list[dict[str, Any]] = []
        self.offered: set[int] = set()  # ids of the relayed tracks already on the receiving connection
        self.revision = 0
        self._wanted = False
        self._answered = asyncio.Event()
        self._negotiating: asyncio.Task[None] | None = None

    async def publish(self, sdp: str) -> str:
        common.assert_loopback_sdp(sdp)
        pc = self.publish_pc = RTCPeerConnection(configuration())
        pc.on("track", lambda track: self.room.add_track(self, track))
        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    def renegotiate(self) -> None:
        """A new offer with every other member's tracks; changes meanwhile are coalesced."""
        self._wanted = True
        if self._negotiating is None or self._negotiating.done():
            self._negotiating = asyncio.get_running_loop().create_task(self._negotiate())

    async def _negotiate(self) -> None:
        while self._wanted:
            self._wanted = False
            pc = self.subscribe_pc = self.subscribe_pc or RTCPeerConnection(configuration())
            added = False
            for owner, track in self.room.tracks:
                if owner is self or id(track) in self.offered:
                    continue
                transceiver = pc.addTransceiver(self.room.relay.subscribe(track), direction="sendonly")
                if track.kind == "video":
                    caps = RTCRtpSender.getCapabilities("video").codecs
                    transceiver.setCodecPreferences([c for c in caps if c.mimeType in ("video/VP8", "video/rtx")])
                self.offered.add(id(track))
                self.slots.append({"transceiver": transceiver, "kind": track.kind, "owner": owner.id})
                added = True
            if not added:
                continue
            await pc.setLocalDescription(await pc.createOffer())
            self.revision += 1
            self._answered.clear()
            slots = [
                {"mid": s["transceiver"].mid, "kind": s["kind"], "participant_id": s["owner"], "source": SOURCE[s["kind"]]}
                for s in self.slots
            ]
            await self.ws.send_json(
                {"type": "subscribe_offer", "revision": self.revision, "sdp": pc.localDescription.sdp, "slots": slots}
            )
            await self._answered.wait()

    async def on_answer(self, sdp: str) -> None:
        common.assert_loopback_sdp(sdp)
        assert self.subscribe_pc is not None
        await self.subscribe_pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))
        self._answered.set()

    async def close(self) -> None:
        if self._negotiating is not None:
            self._negotiating.cancel()
        for pc in (self.publish_pc, self.subscribe_pc):
            if pc is not None:
                await pc.close()


class Room:
    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.members: dict[str, Member] = {}
        self.tracks: list[tuple[Member, Any]] = []
        self.drains: set[asyncio.Task[None]] = set()
        self.ids = itertools.count(1)

    def add_track(self, owner: Member, track: Any) -> None:
        self.tracks.append((owner, track))
        # Keep the relay pulling even without subscribers, so decoded frames never pile up.
        drain = asyncio.get_running_loop().create_task(self._drain(self.relay.subscribe(track, buffered=False)))
        self.drains.add(drain)
        for member in self.members.values():
            if member is not owner:
                member.renegotiate()

    @staticmethod
    async def _drain(track: Any) -> None:
        with contextlib.suppress(Exception):
            while True:
                await track.recv()

    async def packets_sent(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for member in list(self.members.values()):
            if member.subscribe_pc is None:
                continue
            for transceiver in member.subscribe_pc.getTransceivers():
                for stat in (await transceiver.sender.getStats()).values():
                    if getattr(stat, "type", "") == "outbound-rtp":
                        out[stat.kind] = out.get(stat.kind, 0) + stat.packetsSent
        return out

    async def close(self) -> None:
        for task in self.drains:
            task.cancel()
        for member in list(self.members.values()):
            await member.close()


ROOM = web.AppKey("room", Room)


async def websocket(request: web.Request) -> web.StreamResponse:
    room = request.app[ROOM]
    ws = web.WebSocketResponse(heartbeat=5.0)
    await ws.prepare(request)
    member = Member(room, f"m{next(room.ids)}", ws)
    room.members[member.id] = member
    try:
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            kind = data.get("type")
            if kind == "hello":
                you = {"id": member.id, "name": member.id, "role": "councillor", "connected": True, "sources": []}
                await ws.send_json({
                    "type": "welcome", "version": 1, "you": you, "participants": [], "ice_servers": [],
                    "sitting": {"id": "demo", "title": "MediaRelay baseline"},
                })  # fmt: skip
                member.renegotiate()
            elif kind == "publish":
                await ws.send_json({"type": "publish_answer", "sdp": await member.publish(data["sdp"])})
            elif kind == "subscribe_answer":
                await member.on_answer(data["sdp"])
            elif kind == "leave":
                break
    finally:
        room.members.pop(member.id, None)
        await member.close()
    return ws


async def stats(request: web.Request) -> web.StreamResponse:
    room = request.app[ROOM]
    return web.json_response({"out": await room.packets_sent(), "members": len(room.members)})


async def serve(host: str, port: int) -> None:
    app = web.Application()
    room = app[ROOM] = Room()
    app.router.add_get("/ws", websocket)
    app.router.add_get("/bench/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"MEDIARELAY READY http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await room.close()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mediarelay_room")
    parser.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bitrate", type=int, default=500_000, help="VP8 re-encode bitrate, fixed")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    common.restrict_to_loopback()
    common.fix_vp8_bitrate(args.bitrate)
    if not args.no_uvloop:
        common.install_uvloop()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()

"""Baseline: aiortc's ``MediaRelay`` as a videoconference server (decode once, re-encode
per subscriber), for comparison with Hemicycle's raw-RTP SFU.

``python -m bench.mediarelay_server [--port 0] [--bitrate 1000000] [--no-uvloop]``
prints ``MEDIARELAY READY http://127.0.0.1:PORT``.

It speaks a minimal subset of Hemicycle's protocol on ``/ws`` so that the same
publisher and subscribers drive both servers: ``hello`` (the token is ignored) gets a
``welcome``; ``publish`` gets a ``publish_answer``; a client that joins after the
publisher gets one ``subscribe_offer`` (revision 1) carrying ``MediaRelay`` proxies of
the publisher's audio and video, and answers with ``subscribe_answer``. One publisher
at a time. ``GET /bench/stats`` gives packets sent to subscribers. Loopback only: ICE
host candidates are restricted to 127.0.0.1 and ``iceServers=[]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.rtcconfiguration import RTCBundlePolicy

from . import common

log = logging.getLogger("mediarelay")
SOURCE = {"audio": "mic", "video": "camera"}


def configuration() -> RTCConfiguration:
    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


class Baseline:
    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.tracks: dict[str, Any] = {}
        self.subscribers: list[RTCPeerConnection] = []
        self.peers: set[RTCPeerConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.ids = itertools.count(1)

    async def publish(self, sdp: str) -> str:
        common.assert_loopback_sdp(sdp)
        pc = RTCPeerConnection(configuration())
        self.peers.add(pc)
        pc.on("track", self._on_track)
        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    def _on_track(self, track: Any) -> None:
        self.tracks[track.kind] = track
        # Keep the relay pulling from the start, so decoded frames do not pile up in the
        # receiver's queue before the first subscriber (a burst would skew the window).
        drain = self.relay.subscribe(track, buffered=False)
        task = asyncio.get_running_loop().create_task(self._drain(drain))
        self.tasks.add(task)

    async def _drain(self, track: Any) -> None:
        with contextlib.suppress(Exception):
            while True:
                await track.recv()

    async def offer(self) -> tuple[RTCPeerConnection, dict[str, Any]]:
        pc = RTCPeerConnection(configuration())
        self.peers.add(pc)
        slots = []
        transceivers = []
        for kind in ("audio", "video"):
            if kind not in self.tracks:
                continue
            transceiver = pc.addTransceiver(self.relay.subscribe(self.tracks[kind]), direction="sendonly")
            if kind == "video":
                caps = RTCRtpSender.getCapabilities("video").codecs
                transceiver.setCodecPreferences([c for c in caps if c.mimeType in ("video/VP8", "video/rtx")])
            transceivers.append((kind, transceiver))
        await pc.setLocalDescription(await pc.createOffer())
        for kind, transceiver in transceivers:
            slots.append({"mid": transceiver.mid, "kind": kind, "participant_id": "publisher", "source": SOURCE[kind]})
        self.subscribers.append(pc)
        sdp = pc.localDescription.sdp
        common.assert_loopback_sdp(sdp)
        return pc, {"type": "subscribe_offer", "revision": 1, "sdp": sdp, "slots": slots}

    async def packets_sent(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for pc in list(self.subscribers):
            for transceiver in pc.getTransceivers():
                for stat in (await transceiver.sender.getStats()).values():
                    if getattr(stat, "type", "") == "outbound-rtp":
                        out[stat.kind] = out.get(stat.kind, 0) + stat.packetsSent
        return out

    async def forget(self, pc: RTCPeerConnection | None) -> None:
        if pc is not None:
            self.peers.discard(pc)
            if pc in self.subscribers:
                self.subscribers.remove(pc)
            await pc.close()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for pc in list(self.peers):
            await pc.close()


BASELINE = web.AppKey("baseline", Baseline)


async def websocket(request: web.Request) -> web.StreamResponse:
    baseline = request.app[BASELINE]
    ws = web.WebSocketResponse(heartbeat=5.0)
    await ws.prepare(request)
    number = next(baseline.ids)
    sub_pc: RTCPeerConnection | None = None
    pub_pc_sdp = None
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            kind = data.get("type")
            if kind == "hello":
                you = {"id": f"m{number}", "name": f"m{number}", "role": "councillor", "connected": True, "sources": []}
                await ws.send_json(
                    {
                        "type": "welcome",
                        "version": 1,
                        "you": you,
                        "sitting": {"id": "demo", "title": "MediaRelay baseline"},
                        "participants": [],
                        "ice_servers": [],
                    }
                )
                if baseline.tracks:
                    sub_pc, offer = await baseline.offer()
                    await ws.send_json(offer)
            elif kind == "publish":
                pub_pc_sdp = await baseline.publish(data["sdp"])
                await ws.send_json({"type": "publish_answer", "sdp": pub_pc_sdp})
            elif kind == "subscribe_answer" and sub_pc is not None:
                common.assert_loopback_sdp(data["sdp"])
                await sub_pc.setRemoteDescription(RTCSessionDescription(data["sdp"], "answer"))
            elif kind == "leave":
                break
    finally:
        await baseline.forget(sub_pc)
    return ws


async def stats(request: web.Request) -> web.StreamResponse:
    sent = await request.app[BASELINE].packets_sent()
    return web.json_response({"out": sent, "consumers": len(request.app[BASELINE].subscribers)})


async def serve(host: str, port: int) -> None:
    app = web.Application()
    baseline = app[BASELINE] = Baseline()
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
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await baseline.close()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mediarelay_server")
    parser.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bitrate", type=int, default=1_000_000, help="VP8 re-encode bitrate, fixed")
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

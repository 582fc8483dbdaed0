"""The bench's publisher: one aiortc peer, VP8 video at a fixed bitrate plus Opus audio.

``python -m bench.publisher --url URL --token TOKEN [--bitrate 1000000] [--size 640x480]``

It speaks Hemicycle's protocol (hello, publish) through ``tests.peers.Peer``, prints
``PUBLISHER READY`` once its connection is up, then answers ``stats`` on stdin with
``PUBSTATS {json}`` (packets and bytes sent per kind) until stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from . import common
from .procs import commands, say


async def sender_stats(pc: object) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for transceiver in pc.getTransceivers():  # type: ignore[attr-defined]
        report = await transceiver.sender.getStats()
        for stat in report.values():
            if getattr(stat, "type", "") == "outbound-rtp":
                row = out.setdefault(stat.kind, {"packets": 0, "bytes": 0})
                row["packets"] += stat.packetsSent
                row["bytes"] += stat.bytesSent
    return out


async def run(args: argparse.Namespace) -> None:
    from tests.peers import Peer

    width, height = (int(x) for x in args.size.split("x"))
    peer = Peer(args.url, args.token, tone=440.0)
    peer.video = common.BenchVideo(width, height)
    await peer.join()
    await peer.publish(video=True, audio=True)
    pc = peer.publish_pc
    assert pc is not None
    common.assert_loopback_sdp(pc.localDescription.sdp)
    common.assert_loopback_sdp(pc.remoteDescription.sdp)
    deadline = time.monotonic() + 20
    while pc.connectionState != "connected":
        if time.monotonic() > deadline or pc.connectionState == "failed":
            raise SystemExit(f"publisher: connection {pc.connectionState}")
        await asyncio.sleep(0.05)
    say("PUBLISHER READY", {"seat": peer.me})
    try:
        async for line in commands():
            if line == "stats":
                say("PUBSTATS", {"t": time.monotonic(), "frames": peer.video.counter, "sent": await sender_stats(pc)})
            elif line == "quit":
                break
    finally:
        await peer.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.publisher")
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", default="bench")
    parser.add_argument("--bitrate", type=int, default=1_000_000)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    common.restrict_to_loopback()
    common.fix_vp8_bitrate(args.bitrate)
    if args.uvloop:
        common.install_uvloop()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

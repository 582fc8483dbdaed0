"""The load generator: N subscribers in one process, each a real protocol client.

``python -m bench.loadgen --url URL (--secret-file F | --any-token) [--decoders 2]``

Each subscriber joins over the WebSocket (``hello``), receives the server's
``subscribe_offer``, answers it with a real aiortc ``RTCPeerConnection`` (ICE, DTLS,
SRTP keys) and sends ``subscribe_answer``. The first ``--decoders`` subscribers are
full aiortc receivers that decode VP8 and check the stamped frame counter; the others
are sinks that count SRTP datagrams at the socket and drop them (see bench/sinks.py).

stdin commands: ``grow N [TIMEOUT]`` (add subscribers up to N, answer ``GROWN {json}`` once each
receives video, within TIMEOUT seconds), ``stats`` (answer ``STATS {json}``), ``quit``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCSessionDescription

from tests.peers import Peer, read_stamp

from . import common
from .procs import commands, say
from .sinks import RtpCounter, install_counter

log = logging.getLogger("loadgen")


class Subscriber(Peer):
    """A ``tests.peers.Peer`` that only subscribes, counting what reaches its socket."""

    def __init__(self, url: str, token: str, decode: bool, size: tuple[int, int]) -> None:
        super().__init__(url, token)
        self.decode = decode
        self.size = size
        self.counter = RtpCounter()
        self.hooked = False
        self.error: str | None = None
        self.phase = "created"
        # decoder-side checks (full subscribers only)
        self.frames = 0
        self.audio_frames = 0
        self.skips = 0  # times the counter did not go up by exactly one
        self.skipped = 0  # frames missing in those jumps
        self.bad_size = 0
        self.misread = 0
        self.last_counter: int | None = None

    async def _on_offer(self, data: dict[str, Any]) -> None:
        self.phase = "offered"
        common.assert_loopback_sdp(data["sdp"])
        if self.subscribe_pc is None:
            self.subscribe_pc = RTCPeerConnection(self._config())
            self.subscribe_pc.on("track", self._on_track)
        pc = self.subscribe_pc
        self.slots = {s["mid"]: s for s in data["slots"]}
        self.counter.kinds.update(common.ssrc_kinds(data["sdp"]))
        await pc.setRemoteDescription(RTCSessionDescription(data["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        common.assert_loopback_sdp(pc.localDescription.sdp)
        if not self.hooked:
            install_counter(pc, self.counter, drop=not self.decode)
            self.hooked = True
        await self.send({"type": "subscribe_answer", "revision": data["revision"], "sdp": pc.localDescription.sdp})
        self.phase = "answered"

    def _on_track(self, track: Any) -> None:
        if self.decode:
            super()._on_track(track)

    async def _consume(self, mid: str, track: Any) -> None:
        width, height = self.size
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            if not isinstance(frame, av.VideoFrame):
                self.audio_frames += 1
                continue
            self.frames += 1
            if (frame.width, frame.height) != (width, height):
                self.bad_size += 1
                continue
            value = read_stamp(common.luma(frame))
            if self.last_counter is not None and value != (self.last_counter + 1) & 0xFFFF:
                self.skips += 1
                jump = (value - self.last_counter - 1) & 0xFFFF
                if jump < 0x8000:
                    self.skipped += jump
                else:  # backwards: a corrupt picture (decoded after loss) misread
                    self.misread += 1
            self.last_counter = value

    def video_packets(self) -> int:
        return self.counter.snapshot().get("video", {}).get("packets", 0)

    def row(self) -> dict[str, Any]:
        snap = self.counter.snapshot()
        out: dict[str, Any] = {"decode": self.decode, "rtcp": self.counter.rtcp, "bytes": self.counter.bytes}
        for kind in ("video", "audio"):
            entry = snap.get(kind, {"packets": 0, "highest": 0, "streams": 0})
            out[kind] = [entry["packets"], entry["highest"], entry["streams"]]
        if self.decode:
            out["frames"] = self.frames
            out["audio_frames"] = self.audio_frames
            out["skips"] = self.skips
            out["skipped"] = self.skipped
            out["bad_size"] = self.bad_size
            out["misread"] = self.misread
        return out


class LoadGenerator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.size = tuple(int(x) for x in args.size.split("x"))
        self.subscribers: list[Subscriber] = []
        self.failed: list[str] = []
        self.signer = None
        if args.secret_file:
            from signaling.tokens import TokenSigner

            self.signer = TokenSigner.from_file(Path(args.secret_file))

    def token(self, index: int) -> str:
        if self.signer is None:
            return f"bench-{index}"
        return self.signer.mint(self.args.sitting, f"Abonné {index}", "councillor", lifetime=3600)

    async def start_one(self, index: int, gate: asyncio.Semaphore, deadline: float) -> None:
        sub = Subscriber(self.args.url, self.token(index), index < self.args.decoders, self.size)  # type: ignore[arg-type]
        self.subscribers.append(sub)
        try:
            async with gate:  # at most --concurrency subscribers negotiating at once
                sub.phase = "joining"
                await asyncio.wait_for(sub.join(), max(0.1, deadline - time.monotonic()))
                if sub.phase == "joining":
                    sub.phase = "welcomed"
                while sub.phase != "answered":
                    await self._check(deadline, "no offer answered")
            while sub.video_packets() < 5 or (sub.decode and sub.frames < 1):
                await self._check(deadline, "no video")
        except Exception as exc:
            pc = sub.subscribe_pc
            state = "no pc" if pc is None else f"{pc.connectionState}/{pc.iceConnectionState}"
            sub.error = f"{type(exc).__name__}: {exc} (phase {sub.phase}, {state}, {sub.video_packets()} video pkts)"
            log.warning("subscriber %d failed: %s", index, sub.error)
            self.failed.append(f"subscriber {index}: {sub.error}")

    @staticmethod
    async def _check(deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)

    async def grow(self, target: int, timeout: float) -> dict[str, Any]:
        started = time.monotonic()
        gate = asyncio.Semaphore(self.args.concurrency)
        first = len(self.subscribers)
        deadline = started + timeout
        await asyncio.gather(*(self.start_one(i, gate, deadline) for i in range(first, target)))
        ok = sum(1 for s in self.subscribers if s.error is None)
        return {
            "subscribers": len(self.subscribers),
            "ok": ok,
            "failed": self.failed[-5:],
            "seconds": time.monotonic() - started,
        }

    def stats(self) -> dict[str, Any]:
        return {"t": time.monotonic(), "rows": [s.row() for s in self.subscribers if s.error is None]}

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.subscribers), return_exceptions=True)


async def run(args: argparse.Namespace) -> None:
    gen = LoadGenerator(args)
    say("LOADGEN READY")
    try:
        async for line in commands():
            word, _, rest = line.partition(" ")
            if word == "grow":  # grow N [TIMEOUT]
                target, _, timeout = rest.partition(" ")
                say("GROWN", await gen.grow(int(target), float(timeout or args.join_timeout)))
            elif word == "stats":
                say("STATS", gen.stats())
            elif word == "quit":
                break
    finally:
        await asyncio.wait_for(gen.close(), 20)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--url", required=True)
    parser.add_argument("--secret-file", help="mint Hemicycle invitations with this key")
    parser.add_argument("--sitting", default="demo")
    parser.add_argument("--decoders", type=int, default=2)
    parser.add_argument("--size", default="640x480", help="expected decoded size")
    parser.add_argument("--concurrency", type=int, default=8, help="subscribers joining at once")
    parser.add_argument("--join-timeout", type=float, default=60.0, help="default time limit of one grow")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    common.restrict_to_loopback()
    if args.uvloop:
        common.install_uvloop()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

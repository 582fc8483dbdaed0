"""The scenario load generator: synthetic members (and WHEP viewers) in one process.

``python -m bench.scenario_loadgen --url URL --scenario sitting|stress|broadcast [--secret-file F] ...``
(started by ``bench.scenario``). Member 0 is the chair; members ``0..speakers-1`` speak;
members ``0..cameras-1`` keep their camera on (all by default), the others turn it off (``set_muted``);
each member receives the videos the server selects for it (``video_selection``: at most the server's
``media.max_videos``, which ``bench.scenario --videos`` sets);
members ``1..decoders`` decode the chair's camera (if it is on). stdin commands, one JSON answer each:

* ``grow N TIMEOUT`` → ``GROWN``: members up to N, until each receives every camera it should;
* ``arrange`` → ``ARRANGED``: ``sitting``: the chair mutes everyone but the speakers (``mute_all``,
  then ``mute`` … ``muted: false``), and waits until the sitting state says so;
* ``viewers M TIMEOUT`` → ``VIEWERS``: WHEP viewers of the programme up to M;
* ``checkpoint`` → ``CHECKED``: senders paused, in-flight packets drained, then the exact
  comparison since the previous checkpoint of what each receiver got from each publisher
  with what that publisher sent (or 0 if the stream must not be forwarded);
* ``stats`` → ``STATS``: counters for rates, latency percentiles, pacer health.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription

from sfu import aiortc_glue as glue

from . import common
from .procs import commands, say
from .synthetic import SyntheticMember, configuration
from .synthetic_media import media_set
from .synthetic_rx import LatencyLog, Reception, install_quiet_receivers
from .synthetic_tx import Pacer

MAX_DRAIN = 5.0  # seconds at most for in-flight packets to arrive after the senders pause
log = logging.getLogger("scenario-loadgen")


class Viewer:
    """A WHEP player whose receiving side is a sink (the programme is H.264 + Opus)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.pc = RTCPeerConnection(configuration())
        self.reception = Reception(self.pc, None)

    async def start(self, http: aiohttp.ClientSession, deadline: float) -> None:
        self.pc.addTransceiver("audio", direction="recvonly")
        self.pc.addTransceiver("video", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = self.pc.localDescription.sdp
        while True:  # 503 until the programme runs (it starts with the first member)
            headers = {"Content-Type": "application/sdp"}
            async with http.post(f"{self.base_url}/whep/demo", data=offer, headers=headers) as response:
                if response.status == 201:
                    answer = await response.text()
                    break
                if response.status != 503 or time.monotonic() > deadline:
                    raise RuntimeError(f"WHEP: {response.status} {await response.text()}")
            await asyncio.sleep(1.0)
        common.assert_loopback_sdp(answer)
        self.reception.learn(answer)
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        self.reception.after_first_description()


class LoadGenerator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.media = media_set(bitrate=args.video_bitrate)
        self.pacer = Pacer()
        self.latency = LatencyLog()
        self.members: list[SyntheticMember] = []
        self.viewers: list[Viewer] = []
        self.failed: list[str] = []
        self.previous: dict[str, Any] | None = None  # the last checkpoint's counters
        self.last_pairs: dict[tuple[int, int], int] = {}  # (receiver, ssrc) -> packets at the last stats
        self.signer = None
        if args.secret_file:
            from signaling.tokens import TokenSigner

            self.signer = TokenSigner.from_file(Path(args.secret_file))

    # ------------------------------------------------------------------ the plan

    def speaks(self, index: int) -> bool:
        return index < self.args.speakers

    def camera_on(self, index: int) -> bool:
        return self.args.cameras < 0 or index < self.args.cameras

    def forwarded(self, index: int, kind: str, receiver: SyntheticMember | None = None) -> bool:
        """Must the SFU forward this member's stream (to ``receiver``, or to anyone)?"""
        if kind == "video":
            if receiver is not None and receiver.videos_selected is not None:
                return self.camera_on(index) and self.members[index].id in receiver.videos_selected
            return self.camera_on(index)
        return self.speaks(index) or self.args.scenario != "sitting"

    def token(self, index: int) -> str:
        if self.signer is None:
            return f"bench-{index}"
        role = "chair" if index == 0 else "councillor"
        return self.signer.mint("demo", f"Membre {index}", role, lifetime=3600)

    # ------------------------------------------------------------------ growing

    async def start_member(self, index: int, gate: asyncio.Semaphore, deadline: float) -> None:
        decode = 1 <= index <= self.args.decoders
        member = SyntheticMember(index, self.args.url, self.token(index), self.media, self.pacer, self.latency, decode)
        self.members.append(member)
        audio = "voice" if self.speaks(index) else self.args.silence
        baseline = self.signer is None  # MediaRelay: publish only what is forwarded (it cannot mute)
        try:
            async with gate:
                await asyncio.wait_for(member.join(), max(0.1, deadline - time.monotonic()))
                publish_audio = audio if not baseline or self.forwarded(index, "audio") else None
                publish_video = not baseline or self.camera_on(index)
                await asyncio.wait_for(member.publish(publish_audio, publish_video), max(0.1, deadline - time.monotonic()))
                if member.video is not None and not self.camera_on(index):
                    member.video.set_camera(False)
                    await member.send({"type": "set_muted", "source": "camera", "muted": True})
        except Exception as exc:
            self.failed.append(f"member {index}: {type(exc).__name__}: {exc} {member.errors[-1:]}")
            log.warning("member %d failed: %s", index, self.failed[-1])

    def missing_cameras(self, member: SyntheticMember) -> int:
        got = member.received_by_source()
        return sum(
            1 for other in self.members
            if other is not member and other.video is not None and self.forwarded(other.index, "video", member)
            and got.get((other.id, "video"), 0) == 0
        )  # fmt: skip

    async def grow(self, target: int, timeout: float) -> dict[str, Any]:
        started = time.monotonic()
        deadline = started + timeout
        gate = asyncio.Semaphore(self.args.concurrency)
        first = len(self.members)
        await asyncio.gather(*(self.start_member(i, gate, deadline) for i in range(first, target)))
        chair = self.members[0].id if self.members and self.camera_on(0) else None
        for member in self.members:
            if member.decode and chair is not None and member.decode_from != [chair]:
                member.decode_cameras([chair])
        while any(self.missing_cameras(m) for m in self.members) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        ok = sum(1 for m in self.members if m.id is not None and not self.missing_cameras(m))
        return {"members": len(self.members), "ok": ok, "failed": self.failed[-5:], "seconds": time.monotonic() - started}

    async def arrange(self, timeout: float = 30.0) -> dict[str, Any]:
        """The chair mutes every microphone but the speakers' (sitting); the SFU enforces it."""
        started = time.monotonic()
        if self.args.scenario != "sitting" or self.signer is None or not self.members:
            return {"forced_muted": 0, "seconds": 0.0}
        chair = self.members[0]
        wanted = {f"{m.id}:mic" for m in self.members if not self.speaks(m.index) and m.audio is not None}
        await chair.send({"type": "mute_all"})
        for member in self.members[1 : self.args.speakers]:
            await chair.send({"type": "mute", "participant_id": member.id, "source": "mic", "muted": False})
        while {x for x in chair.forced_muted if x.endswith(":mic")} != wanted:
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"the chair's mutes did not take: {chair.errors[-3:]}")
            await asyncio.sleep(0.1)
        return {"forced_muted": len(wanted), "seconds": time.monotonic() - started}

    async def add_viewers(self, target: int, timeout: float) -> dict[str, Any]:
        started = time.monotonic()
        deadline = started + timeout
        gate = asyncio.Semaphore(self.args.concurrency)
        failures: list[str] = []

        async def one() -> None:
            viewer = Viewer(self.args.url)
            try:
                async with gate, aiohttp.ClientSession() as http:
                    await viewer.start(http, deadline)
                while not viewer.reception.totals().get("video", [0])[0]:
                    if time.monotonic() > deadline:
                        raise TimeoutError("no programme video")
                    await asyncio.sleep(0.2)
                self.viewers.append(viewer)
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                await viewer.pc.close()

        await asyncio.gather(*(one() for _ in range(len(self.viewers), target)))
        return {"viewers": len(self.viewers), "failed": failures[:5], "seconds": time.monotonic() - started}

    # ------------------------------------------------------------------ measuring

    async def send_reports(self) -> None:
        """Each receiving connection sends a receiver report about once a second."""
        while True:
            receptions = [m.reception for m in self.members if m.reception] + [v.reception for v in self.viewers]
            for reception in receptions:
                reception.send_report()
                await asyncio.sleep(1.0 / max(1, len(receptions)))
            if not receptions:
                await asyncio.sleep(1.0)

    def counters(self) -> dict[str, Any]:
        members = [m for m in self.members if m.id is not None]
        sent = {(m.id, kind): s.sent for m in members for kind, s in (("audio", m.audio), ("video", m.video)) if s}
        received = {m.id: m.received_by_source() for m in members}
        return {"sent": sent, "received": received}

    def arrived(self) -> int:
        return sum(m.reception.counter.bytes for m in self.members if m.reception)

    async def checkpoint(self) -> dict[str, Any]:
        paused_at = self.pacer.pause()
        last, quiet, deadline = -1, 0, time.monotonic() + MAX_DRAIN
        while quiet < 2 and time.monotonic() < deadline:  # until nothing more arrives for 2 x 0.1 s
            await asyncio.sleep(0.1)
            now_arrived = self.arrived()
            quiet = quiet + 1 if now_arrived == last else 0
            last = now_arrived
        now = self.counters()
        self.pacer.resume(paused_at)
        result: dict[str, Any] = {"pairs": 0, "expected": 0, "received": 0, "mismatched": 0, "examples": []}
        before, self.previous = self.previous, now
        self.latency.reset()
        self.pacer.reset_counters()
        if before is None:
            return result
        index = {m.id: m.index for m in self.members}
        by_id = {m.id: m for m in self.members}
        for receiver, got in now["received"].items():
            for (owner, kind), sent in now["sent"].items():
                if owner == receiver:
                    continue
                delta_sent = sent - before["sent"].get((owner, kind), 0)
                expected = delta_sent if self.forwarded(index[owner], kind, by_id[receiver]) else 0
                delta_got = got.get((owner, kind), 0) - before["received"].get(receiver, {}).get((owner, kind), 0)
                result["pairs"] += 1
                result["expected"] += expected
                result["received"] += delta_got
                if delta_got != expected:
                    result["mismatched"] += 1
                    if len(result["examples"]) < 5:
                        result["examples"].append(
                            f"member {index[receiver]} got {delta_got} {kind} from member {index[owner]}, "
                            f"expected {expected}"
                        )
        return result

    def stats(self) -> dict[str, Any]:
        received = {"audio": [0, 0], "video": [0, 0]}
        viewers = {"audio": [0, 0], "video": [0, 0]}
        active = rtcp = 0
        pairs: dict[tuple[int, int], int] = {}
        receptions = [(m.index, m.reception, received) for m in self.members if m.reception]
        receptions += [(-1 - i, v.reception, viewers) for i, v in enumerate(self.viewers)]
        for number, reception, into in receptions:
            rtcp += reception.counter.rtcp
            for kind, (packets, highest) in reception.totals().items():
                if kind in into:
                    into[kind][0] += packets
                    into[kind][1] += highest
            for ssrc, packets in reception.received_by_ssrc().items():
                pairs[(number, ssrc)] = packets
                active += packets > self.last_pairs.get((number, ssrc), packets)
        self.last_pairs = pairs
        sent = {"audio": 0, "video": 0}
        for member in self.members:
            for kind, sender in (("audio", member.audio), ("video", member.video)):
                if sender is not None:
                    sent[kind] += sender.sent
        samples = np.array(self.latency.samples) if self.latency.samples else None
        decoders = [m.reception for m in self.members if m.decode and m.reception]
        return {
            "t": time.monotonic(),
            "members": len(self.members),
            "viewers": len(self.viewers),
            "sent": sent,
            "received": received,
            "viewer_received": viewers,
            "active_streams": active,
            "rtcp_received": rtcp,
            "latency_us": None if samples is None else {
                "n": int(samples.size), "p50": float(np.percentile(samples, 50)),
                "p99": float(np.percentile(samples, 99)), "max": float(samples.max()),
            },
            "pacer": {"ticks": self.pacer.ticks, "late": self.pacer.late, "worst_ms": self.pacer.worst_ms},
            "decoded_frames": sum(r.frames for r in decoders),
            "counter_skips": sum(r.skips for r in decoders),
            "bad_frames": sum(r.bad_size for r in decoders),
            "member_errors": [e for m in self.members for e in m.errors][-5:],
        }  # fmt: skip

    async def close(self) -> None:
        await self.pacer.close()
        await asyncio.gather(*(m.close() for m in self.members), return_exceptions=True)
        await asyncio.gather(*(v.pc.close() for v in self.viewers), return_exceptions=True)


async def run(args: argparse.Namespace) -> None:
    generator = LoadGenerator(args)
    reports = asyncio.get_running_loop().create_task(generator.send_reports())
    say("SCENARIO LOADGEN READY", {"video_kbps": round(generator.media.camera.bitrate / 1000)})
    try:
        async for line in commands():
            word, *rest = line.split()
            if word == "grow":
                say("GROWN", await generator.grow(int(rest[0]), float(rest[1])))
            elif word == "arrange":
                say("ARRANGED", await generator.arrange())
            elif word == "viewers":
                say("VIEWERS", await generator.add_viewers(int(rest[0]), float(rest[1])))
            elif word == "checkpoint":
                say("CHECKED", await generator.checkpoint())
            elif word == "stats":
                say("STATS", generator.stats())
            elif word == "quit":
                break
    finally:
        reports.cancel()
        await asyncio.wait_for(generator.close(), 30)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scenario_loadgen")
    parser.add_argument("--url", required=True)
    parser.add_argument("--secret-file", help="mint Hemicycle invitations with this key (none: MediaRelay baseline)")
    parser.add_argument("--scenario", choices=["sitting", "stress", "broadcast"], default="sitting")
    parser.add_argument("--speakers", type=int, default=3)
    parser.add_argument("--cameras", type=int, default=-1, help="cameras on (-1: all)")
    parser.add_argument("--silence", choices=["frames", "dtx"], default="frames")
    parser.add_argument("--decoders", type=int, default=2)
    parser.add_argument("--video-bitrate", type=int, default=500_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiortc.rtcrtpreceiver").setLevel(logging.ERROR)  # decoders joining mid-GOP
    common.restrict_to_loopback()
    glue.install()
    install_quiet_receivers()
    if args.uvloop:
        common.install_uvloop()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

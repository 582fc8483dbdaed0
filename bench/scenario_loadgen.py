"""The scenario load generator: one process of synthetic members (and WHEP viewers).

``python -m bench.scenario_loadgen --url URL --scenario sitting|stress|broadcast [--secret-file F]
[--process p --processes P] ...`` (started by ``bench.scenario``, through bench/scenario_fleet.py).
Member index ``i`` lives in process ``i % P``: each process starts and grows only its own.
Member 0 is the chair; members ``0..speakers-1`` speak; members ``0..cameras-1`` keep their camera on
(all by default), the others turn it off (``set_muted``); each member receives the videos the server
selects for it (``video_selection``: at most the server's ``media.max_videos``, which ``bench.scenario
--videos`` sets); members ``1..decoders`` decode the chair's camera (if it is on). stdin commands, one
JSON answer each:

* ``grow N TIMEOUT`` → ``GROWN``: this process's members among ``0..N-1``, until each receives every
  camera of its ``video_selection``, and as many as the plan says it will hold (bench/scenario_check.py);
* ``roster`` → ``ROSTER``: ``{"members": {index: {"id", "audio"}}}`` of this process's members;
* ``decode CHAIR_ID`` → ``DECODING``: the decoders decode that participant's camera;
* ``arrange {"unmute": [ids], "speaking": [ids], "muted": ["id:mic", ...]}`` → ``ARRANGED``: ``sitting``,
  the process holding the chair: it mutes everyone (``mute_all``), unmutes ``unmute`` and waits until the
  sitting state's forced-muted microphones include ``muted`` and none of ``speaking``; elsewhere nothing;
* ``viewers M TIMEOUT`` → ``VIEWERS``: WHEP viewers of the programme up to M (in this process);
* ``pause`` → ``PAUSED``; ``drain`` → ``DRAINED`` (until nothing more arrives); ``counters`` →
  ``COUNTERS`` (packets sent per publisher and kind, received per receiver, publisher and kind, each
  receiver's ``video_selection``, each member's index); ``resume`` → ``RESUMED`` (latency samples and
  pacer counters reset): the orchestrator pauses every process, then compares (the exact check);
* ``stats`` → ``STATS``: counters for rates, a latency histogram, pacer health.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

from sfu import aiortc_glue as glue

from . import common
from .procs import commands, say
from .scenario_check import Plan, histogram
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
        self.plan = Plan(args.scenario, args.speakers, args.cameras, args.videos)
        self.media = media_set(bitrate=args.video_bitrate)
        self.pacer = Pacer()
        self.latency = LatencyLog()
        self.members: list[SyntheticMember] = []  # this process's: indices i with i % processes == process
        self.viewers: list[Viewer] = []
        self.failed: list[str] = []
        self.broken: set[int] = set()  # indices of the members that failed to join or publish
        self.paused_at: float | None = None
        self.last_pairs: dict[tuple[int, int], int] = {}  # (receiver, ssrc) -> packets at the last stats
        self.signer = None
        if args.secret_file:
            from signaling.tokens import TokenSigner

            self.signer = TokenSigner.from_file(Path(args.secret_file))

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
        audio = "voice" if self.plan.speaks(index) else self.args.silence
        baseline = self.signer is None  # MediaRelay: publish only what is forwarded (it cannot mute)
        try:
            async with gate:
                await asyncio.wait_for(member.join(), max(0.1, deadline - time.monotonic()))
                publish_audio = audio if not baseline or self.plan.forwarded(index, "audio") else None
                publish_video = not baseline or self.plan.camera_on(index)
                await asyncio.wait_for(
                    member.publish(publish_audio, publish_video), max(0.1, deadline - time.monotonic())
                )
                if member.video is not None and not self.plan.camera_on(index):
                    member.video.set_camera(False)
                    await member.send({"type": "set_muted", "source": "camera", "muted": True})
        except Exception as exc:
            self.broken.add(index)
            self.failed.append(f"member {index}: {type(exc).__name__}: {exc} {member.errors[-1:]}")
            log.warning("member %d failed: %s", index, self.failed[-1])

    def missing_cameras(self, member: SyntheticMember, members: int) -> int:
        """Cameras ``member`` should receive but does not (yet), in a room of ``members``.

        Hemicycle: every camera of its ``video_selection`` (the server's choice), which must be as
        large as the plan allows (or it is not final yet: members still joining in other processes).
        The baseline has no selection: every other camera that is on (by index, as the plan says)."""
        got = member.received_by_source()
        wanted = self.plan.cameras_to_receive(member.index, members)
        if member.videos_selected is None:
            receiving = {owner for (owner, kind), n in got.items() if kind == "video" and n and owner != member.id}
            return max(0, wanted - len(receiving))
        selected = member.videos_selected - {member.id}
        missing = sum(1 for owner in selected if got.get((owner, "video"), 0) == 0)
        return missing + max(0, wanted - len(selected))

    async def grow(self, target: int, timeout: float) -> dict[str, Any]:
        started = time.monotonic()
        deadline = started + timeout
        gate = asyncio.Semaphore(self.args.concurrency)
        have = {m.index for m in self.members}
        mine = [i for i in range(target) if i % self.args.processes == self.args.process and i not in have]
        await asyncio.gather(*(self.start_member(i, gate, deadline) for i in mine))
        working = [m for m in self.members if m.index not in self.broken]  # the failed ones are reported
        while any(self.missing_cameras(m, target) for m in working) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        lagging = {m.index: self.missing_cameras(m, target) for m in self.members}
        ok = sum(1 for m in self.members if m.id is not None and not lagging[m.index])
        lagging = {i: n for i, n in lagging.items() if n}  # index -> cameras missing (the first 10)
        return {"members": len(self.members), "ok": ok, "failed": self.failed[-5:],
                "lagging": dict(list(lagging.items())[:10]), "seconds": time.monotonic() - started}  # fmt: skip

    def roster(self) -> dict[str, Any]:
        return {"members": {m.index: {"id": m.id, "audio": m.audio is not None} for m in self.members if m.id}}

    def decode(self, chair: str) -> dict[str, Any]:
        decoders = [m for m in self.members if m.decode]
        for member in decoders:
            if member.decode_from != [chair]:
                member.decode_cameras([chair])
        return {"decoders": len(decoders)}

    async def arrange(self, wanted: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """The chair mutes every microphone but the speakers' (sitting); the SFU enforces it."""
        started = time.monotonic()
        chair = next((m for m in self.members if m.index == 0), None)
        if self.args.scenario != "sitting" or self.signer is None or chair is None:
            return {"forced_muted": 0, "seconds": 0.0}
        muted, speaking = set(wanted["muted"]), {f"{x}:mic" for x in wanted["speaking"]}
        await chair.send({"type": "mute_all"})
        for participant in wanted["unmute"]:
            await chair.send({"type": "mute", "participant_id": participant, "source": "mic", "muted": False})
        # (a member that failed publishing may still have a microphone on the server: muted too, not counted)
        while not muted <= (forced := {x for x in chair.forced_muted if x.endswith(":mic")}) or forced & speaking:
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"the chair's mutes did not take: {chair.errors[-3:]}")
            await asyncio.sleep(0.1)
        return {"forced_muted": len(muted), "seconds": time.monotonic() - started}

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
        """Packets so far: sent per (publisher, kind), received per (receiver, publisher, kind); selections."""
        members = [m for m in self.members if m.id is not None]
        sent = {m.id: {kind: s.sent for kind, s in (("audio", m.audio), ("video", m.video)) if s} for m in members}
        received: dict[str, dict[str, dict[str, int]]] = {}
        for member in members:
            got = received[member.id] = {}
            for (owner, kind), packets in member.received_by_source().items():
                if owner is not None:
                    got.setdefault(owner, {})[kind] = packets
        selected = {m.id: None if m.videos_selected is None else sorted(m.videos_selected) for m in members}
        return {"sent": sent, "received": received, "selected": selected, "index": {m.id: m.index for m in members}}

    def arrived(self) -> int:
        return sum(m.reception.counter.bytes for m in self.members if m.reception)

    def pause(self) -> dict[str, Any]:
        if self.paused_at is None:
            self.paused_at = self.pacer.pause()
        return {"t": self.paused_at}

    async def drain(self) -> dict[str, Any]:
        """Until nothing more arrives for 2 x 0.1 s (at most MAX_DRAIN s)."""
        started = time.monotonic()
        last, quiet, deadline = -1, 0, started + MAX_DRAIN
        while quiet < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            now_arrived = self.arrived()
            quiet = quiet + 1 if now_arrived == last else 0
            last = now_arrived
        return {"seconds": time.monotonic() - started, "quiet": quiet >= 2}

    def resume(self) -> dict[str, Any]:
        if self.paused_at is not None:
            self.pacer.resume(self.paused_at)
            self.paused_at = None
        self.latency.reset()
        self.pacer.reset_counters()
        return {"t": time.monotonic()}

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
            "latency": histogram(self.latency.samples),
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
            word, _, rest = line.partition(" ")
            words = rest.split()
            if word == "grow":
                say("GROWN", await generator.grow(int(words[0]), float(words[1])))
            elif word == "roster":
                say("ROSTER", generator.roster())
            elif word == "decode":
                say("DECODING", generator.decode(words[0]))
            elif word == "arrange":
                say("ARRANGED", await generator.arrange(json.loads(rest)))
            elif word == "viewers":
                say("VIEWERS", await generator.add_viewers(int(words[0]), float(words[1])))
            elif word == "pause":
                say("PAUSED", generator.pause())
            elif word == "drain":
                say("DRAINED", await generator.drain())
            elif word == "counters":
                say("COUNTERS", generator.counters())
            elif word == "resume":
                say("RESUMED", generator.resume())
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
    parser.add_argument("--videos", type=int, default=-1, help="videos each member receives at most (-1: all)")
    parser.add_argument("--process", type=int, default=0, help="this process's number p: members i % P == p")
    parser.add_argument("--processes", type=int, default=1, help="load-generator processes P")
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

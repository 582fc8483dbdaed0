"""The public programme's figures: CPU, lip-sync over a long run, viewers' delay behind live.

    python -m bench.programme --duration 1800        # the reference run (30 minutes)
    python -m bench.programme --duration 60          # a quick look

Runs the real server (``bench.hemiserver``, programme at its defaults: 1280x720@30) in
a private network namespace, with ``--members`` aiortc members (one of them the
chamber, shown when nobody holds the floor) and ``--viewers`` WHEP viewers (aiortc,
decoding). The chamber's source is a *sync source*: every ``PERIOD`` seconds of wall
time its picture flashes white and its sound beeps at 1 kHz for 200 ms, both drawn at
the same instant. From that:

- A/V offset: in the recording (the HLS segments, decoded with PyAV), each flash's video
  pts minus the matching beep's audio pts; first 5 minutes against last 5 minutes.
- WHEP delay: when a viewer decodes the beep (and the flash) minus the wall time it was
  made; HLS delay: when the segment holding the beep appears in the playlist minus the
  beep's wall time (a player adds its own live margin: hls.js waits 3 segments).
- CPU: the worker process (decode + mix + compose + encode) and the server process,
  user+sys over the run after a warm-up, in % of one core; the worker's encode times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import psutil
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

from bench import common
from bench.churn import free_port, start_server
from bench.orchestration import ensure_private_network, log
from signaling.tokens import TokenSigner
from tests.peers import Peer

RESULTS = Path(__file__).resolve().parent / "results"
PERIOD, PULSE = 2.0, 0.2
BEEP_HZ = 1000.0


def pulsing(t: float) -> bool:
    return (t % PERIOD) < PULSE


class FlashVideo(VideoStreamTrack):
    """640x480: white during each pulse, dark grey otherwise, drawn from the wall clock."""

    def __init__(self) -> None:
        super().__init__()
        self.frames = {on: np.full((480, 640, 3), 235 if on else 40, np.uint8) for on in (True, False)}

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame.from_ndarray(self.frames[pulsing(time.time())], format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


class BeepAudio(AudioStreamTrack):
    """20 ms frames of 48 kHz mono: a 1 kHz beep during each pulse, silence otherwise."""

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()  # paced, with pts
        now = time.time()
        offsets = now + np.arange(frame.samples) / 48000
        wave = np.where((offsets % PERIOD) < PULSE, 12000 * np.sin(2 * np.pi * BEEP_HZ * offsets), 0)
        frame.planes[0].update(wave.astype(np.int16).tobytes())
        return frame


class Viewer:
    """A WHEP viewer that notes when each beep and flash reaches it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "audio" or "video": aiortc decodes what it receives, and a 720p H.264 decode
        self.pc = RTCPeerConnection()  # in the same process would delay the sound it measures
        self.beeps: list[float] = []
        self.flashes: list[float] = []
        self.frames = 0
        self.pc.on("track", self._on_track)

    def _on_track(self, track: Any) -> None:
        asyncio.get_running_loop().create_task(self._read(track))

    async def _read(self, track: Any) -> None:
        loud = bright = False
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            now = time.time()
            if isinstance(frame, av.VideoFrame):
                self.frames += 1
                plane = frame.to_ndarray(format="gray")
                h, w = plane.shape
                on = float(plane[h // 4 : h // 2, w // 4 : 3 * w // 4].mean()) > 140
                if on and not bright:
                    self.flashes.append(now)
                bright = on
            else:
                samples = frame.to_ndarray().astype(np.float64)
                on = float(np.sqrt(np.mean(samples**2))) > 1500
                if on and not loud:
                    self.beeps.append(now)
                loud = on

    async def start(self, url: str) -> None:
        self.pc.addTransceiver(self.kind, direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with aiohttp.ClientSession() as http:
            for _ in range(60):  # 503 until the worker is ready
                async with http.post(
                    url, data=self.pc.localDescription.sdp, headers={"Content-Type": "application/sdp"}
                ) as response:
                    if response.status == 201:
                        answer = await response.text()
                        break
                    if response.status != 503:
                        raise RuntimeError(f"WHEP refused: {response.status} {await response.text()}")
                await asyncio.sleep(0.5)
            else:
                raise RuntimeError("WHEP: the programme did not start")
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))


def delays(arrivals: list[float], since: float) -> list[float]:
    """Each arrival minus the pulse that made it (the latest multiple of PERIOD before it)."""
    return [(t - (t // PERIOD) * PERIOD) * 1000 for t in arrivals if t > since]


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(values, q)), 1)


def recording_offsets(run: Path, upstream: list[float]) -> list[tuple[float, float]]:
    """(time into the recording, flash pts - beep pts in ms) for each pulse in the recording.

    Adds to ``upstream`` each beep's delay from its making (a multiple of PERIOD in wall
    time) to the programme's clock: the member's send, the SFU and the worker's jitter buffer.
    """
    flashes: list[float] = []
    beeps: list[float] = []
    bright = loud = False
    for segment in sorted(run.glob("seg*.ts")):
        with av.open(str(segment)) as container:
            for frame in container.decode(video=0, audio=0):
                assert frame.time is not None
                if isinstance(frame, av.VideoFrame):
                    plane = frame.to_ndarray(format="gray")
                    h, w = plane.shape
                    on = float(plane[h // 4 : h // 2, w // 4 : 3 * w // 4].mean()) > 140
                    if on and not bright:
                        flashes.append(frame.time)
                    bright = on
                else:
                    samples = frame.to_ndarray().astype(np.float64)
                    on = float(np.sqrt(np.mean(samples**2))) > 0.05 * (32768 if samples.max() > 2 else 1)
                    if on and not loud:
                        beeps.append(frame.time)
                    loud = on
    started = json.loads((run / "recording.json").read_text())["started_at"]
    upstream.extend(((started + beep) % PERIOD) * 1000 for beep in beeps)
    pairs = []
    for flash in flashes:
        beep = min(beeps, key=lambda b: abs(b - flash), default=None)
        if beep is not None and abs(beep - flash) < PERIOD / 2:
            pairs.append((flash, (flash - beep) * 1000))
    return pairs


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="hemicycle-programme-"))
    port = free_port()
    os.environ["HEMICYCLE_PROGRAMME__ENABLED"] = "true"
    server = await start_server(data, port)
    base = f"http://127.0.0.1:{port}"
    signer = TokenSigner((data / "secret.key").read_bytes())
    server_ps = psutil.Process(server.pid)
    peers: list[Peer] = []
    viewers: list[Viewer] = []
    try:
        chamber = Peer(base, signer.mint("demo", "Salle du conseil", "chamber", 7200))
        chamber.video, chamber.audio = FlashVideo(), BeepAudio()
        peers.append(chamber)
        for i in range(args.members - 1):
            peers.append(Peer(base, signer.mint("demo", f"Membre {i}", "councillor", 7200), tone=300.0 + 50 * i))
        for peer in peers:  # the others' microphones are off: the chamber is shown, its beep is the sound
            await peer.join()
            await peer.publish(audio=peer is chamber)
        worker_ps = await wait_worker(server_ps)
        for i in range(args.viewers):
            viewer = Viewer("audio" if i % 2 == 0 else "video")
            await viewer.start(f"{base}/whep/demo")
            viewers.append(viewer)
        log(f"{args.members} members, {args.viewers} WHEP viewers; warming up {args.warmup:.0f} s")
        await asyncio.sleep(args.warmup)
        t0 = time.time()
        cpu0 = {"worker": worker_ps.cpu_times(), "server": server_ps.cpu_times()}
        run_dir = next((data / "recordings" / "demo").iterdir())
        hls_delays: list[float] = []
        seen: set[str] = set()
        while time.time() - t0 < args.duration:
            await asyncio.sleep(0.25)
            hls_delays += await new_segment_delays(run_dir, seen)
            if int(time.time() - t0) % 60 == 0:
                log(f"t={time.time() - t0:.0f}s WHEP viewers: beeps {[len(v.beeps) for v in viewers]}, "
                    f"flashes {[len(v.flashes) for v in viewers]}, frames {[v.frames for v in viewers]}")
                await asyncio.sleep(1)
        elapsed = time.time() - t0
        cpu = {}
        for name, ps in (("worker", worker_ps), ("server", server_ps)):
            now = ps.cpu_times()
            cpu[name] = round(100 * ((now.user - cpu0[name].user) + (now.system - cpu0[name].system)) / elapsed, 1)
        async with aiohttp.ClientSession() as http, http.get(f"{base}/bench/stats") as response:
            stats = (await response.json()).get("programmes", {}).get("demo", {})
    finally:
        for viewer in viewers:
            await viewer.pc.close()
        for peer in peers:
            await peer.close()
        server.terminate()
        await server.wait()
    upstream: list[float] = []
    offsets = recording_offsets(run_dir, upstream)
    whep_beeps = [d for v in viewers for d in delays(v.beeps, t0)]
    whep_flashes = [d for v in viewers for d in delays(v.flashes, t0)]
    head = [o for t, o in offsets if t < 300]
    tail = [o for t, o in offsets if t > offsets[-1][0] - 300] if offsets else []
    return {
        "machine": common.machine_info(),
        "config": {k: v for k, v in vars(args).items() if k != "out"} | {"programme": "1280x720@30, H.264 1.5 Mbit/s (defaults)"},
        "measured_s": round(elapsed, 1),
        "cpu_percent_of_one_core": cpu,
        "worker_stats": stats,
        "av_offset_ms": {"pulses": len(offsets), "first_5min_mean": mean(head), "last_5min_mean": mean(tail),
                         "min": min((o for _, o in offsets), default=None),
                         "max": max((o for _, o in offsets), default=None)},
        "source_to_programme_ms": {"audio_p50": pct(upstream, 50), "audio_p95": pct(upstream, 95)},
        "whep_delay_ms": {"audio_p50": pct(whep_beeps, 50), "audio_p95": pct(whep_beeps, 95),
                          "video_p50": pct(whep_flashes, 50), "video_p95": pct(whep_flashes, 95),
                          "samples": len(whep_beeps)},
        "hls_delay_ms": {"segment_available_p50": pct(hls_delays, 50), "segment_available_p95": pct(hls_delays, 95),
                         "samples": len(hls_delays)},
    }


def mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 1) if values else None


async def wait_worker(server: psutil.Process) -> psutil.Process:
    for _ in range(300):
        for child in server.children(recursive=True):
            if "sfu.programme" in " ".join(child.cmdline()):
                return child
        await asyncio.sleep(0.1)
    raise RuntimeError("the programme worker did not start")


async def new_segment_delays(run: Path, seen: set[str]) -> list[float]:
    """For each segment newly listed in the playlist: now minus the wall time of the first beep in it."""
    playlist = (run / "programme.m3u8").read_text() if (run / "programme.m3u8").exists() else ""
    found = []
    started = json.loads((run / "recording.json").read_text())["started_at"] if (run / "recording.json").exists() else 0
    for name in [line for line in playlist.splitlines() if line.endswith(".ts")]:
        if name in seen:
            continue
        seen.add(name)
        now = time.time()
        with av.open(str(run / name)) as container:
            for frame in container.decode(audio=0):
                samples = frame.to_ndarray().astype(np.float64)
                if float(np.sqrt(np.mean(samples**2))) > 0.05 * (32768 if samples.max() > 2 else 1):
                    assert frame.time is not None
                    made = started + frame.time
                    found.append((now - made) * 1000)
                    break
    return found


def markdown(result: dict[str, Any]) -> str:
    m, cfg = result["machine"], result["config"]
    cpu, av_, whep, hls = (result["cpu_percent_of_one_core"], result["av_offset_ms"], result["whep_delay_ms"],
                           result["hls_delay_ms"])
    stats = result["worker_stats"]
    return "\n".join([
        f"# Programme, {time.strftime('%Y-%m-%d')}",
        "",
        f"Machine: {m['cpu_model']}, {m['usable_cpus']} usable CPUs, {m['memory_gb']} GB; Python {m['python']}. "
        "Loopback, private network namespace.",
        f"Load: {cfg['members']} aiortc members (one the chamber: 640x480 flash + beep sync source; the others "
        f"320x240 camera, microphone off), {cfg['viewers']} WHEP viewers (aiortc, decoding; half audio-only, half video-only), programme {cfg['programme']}, "
        f"measured over {result['measured_s']} s after {cfg['warmup']} s warm-up.",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| worker CPU (decode + mix + compose + encode), % of one core | {cpu['worker']} |",
        f"| server CPU (signaling + SFU + WHEP forwarding), % of one core | {cpu['server']} |",
        f"| encode+compose time p50 / p99, ms per frame | {stats.get('encode_ms_p50')} / {stats.get('encode_ms_p99')} |",
        f"| video frames skipped (worker behind) | {stats.get('video_skipped')} |",
        f"| A/V offset in the recording (flash − beep), first 5 min mean, ms | {av_['first_5min_mean']} |",
        f"| A/V offset, last 5 min mean, ms | {av_['last_5min_mean']} |",
        f"| A/V offset min / max over {av_['pulses']} pulses, ms | {av_['min']} / {av_['max']} |",
        f"| member's sound to the programme's clock, p50 / p95, ms | {result['source_to_programme_ms']['audio_p50']} / "
        f"{result['source_to_programme_ms']['audio_p95']} |",
        f"| WHEP delay behind live, sound p50 / p95, ms | {whep['audio_p50']} / {whep['audio_p95']} |",
        f"| WHEP delay behind live, picture p50 / p95, ms | {whep['video_p50']} / {whep['video_p95']} |",
        f"| HLS: segment listed after its first sound, p50 / p95, ms | {hls['segment_available_p50']} / "
        f"{hls['segment_available_p95']} |",
        "",
        "A/V offset > 0: the picture comes later than the sound. HLS players add their live margin to the "
        "segment delay (hls.js: 3 target durations, 6 s with 2 s segments).",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.programme", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=1800.0)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--viewers", type=int, default=2, help="WHEP viewers: audio-only, video-only, audio-only...")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--allow-host-network", action="store_true")
    args = parser.parse_args()
    network = ensure_private_network(sys.argv[1:], args.allow_host_network, module="bench.programme")
    log(f"network: {network}")
    common.restrict_to_loopback()
    result = asyncio.run(run(args))
    out = args.out or RESULTS / f"programme-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(markdown(result) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

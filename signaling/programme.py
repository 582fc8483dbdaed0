"""The public programme of one sitting: its worker process, its taps and its viewers.

The worker (``python -m sfu.programme``) decodes only what it shows, mixes, captions
and encodes once; the SFU feeds it by plain RTP on loopback (one tap per member
track) and forwards what it sends back (H.264 + Opus) to every WHEP viewer. Its
HLS output is both the live HLS and the recording (DATA_DIR/recordings/<sitting>/<run>/).

It runs while someone is in the sitting (or the chamber's encoder publishes), stops 30 s
after the last one leaves, and
is restarted if it dies (a new run: the recording keeps every segment written).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config import Settings
from sfu.producer import ProducerSpec

from .assembly import Event
from .programme_scene import CARD_SECONDS, Tap, compose_scene, vote_card

if TYPE_CHECKING:
    from .sitting import Sitting

log = logging.getLogger(__name__)

VIDEO_PT, AUDIO_PT = 102, 111  # what the worker sends
TAP_PT = {"audio": 111, "video": 96}  # what it receives (Opus; VP8 or H.264, told apart by the source message)
IDLE_STOP = 30.0
RESTART_DELAY = 2.0
READY_TIMEOUT = 30.0


class ProgrammeUnavailable(Exception):
    """No programme runs for this sitting now (nobody in it yet, or disabled)."""


class Programme:
    def __init__(self, sitting: Sitting, settings: Settings) -> None:
        self.sitting = sitting
        self.settings = settings
        self.transport_id = f"{sitting.id}-programme"
        self.process: asyncio.subprocess.Process | None = None
        self.run_dir: Path | None = None
        self.producer_ids: list[str] = []  # video, audio: what viewers consume
        self.taps: dict[str, Tap] = {}  # member producer id -> tap
        self.viewers: set[str] = set()
        self.stats: dict[str, Any] = {}
        self._card: tuple[dict[str, Any], float] | None = None
        self._ssrcs = itertools.count(0x5000)
        self._viewer_ids = itertools.count(1)
        self._starting: asyncio.Task[None] | None = None
        self._stop_timer: asyncio.TimerHandle | None = None
        self._reader: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._closing = False
        self._last_scene: dict[str, Any] | None = None
        sitting.watchers.append(self._on_change)
        sitting.router.on("transport_failed", self._on_transport_failed)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None and bool(self.producer_ids)

    # ------------------------------------------------------------------ following the sitting

    def _wanted(self) -> bool:
        """Someone is in the sitting: a member, or only the chamber's encoder (a sitting held in the
        chamber with the public online)."""
        sitting = self.sitting
        someone = any(s.session is not None for s in sitting.seats.values()) or bool(sitting.router.list_producers())
        return self.settings.programme.enabled and someone

    def _on_change(self, events: list[Event]) -> None:
        for event in events:
            if event.type == "vote_closed":
                vote = next((v for v in self.sitting.state.votes if v.id == event.data.get("vote")), None)
                if vote is not None:
                    self._card = (vote_card(vote), time.monotonic() + CARD_SECONDS)
                    asyncio.get_running_loop().call_later(CARD_SECONDS + 0.1, self._on_change, [])
        if self._wanted():
            if self._stop_timer is not None:
                self._stop_timer.cancel()
                self._stop_timer = None
            if self.process is None and self._starting is None and not self._closing:
                self._starting = asyncio.get_running_loop().create_task(self._start())
        elif self.process is not None and self._stop_timer is None:
            self._stop_timer = asyncio.get_running_loop().call_later(IDLE_STOP, self._idle)
        if self.running:
            self._sync_taps()
            self._send_scene()

    def _idle(self) -> None:
        self._stop_timer = None
        if not self._wanted():
            asyncio.get_running_loop().create_task(self.stop())

    def _sync_taps(self) -> None:
        router = self.sitting.router
        live = {info.id: info for info in router.list_producers() if info.source in ("mic", "camera", "screen")}
        for producer_id in [pid for pid in self.taps if pid not in live]:
            self._send({"type": "source_removed", "ssrc": self.taps.pop(producer_id).ssrc})
        for producer_id, info in live.items():
            tap = self.taps.get(producer_id)
            muted = info.paused
            if tap is None:
                ssrc = next(self._ssrcs)
                codec = info.codec or ("opus" if info.kind == "audio" else "vp8")
                self._send({"type": "source", "ssrc": ssrc, "kind": info.kind, "codec": codec,
                            "payload_type": TAP_PT[info.kind]})
                router.tap(self.transport_id, producer_id, ssrc, TAP_PT[info.kind])
                self.taps[producer_id] = Tap(info.owner, info.source, ssrc, muted)
            elif tap.muted != muted:
                self.taps[producer_id] = Tap(tap.owner, tap.source, tap.ssrc, muted)

    def scene(self) -> dict[str, Any]:
        sitting = self.sitting
        card = None
        if self._card is not None and self._card[1] > time.monotonic():
            card = self._card[0]
        names = {seat.id: seat.name for seat in sitting.seats.values()}
        names.update({m.id: m.name for m in sitting.state.members.values()})
        chamber = next((s.id for s in sitting.seats.values() if s.role == "chamber"), None)
        return compose_scene(sitting.state, sitting.title, names, list(self.taps.values()),
                             sitting.active_speaker, chamber, card)

    def _send_scene(self) -> None:
        scene = self.scene()
        if scene != self._last_scene:
            self._last_scene = scene
            self._send(scene)
        # only what the scene shows or mixes reaches the worker: at 45 members, the unshown
        # cameras would be ~2,400 packets/s forwarded and dropped (nothing of a closed session)
        shown = set(scene["audio"]) | {scene["video"]}
        wanted = {producer_id for producer_id, tap in self.taps.items() if tap.ssrc in shown}
        self.sitting.router.feed_taps(self.transport_id, wanted)

    def _send(self, message: dict[str, Any]) -> None:
        process = self.process
        if process is not None and process.stdin is not None and not process.stdin.is_closing():
            process.stdin.write(json.dumps(message, ensure_ascii=False).encode() + b"\n")

    # ------------------------------------------------------------------ the worker

    async def _start(self) -> None:
        try:
            await self._launch()
        except Exception:
            log.exception("sitting %s: the programme did not start", self.sitting.id)
            await self._cleanup()
        finally:
            self._starting = None
        self._on_change([])

    async def _launch(self) -> None:
        settings, router = self.settings.programme, self.sitting.router
        port = await router.create_plain_transport(self.transport_id)
        video_ssrc, audio_ssrc = next(self._ssrcs), next(self._ssrcs)
        args = [
            sys.executable, "-m", "sfu.programme", "--peer", f"127.0.0.1:{port}", "--sitting", self.sitting.id,
            "--width", str(settings.width), "--height", str(settings.height), "--fps", str(settings.fps),
            "--video-bitrate", str(settings.video_bitrate), "--segment-s", str(settings.hls_segment_s),
            "--video-pt", str(VIDEO_PT), "--video-ssrc", str(video_ssrc),
            "--audio-pt", str(AUDIO_PT), "--audio-ssrc", str(audio_ssrc),
        ]
        if self.settings.recording.enabled:
            run = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
            self.run_dir = self.settings.recordings_dir / self.sitting.id / run
            self.run_dir.mkdir(parents=True, exist_ok=True)
            args += ["--hls-dir", str(self.run_dir)]
        if settings.rtmp_url:
            args += ["--rtmp", settings.rtmp_url]
        self.process = process = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        assert process.stdout is not None
        ready = json.loads(await asyncio.wait_for(process.stdout.readline(), READY_TIMEOUT))
        router.connect_plain(self.transport_id, "127.0.0.1", int(ready["port"]))
        self.producer_ids = [
            router.inject(self.transport_id, _spec("video", "h264", VIDEO_PT, 90000, video_ssrc, self.sitting.id)),
            router.inject(self.transport_id, _spec("audio", "opus", AUDIO_PT, 48000, audio_ssrc, self.sitting.id)),
        ]
        self._reader = asyncio.get_running_loop().create_task(self._read(process))
        self._watchdog = asyncio.get_running_loop().create_task(self._watch_viewers())
        log.info("sitting %s: programme started (run %s)", self.sitting.id, self.run_dir and self.run_dir.name)

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict) and message.get("type") == "stats":
                self.stats = message
        await process.wait()
        if not self._closing and self.process is process:
            log.warning("sitting %s: the programme stopped (exit %s); restarting", self.sitting.id, process.returncode)
            await self._cleanup()
            await asyncio.sleep(RESTART_DELAY)
            self._on_change([])

    async def _watch_viewers(self) -> None:
        """A viewer gone without DELETE (tab closed, network lost) is closed once silent."""
        timeout, router = self.settings.media.rtcp_silence_timeout, self.sitting.router
        while True:
            await asyncio.sleep(1.0)
            for viewer in list(self.viewers):
                last = router.last_activity(f"{self.sitting.id}-whep-{viewer}")
                if last is None or time.monotonic() - last > timeout:
                    await self.close_viewer(viewer)

    async def _cleanup(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for viewer in list(self.viewers):
            await self.close_viewer(viewer)
        await self.sitting.router.close_plain_transport(self.transport_id)
        self.producer_ids = []
        self.taps.clear()
        self._last_scene = None
        self.process = None

    async def stop(self) -> None:
        """Finish the run: the worker closes its HLS playlist (the recording ends cleanly)."""
        process = self.process
        if process is None:
            return
        self._closing = True
        try:
            self._send({"type": "stop"})
            if process.stdin is not None:
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
            if self._reader is not None:
                await asyncio.gather(self._reader, return_exceptions=True)
            await self._cleanup()
        finally:
            self._closing = False

    async def close(self) -> None:
        if self._stop_timer is not None:
            self._stop_timer.cancel()
        if self._starting is not None:
            await asyncio.gather(self._starting, return_exceptions=True)
        self._closing = True
        await self.stop()

    # ------------------------------------------------------------------ WHEP viewers

    async def add_viewer(self, offer: str) -> tuple[str, str]:
        """Answer a WHEP offer; returns (viewer id, SDP answer)."""
        if not self.running:
            raise ProgrammeUnavailable("the programme of this sitting is not running")
        viewer_id = f"v{next(self._viewer_ids)}"
        transport_id = f"{self.sitting.id}-whep-{viewer_id}"
        answer = await self.sitting.router.create_viewer(transport_id, offer, self.producer_ids)
        self.viewers.add(viewer_id)
        return viewer_id, answer

    async def close_viewer(self, viewer_id: str) -> bool:
        if viewer_id not in self.viewers:
            return False
        self.viewers.discard(viewer_id)
        await self.sitting.router.close_transport(f"{self.sitting.id}-whep-{viewer_id}")
        return True

    def _on_transport_failed(self, transport_id: str) -> None:
        prefix = f"{self.sitting.id}-whep-"
        if transport_id.startswith(prefix):  # the viewer vanished (ICE consent expired)
            asyncio.get_running_loop().create_task(self.close_viewer(transport_id[len(prefix):]))


def _spec(kind: str, codec: str, payload_type: int, clock_rate: int, ssrc: int, stream_id: str) -> ProducerSpec:
    return ProducerSpec(
        mid=kind, kind=kind, source="programme", payload_type=payload_type, clock_rate=clock_rate, codec=codec,
        ssrc=ssrc, rtx_ssrc=None, rtx_payload_type=None, stream_id=f"programme-{stream_id}",
    )



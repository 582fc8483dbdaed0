"""Synthetic members: real protocol clients over real ICE/DTLS/SRTP that cost little to run.

A :class:`SyntheticMember` joins like ``tests/peers.py`` (``hello``, ``publish``,
``subscribe_offer`` → ``subscribe_answer``) with real aiortc ``RTCPeerConnection``\\ s,
but its publishing connection never encodes: aiortc's senders are parked
(``sfu.aiortc_glue.IdleTrack``) and the bench writes pre-encoded RTP into the
connection's SRTP itself (bench/synthetic_tx.py). On the wire it looks like Chromium:
the offer is renumbered to Chromium's payload types (Opus 111, VP8 96, RTX 97) and
header-extension ids (audio level 1, abs-send-time 2, MID 4) before it is sent, and the
answer is numbered back for aiortc (:class:`Renumbering`). Its receiving connection is
a sink or a decoder (bench/synthetic_rx.py); a sink answers the server's re-offers as text
(bench/synthetic_answer.py), which spares the load generator aiortc's ~100 ms per re-offer at 45 members.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy

from sfu import aiortc_glue as glue
from sfu.rtp import EXT_ABS_SEND_TIME, EXT_AUDIO_LEVEL, EXT_MID

from . import common
from .synthetic_answer import text_answer, transport_lines
from .synthetic_media import MediaSet
from .synthetic_rx import LatencyLog, Reception
from .synthetic_tx import AudioSender, Pacer, RtpWriter, VideoSender

CHROMIUM_PT = {"opus": 111, "vp8": 96, "rtx": 97}
CHROMIUM_EXT = {EXT_AUDIO_LEVEL: 1, EXT_ABS_SEND_TIME: 2, EXT_MID: 4}
CONNECT_TIMEOUT = 20.0
SEEN = 12  # message types remembered for diagnostics
log = logging.getLogger("synthetic")


def configuration() -> RTCConfiguration:
    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


class Renumbering:
    """aiortc's payload types and extension ids inside, Chromium's on the wire."""

    def __init__(self, offer: str) -> None:
        self.pts: list[dict[int, int]] = []  # per m-line: aiortc PT -> Chromium PT
        self.ext: dict[int, int] = {}
        for section in offer.split("\nm=")[1:]:
            names = {int(pt): name.lower() for pt, name in re.findall(r"^a=rtpmap:(\d+) ([^/]+)/", section, re.M)}
            apt = {int(pt): int(base) for pt, base in re.findall(r"^a=fmtp:(\d+) apt=(\d+)", section, re.M)}
            mapping = {}
            for pt, name in names.items():
                if name in CHROMIUM_PT and name != "rtx":
                    mapping[pt] = CHROMIUM_PT[name]
                elif name == "rtx" and names.get(apt.get(pt, -1)) == "vp8":
                    mapping[pt] = CHROMIUM_PT["rtx"]
            if set(mapping.values()) & (set(names) - set(mapping)):
                raise ValueError(f"Chromium's payload types collide with aiortc's: {names}")
            self.pts.append(mapping)
            for ext_id, uri in re.findall(r"^a=extmap:(\d+) (\S+)", section, re.M):
                if uri in CHROMIUM_EXT:
                    self.ext[int(ext_id)] = CHROMIUM_EXT[uri]

    def to_chromium(self, sdp: str) -> str:
        return _renumber(sdp, self.pts, self.ext)

    def to_aiortc(self, sdp: str) -> str:
        back = [{new: old for old, new in mapping.items()} for mapping in self.pts]
        return _renumber(sdp, back, {new: old for old, new in self.ext.items()})


def _renumber(sdp: str, pts: list[dict[int, int]], ext: dict[int, int]) -> str:
    def swap(mapping: dict[int, int]) -> Any:
        return lambda match: match[1] + str(mapping.get(int(match[2]), match[2]))

    out = []
    section = -1
    for line in sdp.splitlines():
        if line.startswith("m="):
            section += 1
            head = line.split(" ")
            line = " ".join(head[:3] + [str(pts[section].get(int(pt), pt)) for pt in head[3:]])
        elif section >= 0:
            line = re.sub(r"^(a=(?:rtpmap|fmtp|rtcp-fb):)(\d+)", swap(pts[section]), line)
            line = re.sub(r"(apt=)(\d+)", swap(pts[section]), line)
            line = re.sub(r"^(a=extmap:)(\d+)", swap(ext), line)
        out.append(line)
    return "\r\n".join(out) + "\r\n"


class SyntheticMember:
    def __init__(
        self,
        index: int,
        base_url: str,
        token: str,
        media: MediaSet,
        pacer: Pacer,
        latency: LatencyLog,
        decode: bool = False,
    ) -> None:
        self.index = index
        self.base_url = base_url
        self.token = token
        self.media = media
        self.pacer = pacer
        self.latency = latency
        self.decode = decode
        self.videos_selected: set[str] | None = None  # None: every camera (no video_selection: the baseline)
        self.decode_from: list[str] = []  # decoders: participant ids whose camera to decode
        self.id: str | None = None
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.publish_pc: RTCPeerConnection | None = None
        self.subscribe_pc: RTCPeerConnection | None = None
        self.reception: Reception | None = None
        self.audio: AudioSender | None = None
        self.video: VideoSender | None = None
        self.slots: dict[str, dict[str, Any]] = {}  # mid -> slot of the latest offer
        self.forced_muted: set[str] = set()  # "seat:source" from the latest sitting_state
        self.errors: list[str] = []
        self._answer: asyncio.Future[str] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._offers = asyncio.Lock()
        self.seen: list[str] = []  # the types of the latest messages read, in order (diagnostics)
        self._offer_tasks: set[asyncio.Task[None]] = set()
        self._first_answer: str | None = None  # aiortc's answer to the first offer (see bench/synthetic_answer.py)
        self._answers = 0
        self._stream_id = secrets.token_hex(8)

    # ------------------------------------------------------------------ signaling

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps(message))

    async def join(self) -> None:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.base_url.replace("http", "ws", 1) + "/ws")
        await self.send({"type": "hello", "version": 1, "token": self.token})
        welcome = await self.ws.receive_json(timeout=30)
        if welcome.get("type") != "welcome":
            raise RuntimeError(f"join refused: {welcome}")
        self.id = welcome["you"]["id"]
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self._reader.add_done_callback(self._reader_done)

    def _reader_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("member %d stopped reading its messages", self.index, exc_info=task.exception())
            self.errors.append(f"reader: {type(task.exception()).__name__}: {task.exception()}")

    async def _read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            kind = data["type"]
            self.seen.append(kind)
            del self.seen[:-SEEN]
            if kind == "publish_answer" and self._answer is not None and not self._answer.done():
                self._answer.set_result(data["sdp"])
            elif kind == "subscribe_offer":
                # answered in a task of its own, in order (the lock is fair): this loop keeps
                # reading, and so answers the server's pings in time (a pong later than half
                # the server's heartbeat and the member is dropped)
                task = asyncio.get_running_loop().create_task(self._answer_offer(data))
                self._offer_tasks.add(task)
                task.add_done_callback(self._offer_tasks.discard)
            elif kind == "subscribe_slots":  # slots re-pointed without an offer (sent once it is answered)
                self.slots = {slot["mid"]: slot for slot in data["slots"]}
                if self.decode:
                    self.decode_cameras(self.decode_from)
            elif kind == "video_selection":  # the videos the server forwards to this member
                self.videos_selected = {v["participant_id"] for v in data["videos"]}
            elif kind == "sitting_state":
                self.forced_muted = set(data.get("forced_muted", []))
            elif kind == "error":
                self.errors.append(f"{data['code']}: {data['message']}")
                if self._answer is not None and not self._answer.done():
                    self._answer.set_exception(RuntimeError(self.errors[-1]))

    async def _answer_offer(self, data: dict[str, Any]) -> None:
        async with self._offers:
            try:
                await self._on_offer(data)
            except Exception as exc:  # the server's next offer may do
                log.exception("member %d: subscribe offer %s failed", self.index, data.get("revision"))
                self.errors.append(f"subscribe offer: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ publishing

    async def publish(self, audio_mode: str | None, video: bool) -> None:
        """Publish a microphone (``audio_mode``: voice, silence or dtx; None: none) and/or a camera."""
        pc = self.publish_pc = RTCPeerConnection(configuration())
        tracks = []
        if audio_mode is not None:
            tracks.append((pc.addTransceiver(glue.IdleTrack("audio"), direction="sendonly"), "mic"))
        if video:
            transceiver = pc.addTransceiver(glue.IdleTrack("video"), direction="sendonly")
            vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType in ("video/VP8", "video/rtx")]
            transceiver.setCodecPreferences(vp8)
            tracks.append((transceiver, "camera"))
        if not tracks:
            return
        await pc.setLocalDescription(await pc.createOffer())
        common.assert_loopback_sdp(pc.localDescription.sdp)
        numbering = Renumbering(pc.localDescription.sdp)
        self._answer = asyncio.get_running_loop().create_future()
        await self.send({
            "type": "publish", "sdp": numbering.to_chromium(pc.localDescription.sdp),
            "tracks": [{"mid": t.mid, "source": source} for t, source in tracks],
        })  # fmt: skip
        try:
            answer = await asyncio.wait_for(self._answer, 30)
        except TimeoutError:
            closed = self.ws is not None and self.ws.closed
            raise TimeoutError(f"no publish_answer in 30 s; websocket {'closed' if closed else 'open'}; "
                               f"latest messages: {self.seen}") from None  # fmt: skip
        common.assert_loopback_sdp(answer)
        await pc.setRemoteDescription(RTCSessionDescription(numbering.to_aiortc(answer), "answer"))
        deadline = asyncio.get_running_loop().time() + CONNECT_TIMEOUT
        while pc.connectionState != "connected":
            if pc.connectionState == "failed" or asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"publishing connection {pc.connectionState}")
            await asyncio.sleep(0.05)
        lines = {line.mid: line for line in glue.describe_sdp(answer)}
        send = glue.make_sender(glue.dtls_of(tracks[0][0]))
        for transceiver, source in tracks:
            line = lines[transceiver.mid]
            codec = "opus" if source == "mic" else "vp8"
            payload_type = next(pt for pt, name, _, _ in line.codecs if name == codec)
            writer = RtpWriter(
                glue.sender_ssrc(transceiver), payload_type, line.extensions, transceiver.mid, source == "mic"
            )
            if source == "mic":
                self.audio = AudioSender(writer, send, transceiver, self.media, audio_mode or "silence")
                self.pacer.add(self.audio)
            else:
                self.video = VideoSender(writer, send, transceiver, self.media)
                self.pacer.add(self.video)

    # ------------------------------------------------------------------ receiving

    async def _on_offer(self, data: dict[str, Any]) -> None:
        common.assert_loopback_sdp(data["sdp"])
        if self.subscribe_pc is None:
            self.subscribe_pc = RTCPeerConnection(configuration())
            self.reception = Reception(self.subscribe_pc, self.latency, self.decode, len(self.media.camera.frames))
        pc, reception = self.subscribe_pc, self.reception
        assert reception is not None
        self.slots = {slot["mid"]: slot for slot in data["slots"]}
        reception.learn(data["sdp"])
        answer = None
        if self._first_answer is not None and not self.decode:  # a sink: the re-offer answered as text
            self._answers += 1
            answer = text_answer(data["sdp"], self._first_answer, self._stream_id, self._answers)
        if answer is None:
            await pc.setRemoteDescription(RTCSessionDescription(data["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            answer = pc.localDescription.sdp
            if transport_lines(answer) is not None:  # the first answer with an m-line: a template from now on
                self._first_answer = self._first_answer or answer
        common.assert_loopback_sdp(answer)
        if reception.dtls is None and pc.getTransceivers():  # (an offer may come before any m-line)
            reception.after_first_description()
        if self.decode:
            self.decode_cameras(self.decode_from)
        await self.send({"type": "subscribe_answer", "revision": data["revision"], "sdp": answer})

    def decode_cameras(self, owners: list[str]) -> None:
        """Decoders: decode these publishers' cameras (from now on, and after each offer)."""
        self.decode_from = owners
        if self.reception is not None:
            self.reception.decode_mids({
                mid for mid, slot in self.slots.items() if slot["kind"] == "video" and slot["participant_id"] in owners
            })  # fmt: skip

    def received_by_source(self) -> dict[tuple[str | None, str], int]:
        """Packets received so far per (publisher id, kind), from the slot table of the latest offer."""
        out: dict[tuple[str | None, str], int] = {}
        if self.reception is None:
            return out
        for ssrc, packets in self.reception.received_by_ssrc().items():
            mid, kind = self.reception.ssrcs.get(ssrc, ("", "other"))
            owner = self.slots.get(mid, {}).get("participant_id")
            out[(owner, kind)] = out.get((owner, kind), 0) + packets
        return out

    async def close(self) -> None:
        if self.reception is not None:
            self.reception.stop()
        for sender in (self.audio, self.video):
            if sender is not None:
                sender.closed = True
        with contextlib.suppress(Exception):
            await self.send({"type": "leave"})
        for pc in (self.publish_pc, self.subscribe_pc):
            if pc is not None:
                await pc.close()
        if self._reader is not None:
            self._reader.cancel()
        for task in list(self._offer_tasks):
            task.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()

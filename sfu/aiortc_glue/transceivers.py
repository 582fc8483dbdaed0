"""The m-lines as the SFU uses them: the codecs and header extensions negotiated, receivers
stopped and slimmed (the SFU taps the RTP and never decodes), senders parked on a track that
never yields (the SFU sends on them itself) and named for lip-sync."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any

import aiortc
from aiortc import MediaStreamTrack, RTCRtpTransceiver
from aiortc.jitterbuffer import JitterBuffer


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[Any]:
    return list(transceiver._codecs)


def keep_codecs(transceiver: RTCRtpTransceiver, keep: Callable[[Any], bool]) -> None:
    """Drop negotiated codecs before the answer is created (aiortc has no other hook)."""
    kept = [c for c in transceiver._codecs if keep(c)]
    primary = {c.payloadType for c in kept if c.mimeType.lower() != "video/rtx"}
    transceiver._codecs = [c for c in kept if c.mimeType.lower() != "video/rtx" or c.parameters.get("apt") in primary]


def negotiated_extensions(transceiver: RTCRtpTransceiver) -> dict[str, int]:
    return {ext.uri: ext.id for ext in transceiver._headerExtensions}


def stop_receiver_decoder(transceiver: RTCRtpTransceiver) -> None:
    """The SFU never decodes: stop the idle decoder thread aiortc started."""
    transceiver.receiver._RTCRtpReceiver__stop_decoder()  # type: ignore[attr-defined]


def slim_receiver(transceiver: RTCRtpTransceiver) -> None:
    """Drop the state of an aiortc receiver that never sees RTP (the SFU taps it on publishing
    connections; nothing arrives on a subscriber's m-lines): a video receiver's bandwidth
    estimator holds 1000 bucket objects (``RateCounter``), which every full garbage collection
    walks: at 45 members (~2200 video m-lines) ~2 M objects and ~1 s per full collection."""
    receiver = transceiver.receiver
    receiver._RTCRtpReceiver__remote_bitrate_estimator = None  # type: ignore[attr-defined]
    receiver._RTCRtpReceiver__jitter_buffer = JitterBuffer(capacity=16, prefetch=4)  # type: ignore[attr-defined]


# what a receiver whose decoder thread will never run holds instead of its own queue and event
# (a queue is a deque, three conditions and a lock: ~12 objects a full collection walks)
_IDLE_DECODER_QUEUE: queue.Queue[Any] = queue.Queue()
_IDLE_DECODER_ERROR = threading.Event()


def _share_idle_decoder_state(receiver: Any) -> None:
    """For a receiver aiortc never starts (a sending m-line): its decoder thread never exists."""
    receiver._RTCRtpReceiver__decoder_queue = _IDLE_DECODER_QUEUE
    receiver._RTCRtpReceiver__decoder_error = _IDLE_DECODER_ERROR


class IdleTrack(MediaStreamTrack):
    """A track that never yields a frame: it parks aiortc's RTP loop for a sender."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def recv(self) -> Any:
        await self._never
        raise aiortc.mediastreams.MediaStreamError

    def stop(self) -> None:
        super().stop()
        if not self._never.done():
            self._never.cancel()


def park_sender(transceiver: RTCRtpTransceiver) -> None:
    """The SFU sends on this m-line itself: aiortc's RTP loop waits on a track that never yields,
    and its RTCP loop does not run (one task per m-line sending an SR every second whether the
    slot carries anything or not: ~20 % of a core at 45 members). The transport sends the SRs
    of the slots that carry media, all in one compound packet (``rtcp.sender_reports``)."""
    sender = transceiver.sender
    sender.replaceTrack(IdleTrack(transceiver.kind))
    slim_receiver(transceiver)
    _share_idle_decoder_state(transceiver.receiver)  # a sending m-line: aiortc never starts its receiver

    async def no_rtcp_loop() -> None:  # what aiortc's stop() waits for, at once
        sender._RTCRtpSender__rtcp_started.set()  # type: ignore[attr-defined]
        sender._RTCRtpSender__rtcp_exited.set()  # type: ignore[attr-defined]

    sender._run_rtcp = no_rtcp_loop  # type: ignore[method-assign]


def answer_as_sender(transceiver: RTCRtpTransceiver) -> None:
    """A transceiver made from a remote recvonly offer (WHEP): answer sendonly, sender parked."""
    transceiver.direction = "sendonly"
    park_sender(transceiver)


def sender_cname(transceiver: RTCRtpTransceiver) -> bytes:
    """The CNAME the connection announced (set once the sender started), for SDES."""
    cname = transceiver.sender._RTCRtpSender__cname  # type: ignore[attr-defined]
    return (cname or "").encode()[:255]


def set_stream_id(transceiver: RTCRtpTransceiver, stream_id: str, track_id: str) -> None:
    """Give the slot the msid of its current publisher, so browsers keep lip-sync."""
    transceiver.sender._stream_id = stream_id
    transceiver.sender._track_id = track_id


def sender_ssrc(transceiver: RTCRtpTransceiver) -> int:
    return int(transceiver.sender._ssrc)


# in the stable state aiortc keeps the offer as "pending" (ours on a receiving connection, the
# browser's on a sending one) and the answer as "current": every one of them is kept
_DESCRIPTIONS = tuple(f"_RTCPeerConnection__{state}{side}Description"
                      for state in ("current", "pending") for side in ("Local", "Remote"))


def _applied(pc: aiortc.RTCPeerConnection) -> bool:
    """aiortc has started every sender and receiver the negotiation asked for (its connect step,
    which runs after DTLS is up, reads the remote description's SSRC lines)."""
    for transceiver in pc.getTransceivers():
        direction = transceiver.currentDirection or "inactive"
        if direction in ("recvonly", "sendrecv") and not transceiver.receiver._RTCRtpReceiver__started:  # type: ignore[attr-defined]
            return False
        if direction in ("sendonly", "sendrecv") and not transceiver.sender._RTCRtpSender__started:  # type: ignore[attr-defined]
            return False
    return True


def slim_descriptions(pc: aiortc.RTCPeerConnection) -> int:
    """Once a negotiation is over and applied, keep of aiortc's parsed descriptions only
    what it reads again (each m-line's kind, mid and ICE candidates: the next offer's order, late
    candidates); returns the m-lines slimmed, or -1 if it is too early (try again later).

    Each m-line's description holds its codecs with their feedback, fingerprints, ICE and DTLS
    parameters, SSRC lines: ~45 objects every full garbage collection walks, twice (local and
    remote) per m-line: at 45 members ~400,000 of the ~900,000 (bench/README.md, "Memory").
    After this, ``pc.localDescription``/``remoteDescription`` no longer print a usable SDP: the
    SFU reads the description it sends right after ``setLocalDescription``, before slimming."""
    if pc.signalingState != "stable" or not _applied(pc):
        return -1
    slimmed = 0
    for name in _DESCRIPTIONS:
        description = getattr(pc, name, None)
        if description is None or not description.media:
            continue
        first = description.media[0]
        for media in description.media:
            if not media.rtp.codecs and media.dtls is first.dtls:
                continue  # slimmed after an earlier negotiation
            media.rtp = aiortc.RTCRtpParameters(muxId=media.rtp.muxId)  # a new one: aiortc may share the old
            media.dtls, media.ice = first.dtls, first.ice  # one BUNDLE transport: the same for every m-line
            media.ssrc, media.ssrc_group, media.fmt = [], [], []
            slimmed += 1
    return slimmed

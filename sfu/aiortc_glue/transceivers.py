"""The m-lines as the SFU uses them: the codecs and header extensions negotiated, receivers
stopped and slimmed (the SFU taps the RTP and never decodes), senders parked on a track that
never yields (the SFU sends on them itself) and named for lip-sync."""

from __future__ import annotations

import asyncio
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

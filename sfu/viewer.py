"""A viewer's connection made from the viewer's own offer (WHEP, RFC 9725).

Members' subscribing connections are offered by the SFU (:class:`RecvTransport`);
a WHEP player offers instead, with one recvonly audio and one recvonly video
m-line, and gets an answer with every ICE candidate in it (no trickle). Once
answered it is a :class:`RecvTransport` like any other: its two slots take the
programme's consumers, and RTCP (PLI, NACK) works as for members.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCSessionDescription

from . import aiortc_glue as glue
from .consumer import Slot
from .errors import NegotiationError
from .sdp_munging import as_announced, drop_unusable_candidates
from .transport import RecvTransport

# What the programme sends: H.264 constrained baseline in packetization mode 1, and Opus.
VIEWER_CODECS = {"audio": "audio/opus", "video": "video/h264"}


def _usable(codec: Any, kind: str) -> bool:
    if codec.mimeType.lower() != VIEWER_CODECS[kind]:
        return False
    if kind == "video":
        params = codec.parameters
        profile = str(params.get("profile-level-id", "42e01f")).lower()
        return str(params.get("packetization-mode", "0")) == "1" and profile[:2] == "42"
    return True


class ViewerTransport(RecvTransport):
    """Receive-only connection for a WHEP player; at most one audio and one video slot."""

    async def answer(self, offer: str) -> str:
        try:
            lines = glue.describe_sdp(offer)
        except ValueError as exc:
            raise NegotiationError("bad_sdp", str(exc)) from exc
        kinds = [line.kind for line in lines]
        if sorted(set(kinds)) != sorted(kinds) or not set(kinds) <= {"audio", "video"} or not kinds:
            raise NegotiationError("bad_sdp", "a WHEP offer has one audio and/or one video m-line")
        for line in lines:
            if line.direction not in ("recvonly", "sendrecv"):
                raise NegotiationError("bad_sdp", f"m-line {line.mid} is {line.direction}: a viewer only receives")
            if any(not 1 <= ext_id <= 14 for ext_id in line.extensions.values()):
                raise NegotiationError("bad_sdp", f"m-line {line.mid}: header extension ids must be 1 to 14")
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=drop_unusable_candidates(offer), type="offer"))
        except Exception as exc:
            raise NegotiationError("bad_sdp", f"offer refused: {exc}") from exc
        for transceiver in self.pc.getTransceivers():
            kind = transceiver.kind
            glue.keep_codecs(transceiver, lambda c, k=kind: _usable(c, k))  # type: ignore[misc]
            if not glue.negotiated_codecs(transceiver):
                wanted = "H.264 (packetization-mode=1, constrained baseline)" if kind == "video" else "Opus"
                raise NegotiationError("no_codec", f"the {kind} m-line must offer {wanted}")
            glue.answer_as_sender(transceiver)
            self.slots.append(Slot(mid=transceiver.mid or "", kind=kind, handle=transceiver))
        try:
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(answer)
        except Exception as exc:
            raise NegotiationError("no_codec", f"cannot answer: {exc}") from exc
        self._configure_slots()
        self.slim_pending = True
        return as_announced(str(self.pc.localDescription.sdp))

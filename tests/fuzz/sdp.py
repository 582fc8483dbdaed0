"""Real SDP templates from aiortc, and the line-level mutations drawn by the strategies."""

from __future__ import annotations

import ipaddress
import random
import re
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack


def _config() -> RTCConfiguration:
    return RTCConfiguration(iceServers=[])  # never aiortc's default STUN server


async def publish_templates() -> list[str]:
    """Offers for the publishing connection: audio, video (VP8+rtx, or every codec), both, three m-lines."""
    layouts: list[list[tuple[str, bool]]] = [
        [("audio", True)],
        [("video", True)],
        [("audio", True), ("video", True)],
        [("video", False), ("audio", True)],
        [("audio", True), ("video", True), ("video", True)],
        [("video", False)],
        [("audio", True), ("audio", True)],
        [("audio", True), ("video", False)],
    ]
    offers = []
    for layout in layouts:
        pc = RTCPeerConnection(_config())
        for kind, vp8_only in layout:
            track = AudioStreamTrack() if kind == "audio" else VideoStreamTrack()
            transceiver = pc.addTransceiver(track, direction="sendonly")
            if kind == "video" and vp8_only:
                codecs = RTCRtpSender.getCapabilities("video").codecs
                transceiver.setCodecPreferences([c for c in codecs if c.mimeType in ("video/VP8", "video/rtx")])
        await pc.setLocalDescription(await pc.createOffer())
        offers.append(pc.localDescription.sdp)
        await pc.close()
    return offers


async def answer_to(offer: str) -> str:
    """What a well-behaved client answers to a subscribe_offer (then the peer connection is dropped)."""
    pc = RTCPeerConnection(_config())
    try:
        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


_NUMBER = re.compile(r"\d+")


def mutate(sdp: str, ops: tuple[tuple[Any, ...], ...]) -> str:
    lines = [line for line in sdp.split("\r\n") if line]
    eol, cut = "\r\n", None
    for op in ops:
        kind, n = op[0], len(lines)
        if kind == "drop" and n > 1:
            del lines[op[1] % n]
        elif kind == "dup" and n:
            i = op[1] % n
            lines.insert(i, lines[i])
        elif kind == "swap" and n:
            i, j = op[1] % n, op[2] % n
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "shuffle":
            rest = lines[1:]
            random.Random(op[1]).shuffle(rest)
            lines = lines[:1] + rest
        elif kind == "numbers" and n:
            i = op[1] % n
            numbers = list(_NUMBER.finditer(lines[i]))
            if numbers:
                m = numbers[(op[1] // n) % len(numbers)]
                lines[i] = lines[i][: m.start()] + op[2] + lines[i][m.end() :]
        elif kind == "insert":
            lines.insert(op[1] % (n + 1), op[2].format(n=op[3], b=op[4]))
        elif kind == "huge_line":
            lines.insert(op[1] % (n + 1), "a=x-huge:" + "y" * op[2])
        elif kind == "crlf":
            eol = op[1]
        elif kind == "truncate":
            cut = op[1]
    text = eol.join(only_loopback(line) for line in lines) + eol
    if cut is not None:
        text = text[: max(1, int(len(text) * cut))]
    return text


def only_loopback(line: str) -> str:
    """Keep the SFU from sending anything off this machine: a candidate whose address is a
    valid non-loopback IP (e.g. a number mutated into ``0.0.0.1``) gets an invalid one."""
    if not line.startswith("a=candidate:"):
        return line
    fields = line.split(" ")
    if len(fields) > 4:
        try:
            address = ipaddress.ip_address(fields[4])
        except ValueError:
            return line
        if not address.is_loopback and not address.is_unspecified:
            fields[4] = "invalid.address"
    return " ".join(fields)

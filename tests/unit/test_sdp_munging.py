"""sfu/sdp_munging.py: Opus in-band FEC (and DTX, on by default: tests/test_opus_dtx_sdp.py) and VP8 ``ccm fir``
added to aiortc's answers, nothing else touched."""

from __future__ import annotations

import pytest
from aiortc.rtcrtpparameters import RTCRtcpFeedback
from aiortc.sdp import SessionDescription

from sfu.sdp_munging import improve_answer

SESSION = [
    "v=0",
    "o=- 3912345678 3912345678 IN IP4 0.0.0.0",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0 1",
    "a=msid-semantic:WMS *",
]
AUDIO = [
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8",
    "c=IN IP4 0.0.0.0",
    "a=sendrecv",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=mid:0",
    "a=msid:stream track-a",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=rtcp-mux",
    "a=ssrc:1111 cname:abc",
    "a=rtpmap:111 opus/48000/2",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=ice-ufrag:abcd",
    "a=ice-pwd:abcdefghijklmnopqrstuv",
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
    "a=setup:active",
]
VIDEO = [
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
    "c=IN IP4 0.0.0.0",
    "a=sendrecv",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=mid:1",
    "a=msid:stream track-v",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=rtcp-mux",
    "a=ssrc-group:FID 2222 3333",
    "a=ssrc:2222 cname:abc",
    "a=ssrc:3333 cname:abc",
    "a=rtpmap:96 VP8/90000",
    "a=rtcp-fb:96 nack",
    "a=rtcp-fb:96 nack pli",
    "a=rtcp-fb:96 goog-remb",
    "a=rtpmap:97 rtx/90000",
    "a=fmtp:97 apt=96",
    "a=ice-ufrag:abcd",
    "a=ice-pwd:abcdefghijklmnopqrstuv",
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
    "a=setup:active",
]


def sdp(*sections: list[str], sep: str = "\r\n") -> str:
    return sep.join(line for section in sections for line in section) + sep


def parse(text: str) -> SessionDescription:
    return SessionDescription.parse(text)


def test_adds_opus_fmtp_and_vp8_ccm_fir() -> None:
    out = improve_answer(sdp(SESSION, AUDIO, VIDEO))
    lines = out.split("\r\n")
    assert lines.count("a=fmtp:111 minptime=10;useinbandfec=1;usedtx=1") == 1
    assert lines.count("a=rtcp-fb:96 ccm fir") == 1
    audio_end = lines.index("m=video 9 UDP/TLS/RTP/SAVPF 96 97")
    fmtp = lines.index("a=fmtp:111 minptime=10;useinbandfec=1;usedtx=1")
    assert fmtp < audio_end < lines.index("a=rtcp-fb:96 ccm fir")
    assert not any(line.startswith(("a=fmtp:0", "a=fmtp:8", "a=rtcp-fb:97")) for line in lines)


def test_other_lines_untouched_and_in_order() -> None:
    original = sdp(SESSION, AUDIO, VIDEO)
    out = improve_answer(original)
    added = {"a=fmtp:111 minptime=10;useinbandfec=1;usedtx=1", "a=rtcp-fb:96 ccm fir"}
    assert [line for line in out.split("\r\n") if line not in added] == original.split("\r\n")
    assert out.endswith("\r\n") and "\n" not in out.replace("\r\n", "")


def test_output_parses_with_aiortc() -> None:
    desc = parse(improve_answer(sdp(SESSION, AUDIO, VIDEO)))
    audio, video = desc.media
    opus = next(c for c in audio.rtp.codecs if c.name == "opus")
    assert opus.payloadType == 111
    assert opus.parameters == {"minptime": 10, "useinbandfec": 1, "usedtx": "1"}  # aiortc: text
    vp8 = next(c for c in video.rtp.codecs if c.name == "VP8")
    assert RTCRtcpFeedback(type="ccm", parameter="fir") in vp8.rtcpFeedback
    assert RTCRtcpFeedback(type="nack", parameter="pli") in vp8.rtcpFeedback
    rtx = next(c for c in video.rtp.codecs if c.name == "rtx")
    assert rtx.parameters == {"apt": 96}
    assert [m.rtp.muxId for m in desc.media] == ["0", "1"]
    assert [e.uri for e in audio.rtp.headerExtensions] == [
        "urn:ietf:params:rtp-hdrext:sdes:mid", "urn:ietf:params:rtp-hdrext:ssrc-audio-level"]


def test_existing_opus_fmtp_gets_useinbandfec_appended() -> None:
    audio = [*AUDIO, "a=fmtp:111 minptime=10;stereo=1"]
    out = improve_answer(sdp(SESSION, audio))
    assert "a=fmtp:111 minptime=10;stereo=1;useinbandfec=1;usedtx=1\r\n" in out
    assert out.count("a=fmtp:111") == 1
    opus = parse(out).media[0].rtp.codecs[0]
    assert opus.parameters == {"minptime": 10, "stereo": 1, "useinbandfec": 1, "usedtx": "1"}  # usedtx: as text


def test_explicit_useinbandfec_choice_is_respected() -> None:
    audio = [*AUDIO, "a=fmtp:111 useinbandfec=0"]
    out = improve_answer(sdp(SESSION, audio))
    assert "a=fmtp:111 useinbandfec=0;usedtx=1\r\n" in out and out.count("useinbandfec") == 1


def test_existing_ccm_fir_not_duplicated() -> None:
    video = [*VIDEO, "a=rtcp-fb:96 ccm fir"]
    assert improve_answer(sdp(SESSION, video)).count("a=rtcp-fb:96 ccm fir") == 1


def test_idempotent() -> None:
    once = improve_answer(sdp(SESSION, AUDIO, VIDEO))
    assert improve_answer(once) == once


@pytest.mark.parametrize(
    ("rtpmap", "expected"),
    [("a=rtpmap:109 OPUS/48000/2", "a=fmtp:109 minptime=10;useinbandfec=1;usedtx=1"),
     ("a=rtpmap:120 vp8/90000", "a=rtcp-fb:120 ccm fir")],
)
def test_codec_names_case_insensitive_and_any_payload_type(rtpmap: str, expected: str) -> None:
    kind = "audio" if "OPUS" in rtpmap else "video"
    section = [f"m={kind} 9 UDP/TLS/RTP/SAVPF {rtpmap.split(':')[1].split()[0]}", "a=mid:0", rtpmap]
    assert expected in improve_answer(sdp(SESSION, section)).split("\r\n")


def test_other_codecs_and_session_lines_left_alone() -> None:
    video = ["m=video 9 UDP/TLS/RTP/SAVPF 102", "a=mid:0", "a=rtpmap:102 H264/90000",
             "a=fmtp:102 packetization-mode=1"]
    original = sdp(SESSION, video)
    assert improve_answer(original) == original


def test_lf_only_input_comes_back_as_crlf() -> None:
    out = improve_answer(sdp(SESSION, AUDIO, VIDEO, sep="\n"))
    assert out == improve_answer(sdp(SESSION, AUDIO, VIDEO))

"""A slot that negotiated several codecs: VP8 and H.264 forwarded with their own payload types.

Also which codec a publisher's m-line is answered with, and the payload types read
from a subscriber's answer (sfu/codecs.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from sfu.codecs import choose_publish_codec, negotiated_payload_types
from sfu.consumer import Slot
from sfu.producer import Producer, ProducerSpec
from tests.unit.test_consumer_continuity import (
    LEVEL_ID,
    MID_ID,
    OUT_IDS,
    VP8_BODY,
    Clock,
    Pub,
    Sub,
    assert_gapless,
    clock,
    make_pub,
    rtp,
    send_video,
    vp8_ids,
)

__all__ = ["clock"]  # the fixture, imported for the tests below

VP8_OUT, H264_OUT = 97, 101  # the subscriber's payload types
SSRC_OUT = 0x5105
SPS, IDR, DELTA = bytes([0x67, 0x42, 0xC0, 0x1E]), bytes([0x65, 0x88, 0x84, 0x21]), bytes([0x41, 0x9A, 0x02, 0x7F])
FU_A_IDR_START = bytes([0x7C, 0x85]) + bytes(range(60))


def make_h264_pub(ssrc: int, seq: int = 900, ts: int = 77_000) -> Pub:
    pub = Pub(producer=None, seq=seq, ts=ts)  # type: ignore[arg-type]
    spec = ProducerSpec(mid="1", kind="video", source="camera", payload_type=102, clock_rate=90000, codec="h264",
                        ssrc=ssrc, rtx_ssrc=None, rtx_payload_type=None, stream_id="chamber")
    pub.producer = Producer(f"p{ssrc}", spec, MID_ID, LEVEL_ID, pub.rtcp.append, feedback_ssrc=1)
    return pub


def send_h264(pub: Pub, clock: Clock, frames: int, key_first: bool = False) -> list[bytes]:
    """Two packets a frame (an IDR: SPS then a fragment; else two delta slices), 30 fps; the payloads sent."""
    payloads = []
    for i in range(frames):
        pair = (SPS, FU_A_IDR_START) if key_first and i == 0 else (DELTA, DELTA)
        for n, payload in enumerate(pair):
            pub.feed(rtp(pub.producer.ssrc or 0, 102, pub.seq, pub.ts, payload, marker=n == 1))
            pub.seq = (pub.seq + 1) & 0xFFFF
            payloads.append(payload)
        pub.ts += 3000
        clock.now += 1 / 30
    return payloads


def make_sub(codecs: dict[str, int] | None) -> Sub:
    slot = Slot("3", "video", handle=None)
    first = next(iter(codecs.values())) if codecs else VP8_OUT
    slot.configure(SSRC_OUT, first, OUT_IDS, 90000, codecs)
    return Sub(slot)


def test_a_slot_switches_between_vp8_and_h264_producers_seamlessly(clock: Clock) -> None:
    vp8, h264, sub = make_pub("video", 0xA0), make_h264_pub(0xB0), make_sub({"vp8": VP8_OUT, "h264": H264_OUT})
    sub.consume(vp8, "c1")
    send_video(vp8, clock, 3, picture_id=500, tl0=20, key_first=True)
    sub.slot.consumer.close()  # type: ignore[union-attr]
    sub.consume(h264, "c2")
    send_h264(h264, clock, 1)  # a delta: not forwarded, a keyframe is asked for
    assert h264.plis() == 1
    payloads = send_h264(h264, clock, 3, key_first=True)
    sub.slot.consumer.close()  # type: ignore[union-attr]
    sub.consume(vp8, "c3")
    send_video(vp8, clock, 2, picture_id=900, tl0=40, key_first=True)
    views = sub.views()
    assert len(views) == 3 + 6 + 2
    assert_gapless(views)
    assert {v.ssrc for v in views} == {SSRC_OUT}
    assert [v.payload_type for v in views] == [VP8_OUT] * 3 + [H264_OUT] * 6 + [VP8_OUT] * 2
    h264_sent = [d[v.payload_offset :] for d, v in zip(sub.sent[3:9], views[3:9], strict=True)]
    assert h264_sent == payloads  # untouched: no descriptor to rewrite
    assert [v.marker for v in views[3:9]] == [False, True] * 3
    ids = [vp8_ids(d, v) for d, v in zip(sub.sent, views, strict=True) if v.payload_type == VP8_OUT]
    assert ids == [(500 + i, 20 + i) for i in range(5)]  # PictureID and TL0PICIDX go on across the H.264 spell
    stamps = [v.timestamp for v in views]
    assert all(0 < (b - a) & 0xFFFFFFFF < 10_000 for a, b in zip(stamps, stamps[1:], strict=False) if a != b)


def test_a_slot_without_the_producers_codec_stays_silent_until_it_negotiates_it(clock: Clock) -> None:
    h264, sub = make_h264_pub(0xB0), make_sub({"vp8": VP8_OUT})  # Firefox without OpenH264
    consumer = sub.consume(h264)
    assert consumer.codec_missing and consumer.writer is None
    send_h264(h264, clock, 4, key_first=True)
    assert sub.sent == [] and h264.plis() == 0  # nothing sent, no keyframe asked for nothing
    consumer.on_rtcp("nack", [1, 2, 3])  # whatever the subscriber says, nothing goes out
    assert sub.sent == []
    sub.slot.configure(SSRC_OUT, VP8_OUT, OUT_IDS, 90000, {"vp8": VP8_OUT, "h264": H264_OUT})  # renegotiated
    assert not consumer.codec_missing and consumer.writer is not None
    send_h264(h264, clock, 1)
    assert sub.sent == [] and h264.plis() == 1  # from a keyframe on
    send_h264(h264, clock, 2, key_first=True)
    assert [v.payload_type for v in sub.views()] == [H264_OUT] * 4


def test_a_slot_that_loses_the_codec_on_renegotiation_restarts_on_a_keyframe(clock: Clock) -> None:
    h264, sub = make_h264_pub(0xB0), make_sub({"h264": H264_OUT, "vp8": VP8_OUT})
    consumer = sub.consume(h264)
    send_h264(h264, clock, 2, key_first=True)
    sub.slot.configure(SSRC_OUT, VP8_OUT, OUT_IDS, 90000, {"vp8": VP8_OUT})
    send_h264(h264, clock, 2)
    assert len(sub.sent) == 4 and consumer.codec_missing
    sub.slot.configure(SSRC_OUT, H264_OUT, OUT_IDS, 90000, {"h264": H264_OUT})
    send_h264(h264, clock, 1)
    assert len(sub.sent) == 4  # not on a delta frame: the subscriber missed the ones before
    send_h264(h264, clock, 1, key_first=True)
    views = sub.views()
    assert len(views) == 6 and views[4].sequence == (views[3].sequence + 1) & 0xFFFF


def test_a_renegotiated_payload_type_applies_to_the_next_packet_and_to_retransmissions(clock: Clock) -> None:
    vp8, sub = make_pub("video", 0xA0), make_sub({"vp8": VP8_OUT})
    consumer = sub.consume(vp8)
    send_video(vp8, clock, 2, picture_id=3, tl0=1, key_first=True)
    sub.slot.configure(SSRC_OUT, 120, OUT_IDS, 90000, {"vp8": 120, "h264": H264_OUT})
    send_video(vp8, clock, 1, picture_id=5, tl0=3)  # no new keyframe needed: same SSRC, same codec
    first = sub.views()[0]
    consumer.on_rtcp("nack", [first.sequence])
    views = sub.views()
    assert [v.payload_type for v in views] == [VP8_OUT, VP8_OUT, 120, 120]
    assert views[3].sequence == first.sequence and sub.sent[3][first.payload_offset :].endswith(VP8_BODY)


def test_a_tap_slot_sends_any_codec_with_its_one_payload_type(clock: Clock) -> None:
    h264, vp8, sub = make_h264_pub(0xB0), make_pub("video", 0xA0), make_sub(None)
    sub.consume(h264, "t1")
    send_h264(h264, clock, 1, key_first=True)
    sub.slot.consumer.close()  # type: ignore[union-attr]
    sub.consume(vp8, "t2")
    send_video(vp8, clock, 1, picture_id=1, tl0=1, key_first=True)
    assert [v.payload_type for v in sub.views()] == [VP8_OUT] * 3


# sfu/codecs.py


def offered(*codecs: tuple[int, str, dict[str, Any]]) -> list[tuple[int, str, int, dict[str, Any]]]:
    return [(pt, name, 90000, params) for pt, name, params in codecs]


H264_CB = {"packetization-mode": 1, "profile-level-id": "42e01f", "level-asymmetry-allowed": 1}
H264_B = {"packetization-mode": 1, "profile-level-id": "42001f"}
H264_HIGH = {"packetization-mode": 1, "profile-level-id": "640c1f"}
H264_MODE_0 = {"profile-level-id": "42e01f"}


@pytest.mark.parametrize(
    ("codecs", "chosen"),
    [
        (offered((96, "vp8", {}), (97, "rtx", {"apt": 96}), (98, "h264", H264_CB)), 96),  # a browser
        (offered((98, "h264", H264_CB), (96, "vp8", {})), 96),  # VP8 even when H.264 comes first
        (offered((96, "h264", H264_CB)), 96),  # OBS
        (offered((100, "h264", H264_MODE_0), (102, "h264", H264_HIGH), (104, "h264", H264_B), (106, "h264", H264_CB)), 106),
        (offered((100, "h264", H264_HIGH), (104, "h264", H264_B)), 104),
        (offered((104, "h264", H264_B), (108, "h264", {"packetization-mode": "1", "profile-level-id": "42C01E"})), 108),
        (offered((100, "h264", {"packetization-mode": 1, "profile-level-id": "42zz1f"}), (104, "h264", H264_B)), 104),
        (offered((100, "h264", H264_MODE_0), (102, "h264", H264_HIGH)), 102),  # any mode 1 profile
        (offered((100, "h264", H264_MODE_0), (101, "av1", {})), None),
        (offered((96, "vp9", {})), None),
    ],
)
def test_the_publisher_codec_choice(codecs: list[tuple[int, str, int, dict[str, Any]]], chosen: int | None) -> None:
    choice = choose_publish_codec("video", codecs)
    assert (choice[0] if choice else None) == chosen


def test_audio_is_answered_with_opus_only() -> None:
    assert choose_publish_codec("audio", [(0, "pcmu", 8000, {}), (111, "opus", 48000, {})]) == (111, "opus", 48000, {})
    assert choose_publish_codec("audio", [(0, "pcmu", 8000, {})]) is None


@dataclass
class Negotiated:
    mimeType: str
    payloadType: int
    clockRate: int = 90000
    parameters: dict[str, Any] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.parameters = self.parameters or {}


def test_a_subscriber_answer_gives_one_payload_type_per_codec() -> None:
    chromium = [Negotiated("video/VP8", 97), Negotiated("video/rtx", 98, parameters={"apt": 97}),
                Negotiated("video/H264", 99, parameters=H264_B), Negotiated("video/rtx", 100, parameters={"apt": 99}),
                Negotiated("video/H264", 101, parameters=H264_CB)]
    assert negotiated_payload_types(chromium) == {"vp8": (97, 90000), "h264": (99, 90000)}
    firefox = [Negotiated("video/VP8", 120), Negotiated("video/H264", 126, parameters=H264_MODE_0)]
    assert negotiated_payload_types(firefox) == {"vp8": (120, 90000)}
    assert negotiated_payload_types([Negotiated("audio/opus", 111, 48000)]) == {"opus": (111, 48000)}
    assert negotiated_payload_types([SimpleNamespace(mimeType="video/rtx", payloadType=98, clockRate=90000,
                                                     parameters={"apt": 97})]) == {}

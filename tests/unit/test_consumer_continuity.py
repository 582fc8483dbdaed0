"""Producer -> Consumer -> Slot, driven with synthetic VP8 and Opus packets and a fake clock.

What a subscriber's browser relies on: gapless sequence numbers, timestamps that
follow the wall clock, continuous VP8 PictureID/TL0PICIDX, untouched payloads, and
retransmissions identical to the original - across pauses and slot re-pointing.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from aiortc.rtp import RtcpPacket, RtcpPsfbPacket, RtcpRtpfbPacket

import sfu.consumer
import sfu.producer
import sfu.rtp
from sfu.consumer import Consumer, Slot
from sfu.producer import Producer, ProducerSpec
from sfu.rtp import ExtensionIds, RtpView, read_packet

MID_ID, LEVEL_ID, AST_ID = 4, 1, 2  # publisher's extension ids
OUT_IDS = ExtensionIds(mid=3, abs_send_time=2, audio_level=1)  # the subscriber leg's ids
VP8_BODY = bytes(range(40, 140))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    fake_time = SimpleNamespace(monotonic=c.monotonic)
    monkeypatch.setattr(sfu.producer, "time", fake_time)
    monkeypatch.setattr(sfu.consumer, "time", fake_time)
    monkeypatch.setattr(sfu.rtp, "abs_send_time_now", lambda: b"\x01\x02\x03")
    return c


def rtp(ssrc: int, pt: int, seq: int, ts: int, payload: bytes, *, level: int | None = None,
        marker: bool = False, padding: int = 0) -> bytes:
    ext = bytes([(MID_ID << 4) | 0]) + b"9"  # the publisher's own MID, which must not leak out
    if level is not None:
        ext += bytes([LEVEL_ID << 4, 0x80 | level])
    ext += b"\x00" * (-len(ext) % 4)
    b0 = 0x90 | (0x20 if padding else 0)
    out = struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq, ts, ssrc)
    out += struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext + payload
    if padding:
        out += b"\x00" * (padding - 1) + bytes([padding])
    return out


def vp8(picture_id: int, tl0: int, key: bool, body: bytes = VP8_BODY) -> bytes:
    return bytes([0x90, 0xE0, 0x80 | (picture_id >> 8), picture_id & 0xFF, tl0, 0x00]) + bytes([0 if key else 1]) + body


@dataclass
class Pub:
    producer: Producer
    rtcp: list[bytes] = field(default_factory=list)
    seq: int = 0
    ts: int = 0

    def feed(self, data: bytes) -> None:
        self.producer.receive(data, read_packet(data, MID_ID, LEVEL_ID))

    def plis(self) -> int:
        return sum(isinstance(p, RtcpPsfbPacket) and p.fmt == 1 for b in self.rtcp for p in RtcpPacket.parse(b))


def make_pub(kind: str, ssrc: int, seq: int = 100, ts: int = 5000) -> Pub:
    pub = Pub(producer=None, seq=seq, ts=ts)  # type: ignore[arg-type]
    video = kind == "video"
    spec = ProducerSpec(mid="9", kind=kind, source="camera" if video else "mic", payload_type=96 if video else 111,
                        clock_rate=90000 if video else 48000, codec="vp8" if video else "opus", ssrc=ssrc,
                        rtx_ssrc=ssrc + 1 if video else None, rtx_payload_type=97 if video else None, stream_id="s")
    pub.producer = Producer(f"p{ssrc}", spec, MID_ID, LEVEL_ID, pub.rtcp.append, feedback_ssrc=1)
    return pub


@dataclass
class Sub:
    slot: Slot
    sent: list[bytes] = field(default_factory=list)

    def send(self, data: bytes) -> bool:
        self.sent.append(data)
        return True

    def views(self) -> list[RtpView]:
        return [read_packet(d, OUT_IDS.mid, OUT_IDS.audio_level) for d in self.sent]

    def consume(self, pub: Pub, name: str = "c") -> Consumer:
        return Consumer(name, pub.producer, self.slot, self.send)


def make_sub(kind: str) -> Sub:
    slot = Slot("12", kind, handle=None)
    slot.configure(0x5105, 100 if kind == "video" else 109, OUT_IDS, 90000 if kind == "video" else 48000)
    return Sub(slot)


def send_video(pub: Pub, clock: Clock, frames: int, picture_id: int, tl0: int, key_first: bool = False) -> None:
    """``frames`` one-packet frames at 30 fps, PictureID and TL0PICIDX counting up."""
    for i in range(frames):
        pub.feed(rtp(pub.producer.ssrc or 0, 96, pub.seq, pub.ts, vp8((picture_id + i) & 0x7FFF, (tl0 + i) & 0xFF, key_first and i == 0),
                     marker=True))
        pub.seq = (pub.seq + 1) & 0xFFFF
        pub.ts += 3000
        clock.now += 1 / 30


def send_audio(pub: Pub, clock: Clock, count: int) -> None:
    for _ in range(count):
        pub.feed(rtp(pub.producer.ssrc or 0, 111, pub.seq, pub.ts, b"opus" + bytes([pub.seq & 0xFF]), level=33))
        pub.seq = (pub.seq + 1) & 0xFFFF
        pub.ts += 960
        clock.now += 0.02


def assert_gapless(views: list[RtpView]) -> None:
    seqs = [v.sequence for v in views]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(len(seqs))]


def vp8_ids(data: bytes, view: RtpView) -> tuple[int, int]:
    return ((data[view.payload_offset + 2] & 0x7F) << 8) | data[view.payload_offset + 3], data[view.payload_offset + 4]


def test_new_consumer_waits_for_keyframe_and_asks_for_one_throttled(clock: Clock) -> None:
    pub, sub = make_pub("video", 0xA0), make_sub("video")
    sub.consume(pub)
    assert pub.plis() == 0  # the router asks when the leg can carry media (see test_media_repair)
    send_video(pub, clock, 5, picture_id=10, tl0=1)  # 5 deltas within 500 ms
    assert sub.sent == [] and pub.plis() == 1  # the first delta frame triggered one request
    clock.now += 0.5
    pub.producer.tick()  # the request deferred by the throttle goes out now
    assert pub.plis() == 2
    pub.producer.tick()
    assert pub.plis() == 2
    send_video(pub, clock, 3, picture_id=15, tl0=6, key_first=True)
    assert len(sub.sent) == 3
    first = sub.views()[0]
    assert first.ssrc == 0x5105 and first.payload_type == 100 and first.mid == b"12"
    assert first.sequence == (sub.slot.last_seq - 2) & 0xFFFF


def test_audio_seq_gapless_and_ts_follow_clock_across_server_mute(clock: Clock) -> None:
    pub, sub = make_pub("audio", 0xB0), make_sub("audio")
    sub.consume(pub)
    assert pub.rtcp == []  # no PLI for audio
    send_audio(pub, clock, 10)
    pub.producer.pause()
    send_audio(pub, clock, 50)  # one second muted at the SFU
    assert len(sub.sent) == 10
    pub.producer.resume()
    send_audio(pub, clock, 10)
    views = sub.views()
    assert len(views) == 20
    assert_gapless(views)
    jump = (views[10].timestamp - views[9].timestamp) & 0xFFFFFFFF
    assert abs(jump - 51 * 0.02 * 48000) <= 2  # wall time since the last packet sent
    assert all((views[i + 1].timestamp - views[i].timestamp) & 0xFFFFFFFF == 960 for i in (0, 5, 12, 18))
    assert {v.audio_level for v in views} == {33} and all(v.voice for v in views)
    assert sub.sent[3].endswith(b"opus" + bytes([103]))


def test_video_continuity_across_pause_resume(clock: Clock) -> None:
    pub, sub = make_pub("video", 0xA0), make_sub("video")
    sub.consume(pub)
    send_video(pub, clock, 4, picture_id=500, tl0=50, key_first=True)
    pub.producer.pause()
    send_video(pub, clock, 30, picture_id=504, tl0=54)
    plis = pub.plis()
    pub.producer.resume()
    assert pub.plis() == plis + 1  # keyframe asked for on resume
    send_video(pub, clock, 2, picture_id=534, tl0=84)  # deltas: still waiting for the keyframe
    send_video(pub, clock, 3, picture_id=536, tl0=86, key_first=True)
    views = sub.views()
    assert len(views) == 7
    assert_gapless(views)
    ids = [vp8_ids(d, v) for d, v in zip(sub.sent, views, strict=True)]
    assert ids == [(500 + i, 50 + i) for i in range(7)]
    jump = (views[4].timestamp - views[3].timestamp) & 0xFFFFFFFF
    assert abs(jump - 33 / 30 * 90000) <= 2  # 33 frame intervals of wall time, not the publisher's 3000/frame


def test_repointing_slot_to_another_producer_is_seamless(clock: Clock) -> None:
    a, b, sub = make_pub("video", 0xA0, seq=60000, ts=1), make_pub("video", 0xC0, seq=7, ts=3_000_000_000), make_sub("video")
    sub.consume(a, "ca")
    send_video(a, clock, 5, picture_id=0x7FFE, tl0=254, key_first=True)  # ids wrap on the way
    last_a_time = clock.now - 1 / 30
    sub.slot.consumer.close()  # type: ignore[union-attr]
    assert sub.slot.free
    sub.consume(b, "cb")
    send_video(b, clock, 2, picture_id=1000, tl0=9)  # B's deltas are not forwarded
    assert b.plis() == 1  # they make the SFU ask B for a keyframe
    switch_time = clock.now
    send_video(b, clock, 3, picture_id=1002, tl0=11, key_first=True)
    views = sub.views()
    assert len(views) == 8
    assert_gapless(views)
    assert {v.ssrc for v in views} == {0x5105}
    ids = [vp8_ids(d, v) for d, v in zip(sub.sent, views, strict=True)]
    assert ids == [((0x7FFE + i) & 0x7FFF, (254 + i) & 0xFF) for i in range(8)]
    jump = (views[5].timestamp - views[4].timestamp) & 0xFFFFFFFF
    assert abs(jump - (switch_time - last_a_time) * 90000) <= 2
    keys = [True, False, False, False, False, True, False, False]
    for data, view, key in zip(sub.sent, views, keys, strict=True):
        payload = data[view.payload_offset :]
        assert payload[:2] == b"\x90\xe0" and payload[5] == 0  # descriptor flags and TID byte untouched
        assert payload[6:] == bytes([0 if key else 1]) + VP8_BODY  # everything after the descriptor


def test_nack_is_answered_from_cache_with_the_original_bytes(clock: Clock) -> None:
    pub, sub = make_pub("video", 0xA0), make_sub("video")
    consumer = sub.consume(pub)
    send_video(pub, clock, 6, picture_id=3, tl0=3, key_first=True)
    original = list(sub.sent)
    wanted = [sub.views()[2].sequence, sub.views()[4].sequence]
    consumer.on_rtcp("nack", wanted)
    assert sub.sent[6:] == [original[2], original[4]]
    assert consumer.retransmits == 2
    consumer.on_rtcp("nack", [(wanted[0] + 500) & 0xFFFF])  # never sent: nothing to answer
    assert len(sub.sent) == 8


def test_nack_for_a_packet_sent_before_a_pause_returns_that_packet_or_nothing(clock: Clock) -> None:
    pub, sub = make_pub("audio", 0xB0), make_sub("audio")
    consumer = sub.consume(pub)
    send_audio(pub, clock, 10)
    pub.producer.pause()
    send_audio(pub, clock, 50)  # cached upstream, never sent to this subscriber
    pub.producer.resume()
    send_audio(pub, clock, 5)
    original = sub.sent[4]
    consumer.on_rtcp("nack", [sub.views()[4].sequence])
    assert sub.sent[15:] in ([], [original])


def test_nack_cannot_fetch_media_dropped_by_a_server_mute(clock: Clock) -> None:
    pub, sub = make_pub("audio", 0xB0), make_sub("audio")
    consumer = sub.consume(pub)
    send_audio(pub, clock, 5)
    pub.producer.pause()  # the chair mutes this member; their client keeps sending
    send_audio(pub, clock, 5)
    last = sub.views()[-1].sequence
    consumer.on_rtcp("nack", [(last + k) & 0xFFFF for k in range(1, 6)])  # crafted NACKs for "future" seqs
    assert len(sub.sent) == 5, "muted audio leaked to a subscriber through a NACK"


def test_late_packet_from_before_the_switch_does_not_reuse_an_output_seq(clock: Clock) -> None:
    a, b, sub = make_pub("video", 0xA0), make_pub("video", 0xC0, seq=500), make_sub("video")
    sub.consume(a, "ca")
    send_video(a, clock, 3, picture_id=1, tl0=1, key_first=True)
    sub.slot.consumer.close()  # type: ignore[union-attr]
    sub.consume(b, "cb")
    b.seq = 501
    send_video(b, clock, 1, picture_id=40, tl0=4, key_first=True)
    b.feed(rtp(0xC0, 96, 500, 0, vp8(39, 4, False), marker=True))  # reordered: arrives after the keyframe
    seqs = [v.sequence for v in sub.views()]
    assert len(seqs) == len(set(seqs))


def test_rtx_packets_are_unwrapped(clock: Clock) -> None:
    pub, sub = make_pub("video", 0xA0, seq=10), make_sub("video")
    sub.consume(pub)
    send_video(pub, clock, 2, picture_id=1, tl0=1, key_first=True)  # seq 10, 11
    lost = rtp(0xA0, 96, 12, 11000, vp8(3, 3, False), marker=True)
    pub.seq, pub.ts = 13, 14000
    send_video(pub, clock, 1, picture_id=4, tl0=4)  # seq 13: 12 is missing upstream
    nacks = [p for b in pub.rtcp for p in RtcpPacket.parse(b) if isinstance(p, RtcpRtpfbPacket)]
    assert [(n.media_ssrc, n.lost) for n in nacks] == [(0xA0, [12])]
    payload = lost[16 + 4 :]
    pub.feed(rtp(0xA1, 97, 900, 11000, struct.pack("!H", 12) + payload, marker=True))
    views = sub.views()
    assert len(views) == 4
    assert views[3].sequence == (views[1].sequence + 1) & 0xFFFF and views[3].timestamp == views[1].timestamp + 3000
    assert sub.sent[3][views[3].payload_offset :] == payload
    pub.feed(rtp(0xA1, 97, 901, 0, b"", padding=100))  # RTX padding probe
    assert len(sub.sent) == 4


def test_padding_only_packets_are_not_forwarded(clock: Clock) -> None:
    pub, sub = make_pub("video", 0xA0), make_sub("video")
    sub.consume(pub)
    send_video(pub, clock, 1, picture_id=1, tl0=1, key_first=True)
    pub.feed(rtp(0xA0, 96, pub.seq, pub.ts, b"", padding=255))
    assert len(sub.sent) == 1
    pub.feed(rtp(0xA0, 35, pub.seq + 1, pub.ts, vp8(2, 2, False)))  # unknown payload type
    assert len(sub.sent) == 1


def test_seq_stays_gapless_when_the_publisher_pads_on_the_media_ssrc(clock: Clock) -> None:
    pub, sub = make_pub("video", 0xA0), make_sub("video")
    sub.consume(pub)
    send_video(pub, clock, 2, picture_id=1, tl0=1, key_first=True)
    for _ in range(3):  # bandwidth probing without RTX
        pub.feed(rtp(0xA0, 96, pub.seq, pub.ts, b"", padding=200))
        pub.seq += 1
    send_video(pub, clock, 2, picture_id=3, tl0=3)
    assert_gapless(sub.views())


def test_closing_producer_closes_consumers_and_frees_slots(clock: Clock) -> None:
    pub, s1, s2 = make_pub("video", 0xA0), make_sub("video"), make_sub("video")
    c1, c2 = s1.consume(pub, "c1"), s2.consume(pub, "c2")
    closed: list[object] = []
    c1.on_close.append(closed.append)
    pub.producer.on_close.append(closed.append)
    plis = pub.plis()
    pub.producer.close()
    assert c1.closed and c2.closed and s1.slot.free and s2.slot.free
    assert pub.producer.consumers == set()
    assert closed == [c1, pub.producer]
    clock.now += 1
    pub.producer.request_keyframe()
    assert pub.plis() == plis  # a closed producer asks for nothing
    pub.producer.close()
    assert closed == [c1, pub.producer]


def test_sender_report_translated_to_the_slot_timeline(clock: Clock) -> None:
    pub, sub = make_pub("audio", 0xB0, ts=1000), make_sub("audio")
    consumer = sub.consume(pub)
    assert consumer.translated_sr() is None
    send_audio(pub, clock, 3)
    pub.producer.on_sender_report(0x1122334455667788, 1000 + 960)
    ntp, ts, packets, octets = consumer.translated_sr()  # type: ignore[misc]
    assert ntp == 0x1122334455667788 and ts == sub.views()[1].timestamp
    assert packets == 3 and octets == sum(map(len, sub.sent))

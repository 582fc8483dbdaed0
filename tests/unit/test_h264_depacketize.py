"""H.264 into the programme: RFC 6184 depacketization (single NAL, STAP-A, FU-A) and decoding in Sources.

The access units are real libx264 output; the packets come from the programme's own
packetizer (single NAL units and FU-A), from a STAP-A aggregator written here from
RFC 6184 section 5.7.1, and from aiortc's packetizer (what a WHIP encoder sends).
"""

from __future__ import annotations

import struct
from fractions import Fraction
from functools import cache

import av
import numpy as np
import pytest
from aiortc.codecs.h264 import H264Encoder
from av.video.frame import PictureType

from sfu.programme.depacketize import VIDEO_TIME_BASE, EncodedFrame, H264Assembler, decode, h264_units
from sfu.programme.packetize import RtpStream, fragment_nal, split_nals
from sfu.programme.sources import Sources
from tests.unit.test_programme_sources import VP8_PT, Clock, Vp8Sender, clock, mean_rgb, rtp, vp8_clip

__all__ = ["clock"]  # the fixture, imported for the tests below

H264_PT = 96
CAMERA, CHAMBER = 0x2000C, 0x3000E
STAP_A, FU_A = 24, 28
TICKS = 3000  # 30 fps at 90 kHz


@cache
def x264_clip(kinds: str = "KDDDDKDD") -> list[tuple[bytes, bool]]:
    """Blue 320x240 access units from libx264 (baseline, no B-frames), annex-B; K = forced IDR."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 320, 240, "yuv420p"
    encoder.time_base = Fraction(1, 30)
    encoder.bit_rate = 2_000_000
    encoder.gop_size = 1000
    encoder.profile = "Baseline"
    encoder.options = {"tune": "zerolatency", "preset": "ultrafast", "forced-idr": "1"}
    rng = np.random.default_rng(11)
    out: list[tuple[bytes, bool]] = []
    for i, kind in enumerate(kinds):
        picture = np.zeros((240, 320, 3), np.uint8)
        picture[..., 2] = 200 + rng.integers(0, 56, (240, 320))  # textured: NAL units larger than a packet
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        frame.pict_type = PictureType.I if kind == "K" else PictureType.NONE
        out += [(bytes(p), p.is_keyframe) for p in encoder.encode(frame)]
    out += [(bytes(p), p.is_keyframe) for p in encoder.encode(None)]
    assert [key for _, key in out] == [kind == "K" for kind in kinds]
    return out


def normalized(access_unit: bytes) -> bytes:
    """An annex-B access unit with 4-byte start codes, as the assembler writes it."""
    return b"".join(b"\x00\x00\x00\x01" + nal for nal in split_nals(access_unit))


def stap_a_payloads(access_unit: bytes, max_payload: int = 600) -> list[bytes]:
    """RFC 6184 5.7.1: consecutive small NAL units aggregated (F: OR of theirs, NRI: their maximum)."""
    payloads: list[bytes] = []
    group: list[bytes] = []

    def flush() -> None:
        if len(group) == 1:
            payloads.append(group[0])
        elif group:
            header = max(n[0] & 0x60 for n in group) | (0x80 if any(n[0] & 0x80 for n in group) else 0) | STAP_A
            payloads.append(bytes([header]) + b"".join(struct.pack("!H", len(n)) + n for n in group))
        group.clear()

    for nal in split_nals(access_unit):
        if len(nal) + 2 > max_payload - 1:
            flush()
            payloads += fragment_nal(nal, max_payload)
        else:
            if 1 + sum(2 + len(n) for n in group) + 2 + len(nal) > max_payload:
                flush()
            group.append(nal)
    flush()
    return payloads


class H264Sender:
    """RTP packets of access units, 30 fps; ``stap``: aggregate small NAL units, else one per packet."""

    def __init__(self, ssrc: int, stap: bool = False, mtu: int = 612) -> None:
        self.ssrc, self.stap, self.stream = ssrc, stap, RtpStream(H264_PT, ssrc, mtu)
        self.seq, self.frames = 65530, 0  # wraps within the clip

    def packets(self, access_unit: bytes, marker: bool = True) -> list[bytes]:
        if self.stap:
            payloads = stap_a_payloads(access_unit, self.stream.max_payload)
        else:
            payloads = [p[12:] for p in self.stream.h264(access_unit, 0)]
        out = []
        for n, payload in enumerate(payloads):
            last = marker and n == len(payloads) - 1
            out.append(rtp(self.seq, 1_000_000 + TICKS * self.frames, self.ssrc, H264_PT, payload, marker=last))
            self.seq = (self.seq + 1) & 0xFFFF
        self.frames += 1
        return out


def push_all(assembler: H264Assembler, packets: list[bytes]) -> list[tuple[bytes, bool, int]]:
    """The access units a caller decodes: whole ones, while the references are intact (``broken`` unset)."""
    out = []
    for packet in packets:
        b1, seq, ts = packet[1], *struct.unpack_from("!HI", packet, 2)
        frame = assembler.push(seq, ts, bool(b1 & 0x80), packet[12:])
        if frame is not None and not assembler.broken:
            out.append((frame.data, frame.keyframe, frame.timestamp))
    return out


def decoded_colours(access_units: list[bytes]) -> list[np.ndarray]:
    decoder = av.CodecContext.create("h264", "r")
    pictures = [decode(decoder, au, i * TICKS, VIDEO_TIME_BASE) for i, au in enumerate(access_units)]
    return [mean_rgb(p) for p in pictures if isinstance(p, av.VideoFrame)]


def payload_types(packets: list[bytes]) -> set[int]:
    return {p[12] & 0x1F for p in packets}


@pytest.mark.parametrize("stap", [False, True], ids=["single-nal+fu-a", "stap-a+fu-a"])
def test_packets_reassemble_to_the_encoder_access_units_and_decode(stap: bool) -> None:
    clip = x264_clip()
    sender = H264Sender(CAMERA, stap=stap)
    per_frame = [sender.packets(au) for au, _ in clip]
    kinds = payload_types([p for packets in per_frame for p in packets])
    assert FU_A in kinds and (STAP_A in kinds) == stap
    assembler = H264Assembler()
    got = [push_all(assembler, packets) for packets in per_frame]
    assert all(len(frames) == 1 for frames in got)  # each access unit out on its marker packet
    assert [data for ((data, _, _),) in got] == [normalized(au) for au, _ in clip]
    assert [key for ((_, key, _),) in got] == [key for _, key in clip]
    assert [ts for ((_, _, ts),) in got] == [1_000_000 + TICKS * i for i in range(len(clip))]
    assert not assembler.broken and assembler.sequence.lost == 0
    colours = decoded_colours([data for ((data, _, _),) in got])
    assert len(colours) == len(clip)
    assert all(blue > 200 and red < 40 and green < 40 for red, green, blue in colours)


def test_what_aiortc_sends_a_whip_server_decodes() -> None:
    encoder, assembler, seq = H264Encoder(), H264Assembler(), 100
    units: list[bytes] = []
    kinds: set[int] = set()
    for i in range(6):
        picture = np.zeros((240, 320, 3), np.uint8)
        picture[..., 1] = 200
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
        frame.pts, frame.time_base = i * TICKS, Fraction(1, 90000)
        payloads, timestamp = encoder.encode(frame, force_keyframe=i == 0)
        kinds |= {p[0] & 0x1F for p in payloads}
        for n, payload in enumerate(payloads):
            out = assembler.push(seq, timestamp, n == len(payloads) - 1, payload)
            seq += 1
            if out is not None:
                units.append(out.data)
    assert STAP_A in kinds  # aiortc aggregates the SPS and PPS with the slice
    colours = decoded_colours(units)
    assert len(colours) == 6 and all(green > 180 and red < 40 and blue < 40 for red, green, blue in colours)


def test_a_lost_fragment_drops_the_access_unit_until_the_next_idr() -> None:
    clip = x264_clip()
    sender, assembler = H264Sender(CAMERA), H264Assembler()
    per_frame = [sender.packets(au) for au, _ in clip]
    fragments = [n for n, p in enumerate(per_frame[2]) if p[12] & 0x1F == FU_A]
    victim = fragments[len(fragments) // 2]
    assert 0 < victim < len(per_frame[2]) - 1  # in the middle of the access unit
    del per_frame[2][victim]
    got = [push_all(assembler, packets) for packets in per_frame]
    assert [len(frames) for frames in got] == [1, 1, 0, 0, 0, 1, 1, 1]  # back on the IDR of frame 5
    assert assembler.sequence.lost == 1 and not assembler.broken


@pytest.mark.parametrize(("victim", "decoded"), [(1, [1, 0, 0, 0, 0, 1, 1, 1]), (5, [1, 1, 1, 1, 1, 0, 0, 0])])
def test_a_lost_marker_packet_never_passes_a_truncated_access_unit(victim: int, decoded: list[int]) -> None:
    clip = x264_clip()
    sender, assembler = H264Sender(CAMERA), H264Assembler()
    per_frame = [sender.packets(au) for au, _ in clip]
    per_frame[victim].pop()  # the end of the access unit, with its marker (frame 5: the IDR)
    got = [push_all(assembler, packets) for packets in per_frame]
    assert [len(frames) for frames in got] == decoded
    assert all(frames[0][0] == normalized(au) for frames, (au, _) in zip(got, clip, strict=True) if frames)


def test_a_gap_just_before_an_idr_that_starts_with_its_sps_loses_nothing_more() -> None:
    clip = x264_clip()
    sender, assembler = H264Sender(CAMERA, stap=True), H264Assembler()
    per_frame = [sender.packets(au) for au, _ in clip]
    assert h264_units(per_frame[5][0][12:])[0][0][0] & 0x1F == 7  # the IDR access unit opens with its SPS
    per_frame[4] = []  # a whole delta frame lost
    got = [push_all(assembler, packets) for packets in per_frame]
    assert [len(frames) for frames in got] == [1, 1, 1, 1, 0, 1, 1, 1]
    assert got[5][0][1] and not assembler.broken


def test_without_marker_bits_an_access_unit_ends_when_the_next_timestamp_starts() -> None:
    clip = x264_clip()
    sender, assembler = H264Sender(CAMERA), H264Assembler()
    got = [push_all(assembler, sender.packets(au, marker=False)) for au, _ in clip]
    assert got[0] == [] and all(len(frames) == 1 for frames in got[1:])
    assert [frames[0][0] for frames in got[1:]] == [normalized(au) for au, _ in clip[:-1]]


def test_single_packet_access_units_after_a_missing_marker_are_late_not_lost() -> None:
    assembler = H264Assembler()
    sps, idr, delta = SPS, IDR_FIRST, DELTA
    assert assembler.push(1, 0, False, sps) is None
    assert assembler.push(2, 0, False, idr) is None  # no marker on the IDR's last packet
    first = assembler.push(3, 3000, True, delta)  # the next timestamp ends it; this one waits
    assert first is not None and first.keyframe and first.data == b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + idr
    second = assembler.push(4, 6000, True, delta)
    assert second is not None and (second.timestamp, second.data) == (3000, b"\x00\x00\x00\x01" + delta)


SPS, PPS = bytes([0x67, 0x42, 0xC0, 0x1E]), bytes([0x68, 0xCE, 0x3C, 0x80])
IDR_FIRST, IDR_SECOND = bytes([0x65, 0x88, 0x84]), bytes([0x65, 0x02, 0x10])  # first_mb_in_slice 0, then not 0
DELTA = bytes([0x41, 0x9A, 0x02])


def test_an_idr_access_unit_that_lost_its_last_slice_is_not_passed() -> None:
    assembler = H264Assembler()
    for seq, nal in enumerate((SPS, PPS, IDR_FIRST)):
        assert assembler.push(seq, 0, False, nal) is None
    # seq 3, the second slice with the marker, is lost: the delta frame after it is whole, but not decodable
    delta = assembler.push(4, 3000, True, DELTA)
    assert delta is not None and not delta.keyframe and assembler.broken


def test_fragments_out_of_place_spoil_their_access_unit() -> None:
    assembler, seq, ts = H264Assembler(), 0, 0

    def send(*payloads: bytes) -> EncodedFrame | None:
        nonlocal seq, ts
        out = None
        for n, payload in enumerate(payloads):
            out = assembler.push(seq, ts, n == len(payloads) - 1, payload) or out
            seq += 1
        ts += TICKS
        return out

    def recover() -> None:
        frame = send(SPS, bytes([0x7C, 0x85, 0x88]), bytes([0x7C, 0x45, 0x84]))  # an IDR slice in two fragments
        assert frame is not None and frame.keyframe and not assembler.broken
        assert frame.data == b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x00\x01" + IDR_FIRST

    recover()
    send(bytes([0x7C, 0x81, 1, 2]), bytes([0x7C, 0x01, 3]))  # a start and a middle, the end never comes
    assert assembler.broken and assembler.sequence.lost == 0
    recover()
    send(bytes([0x7C, 0x01, 3]), bytes([0x7C, 0x41, 4]))  # a middle and an end whose start never came
    assert assembler.broken
    recover()
    send(bytes([0x7C, 0x81, 1]), bytes([0x7C, 0x81, 2]), bytes([0x7C, 0x41, 3]))  # a second start before an end
    assert assembler.broken
    recover()


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        bytes([0x18, 0x00, 0x09, 0x67, 0x42]),  # STAP-A unit longer than the packet
        bytes([0x18, 0x00, 0x00]),  # zero-sized STAP-A unit
        bytes([0x18]),  # empty STAP-A
        bytes([0x7C, 0xC5, 0x01]),  # FU-A with start and end
        bytes([0x7C, 0x85]),  # FU-A without a byte of the NAL unit
        bytes([0x19, 0x00, 0x01, 0x41]),  # STAP-B: interleaved mode only
        bytes([0x1D, 0x85, 0x00, 0x01]),  # FU-B
        bytes([0x00, 0x01]),  # reserved type 0
        bytes([0x1F, 0x01]),  # reserved type 31
    ],
)
def test_malformed_payloads_are_refused_without_counting_a_packet(payload: bytes) -> None:
    assembler = H264Assembler()
    assembler.push(7, 0, True, bytes([0x41, 0x9A]))
    with pytest.raises(ValueError):
        assembler.push(8, 3000, True, payload)
    assert assembler.sequence.expected == 8  # a refused packet is as good as lost: the gap shows


# The programme's Sources with an H.264 source.


def test_an_h264_source_decodes_to_its_colour(clock: Clock) -> None:
    requests: list[int] = []
    sources = Sources(requests.append)
    sources.add(CHAMBER, "video", "h264", H264_PT)
    sources.set_wanted([], CHAMBER)
    assert requests == [CHAMBER]
    sender = H264Sender(CHAMBER, stap=True)
    clip = x264_clip()
    for au, _ in clip:
        for packet in sender.packets(au):
            sources.on_rtp(packet)
    frame = sources.video()
    assert frame is not None and (frame.width, frame.height) == (320, 240)
    red, green, blue = mean_rgb(frame)
    assert blue > 200 and red < 40 and green < 40
    stats = sources.stats()["sources"][str(CHAMBER)]
    assert stats["codec"] == "h264" and stats["frames_decoded"] == len(clip)
    assert stats["lost"] == 0 and stats["malformed"] == 0 and not stats["waiting_keyframe"]
    assert requests == [CHAMBER]


def test_an_h264_source_waits_for_an_idr_and_asks_for_one(clock: Clock) -> None:
    requests: list[int] = []
    sources = Sources(requests.append)
    sources.add(CHAMBER, "video", "h264", H264_PT)
    sources.set_wanted([], CHAMBER)
    sender = H264Sender(CHAMBER)
    clip = x264_clip()
    clock.now += 1
    for au, _ in clip[1:5]:  # delta frames only
        for packet in sender.packets(au):
            sources.on_rtp(packet)
    assert sources.video() is None and requests == [CHAMBER, CHAMBER]
    for au, _ in clip[5:]:
        for packet in sender.packets(au):
            sources.on_rtp(packet)
    assert sources.stats()["sources"][str(CHAMBER)]["frames_decoded"] == 3
    assert mean_rgb(sources.video())[2] > 200


def test_the_picture_follows_the_wanted_source_whatever_its_codec(clock: Clock) -> None:
    sources = Sources(lambda ssrc: None)
    sources.add(CAMERA, "video", "vp8", VP8_PT)
    sources.add(CHAMBER, "video", "h264", H264_PT)
    vp8, h264 = Vp8Sender(CAMERA), H264Sender(CHAMBER)
    for wanted, colour in ((CHAMBER, 2), (CAMERA, 0), (CHAMBER, 2)):
        sources.set_wanted([], wanted)
        for (vp8_frame, _), (au, _) in zip(vp8_clip(), x264_clip(), strict=True):
            for packet in vp8.packets(vp8_frame) + h264.packets(au):
                sources.on_rtp(packet)
        assert mean_rgb(sources.video())[colour] > 200
    assert sources.stats()["unknown_packets"] == 0

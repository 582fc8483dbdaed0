"""sfu/rtp.py against packets built by hand with struct, and against aiortc's own parser."""

from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

import sfu.rtp
from sfu.rtp import (
    EXT_ABS_SEND_TIME,
    EXT_AUDIO_LEVEL,
    EXT_MID,
    ExtensionIds,
    LegWriter,
    read_packet,
    seq_newer,
    unwrap_rtx,
)

SSRC = 0x11223344
AST = b"\xaa\xbb\xcc"


def header(pt: int = 111, seq: int = 1000, ts: int = 123456, ssrc: int = SSRC, *, x: bool = False,
           p: bool = False, cc: int = 0, marker: bool = False) -> bytes:
    b0 = 0x80 | (0x20 if p else 0) | (0x10 if x else 0) | cc
    b1 = (0x80 if marker else 0) | pt
    return struct.pack("!BBHII", b0, b1, seq, ts, ssrc)


def one_byte_block(elements: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(bytes([(i << 4) | (len(v) - 1)]) + v for i, v in elements)
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!HH", 0xBEDE, len(body) // 4) + body


def two_byte_block(elements: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(bytes([i, len(v)]) + v for i, v in elements)
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!HH", 0x1000, len(body) // 4) + body


@pytest.fixture
def fixed_ast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sfu.rtp, "abs_send_time_now", lambda: AST)


# ---------------------------------------------------------------- read_packet


def test_plain_header_fields() -> None:
    data = header(pt=96, seq=65535, ts=0xFFFFFFFF, ssrc=0xDEADBEEF, marker=True) + b"payload"
    v = read_packet(data, mid_id=4, audio_level_id=1)
    assert (v.marker, v.payload_type, v.sequence, v.timestamp, v.ssrc) == (True, 96, 65535, 0xFFFFFFFF, 0xDEADBEEF)
    assert data[v.payload_offset : v.payload_end] == b"payload"
    assert v.mid is None and v.audio_level is None and not v.voice


def test_one_byte_extensions() -> None:
    ext = one_byte_block([(3, b"12"), (2, AST), (1, bytes([0x80 | 42]))])
    data = header(x=True) + ext + b"opus"
    v = read_packet(data, mid_id=3, audio_level_id=1)
    assert v.mid == b"12"
    assert v.audio_level == 42 and v.voice
    assert v.payload_offset == 12 + len(ext)
    assert data[v.payload_offset : v.payload_end] == b"opus"


def test_one_byte_extension_without_voice_bit_and_padding_bytes_between() -> None:
    body = b"\x00" + bytes([0x10, 90]) + b"\x00" + bytes([0x30]) + b"7" + b"\x00\x00"  # padding between elements
    data = header(x=True) + struct.pack("!HH", 0xBEDE, len(body) // 4) + body + b"x"
    v = read_packet(data, mid_id=3, audio_level_id=1)
    assert v.mid == b"7" and v.audio_level == 90 and v.voice is False


def test_one_byte_id_15_stops_parsing() -> None:
    body = bytes([0xF0, 0x00]) + bytes([0x30]) + b"7"  # id 15 = stop; the MID after it is not read
    data = header(x=True) + struct.pack("!HH", 0xBEDE, 1) + body + b"x"
    assert read_packet(data, mid_id=3, audio_level_id=1).mid is None


def test_two_byte_extensions() -> None:
    ext = two_byte_block([(3, b"video-1"), (1, bytes([0x80 | 5])), (2, b"")])
    data = header(x=True) + ext + b"vp8"
    v = read_packet(data, mid_id=3, audio_level_id=1)
    assert v.mid == b"video-1"
    assert v.audio_level == 5 and v.voice
    assert data[v.payload_offset : v.payload_end] == b"vp8"


def test_unknown_extension_ids_are_ignored() -> None:
    data = header(x=True) + one_byte_block([(9, b"zz")]) + b"p"
    v = read_packet(data, mid_id=3, audio_level_id=1)
    assert v.mid is None and v.audio_level is None


def test_csrcs_then_extension() -> None:
    csrcs = struct.pack("!II", 0xAAAA0001, 0xAAAA0002)
    ext = one_byte_block([(4, b"m")])
    data = header(cc=2, x=True) + csrcs + ext + b"body"
    v = read_packet(data, mid_id=4, audio_level_id=1)
    assert v.payload_offset == 12 + 8 + len(ext)
    assert v.mid == b"m"
    assert data[v.payload_offset : v.payload_end] == b"body"


def test_padding_is_excluded_from_payload() -> None:
    data = header(p=True) + b"media" + b"\x00\x00\x00\x04"
    v = read_packet(data, 4, 1)
    assert data[v.payload_offset : v.payload_end] == b"media"


def test_padding_only_packet_has_empty_payload() -> None:
    data = header(p=True) + b"\x00" * 199 + b"\xc8"  # 200 bytes of padding, like a bandwidth probe
    v = read_packet(data, 4, 1)
    assert v.payload_end == v.payload_offset == 12


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x60\x00",
        header()[:11],
        b"\x40" + header()[1:] + b"x",  # version 1
        b"\x00" * 12,  # version 0
        header(x=True),  # X set, no extension header
        header(x=True) + struct.pack("!HH", 0xBEDE, 2) + b"\x10\x01",  # block shorter than announced
        header(x=True) + struct.pack("!HH", 0xBEDE, 1) + bytes([0x3F, 0, 0, 0]),  # 16-byte value in 4 bytes
        header(x=True) + struct.pack("!HH", 0x1000, 1) + bytes([3, 9, 0, 0]),  # two-byte value overruns
        header(cc=3) + b"\x00" * 4,  # CSRC list longer than the packet
        header(p=True) + b"media\x00",  # padding count 0
        header(p=True) + b"ab\x09",  # padding count larger than the payload
    ],
)
def test_malformed_packets_raise_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        read_packet(data, 4, 1)


# ---------------------------------------------------------------- LegWriter


def test_abs_send_time_is_6_18_fixed_point_mod_64s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sfu.rtp, "time", SimpleNamespace(time=lambda: 64.25))
    assert sfu.rtp.abs_send_time_now() == b"\x01\x00\x00"  # 0.25 s after the 64 s wrap


def test_leg_writer_audio_mid_7_golden(fixed_ast: None) -> None:
    w = LegWriter(SSRC, 111, "7", ExtensionIds(mid=4, abs_send_time=2, audio_level=1), is_audio=True)
    out = w.write(True, 1000, 123456, 30, True, b"opus-frame")
    body = bytes([0x40]) + b"7" + bytes([0x22]) + AST + bytes([0x10, 0x80 | 30])  # 8 bytes: no padding
    expected = struct.pack("!BBHII", 0x90, 0x80 | 111, 1000, 123456, SSRC) + struct.pack("!HH", 0xBEDE, 2) + body
    assert out == expected + b"opus-frame"


def test_leg_writer_two_digit_mid_is_padded(fixed_ast: None) -> None:
    w = LegWriter(SSRC, 111, "12", ExtensionIds(mid=4, abs_send_time=2, audio_level=1), is_audio=True)
    out = w.write(False, 7, 8, 127, False, memoryview(b"\x01\x02"))
    body = bytes([0x41]) + b"12" + bytes([0x22]) + AST + bytes([0x10, 127]) + b"\x00\x00\x00"  # 9 + 3 padding
    expected = struct.pack("!BBHII", 0x90, 111, 7, 8, SSRC) + struct.pack("!HH", 0xBEDE, 3) + body
    assert out == expected + b"\x01\x02"
    words = struct.unpack_from("!H", out, 14)[0]
    assert 16 + 4 * words == len(out) - 2  # the length field covers exactly the block


def test_leg_writer_video_has_no_audio_level() -> None:
    w = LegWriter(1, 96, "12", ExtensionIds(mid=4, abs_send_time=2, audio_level=1), is_audio=False)
    out = w.write(False, 1, 2, 50, True, b"v")
    words = struct.unpack_from("!H", out, 14)[0]
    assert words == 2  # MID (3) + abs-send-time (4) + 1 padding byte
    block = out[16 : 16 + 4 * words]
    assert block[:3] == b"\x4112" and block[3] == 0x22 and block[7] == 0
    assert out[16 + 4 * words :] == b"v"


def test_leg_writer_without_extensions() -> None:
    w = LegWriter(SSRC, 96, "0", ExtensionIds(), is_audio=False)
    assert w.write(True, 5, 6, None, False, b"pl") == struct.pack("!BBHII", 0x80, 0x80 | 96, 5, 6, SSRC) + b"pl"


def test_leg_writer_audio_level_absent_on_input_is_omitted(fixed_ast: None) -> None:
    w = LegWriter(SSRC, 111, "7", ExtensionIds(mid=4, audio_level=1), is_audio=True)
    out = w.write(False, 1, 1, None, False, b"x")
    assert out[12:] == struct.pack("!HH", 0xBEDE, 1) + b"\x407\x00\x00" + b"x"


@pytest.mark.parametrize("mid", ["", "x" * 17])
def test_leg_writer_rejects_mid_that_does_not_fit(mid: str) -> None:
    with pytest.raises(ValueError):
        LegWriter(1, 96, mid, ExtensionIds(mid=4), is_audio=False)


@pytest.mark.parametrize("mid", ["7", "12", "abcdefghijklmnop"])
def test_written_packet_reads_back_and_aiortc_sees_the_same(mid: str) -> None:
    ids = ExtensionIds(mid=4, abs_send_time=2, audio_level=1)
    w = LegWriter(0xCAFEBABE, 111, mid, ids, is_audio=True)
    out = w.write(True, 4242, 99, 17, True, b"frame-bytes")

    v = read_packet(out, mid_id=4, audio_level_id=1)
    assert v.mid == mid.encode() and v.audio_level == 17 and v.voice
    assert (v.sequence, v.timestamp, v.ssrc, v.payload_type, v.marker) == (4242, 99, 0xCAFEBABE, 111, True)
    assert out[v.payload_offset : v.payload_end] == b"frame-bytes"

    # The browser's view: aiortc's parser configured with the negotiated extension ids.
    ext_map = HeaderExtensionsMap()
    ext_map.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=4, uri=EXT_MID),
        RTCRtpHeaderExtensionParameters(id=2, uri=EXT_ABS_SEND_TIME),
        RTCRtpHeaderExtensionParameters(id=1, uri=EXT_AUDIO_LEVEL),
    ]))
    pkt = RtpPacket.parse(out, ext_map)
    assert pkt.extensions.mid == mid
    assert pkt.extensions.audio_level == (True, 17)
    assert pkt.extensions.abs_send_time is not None
    assert (pkt.sequence_number, pkt.timestamp, pkt.ssrc, pkt.payload_type) == (4242, 99, 0xCAFEBABE, 111)
    assert pkt.payload == b"frame-bytes"


# ---------------------------------------------------------------- RTX and sequence numbers


def test_unwrap_rtx_restores_original_packet() -> None:
    ext = one_byte_block([(4, b"3")])
    rtx = header(pt=97, seq=20, ts=5555, ssrc=0xBBBB, x=True, marker=True) + ext + struct.pack("!H", 65000) + b"vp8data"
    v = read_packet(rtx, 4, 1)
    out = unwrap_rtx(rtx, v, media_ssrc=0xAAAA, media_pt=96)
    assert out == header(pt=96, seq=65000, ts=5555, ssrc=0xAAAA, x=True, marker=True) + ext + b"vp8data"


def test_unwrap_rtx_drops_rtx_padding_bit_and_padding() -> None:
    rtx = header(pt=97, seq=3, ts=1, ssrc=0xBBBB, p=True) + struct.pack("!H", 77) + b"abc" + b"\x00\x00\x03"
    out = unwrap_rtx(rtx, read_packet(rtx, 4, 1), 0xAAAA, 96)
    assert out is not None
    v = read_packet(out, 4, 1)
    assert (v.sequence, v.payload_type, v.ssrc) == (77, 96, 0xAAAA)
    assert out[0] & 0x20 == 0
    assert out[v.payload_offset : v.payload_end] == b"abc"


def test_unwrap_rtx_padding_only_probe_is_none() -> None:
    probe = header(pt=97, p=True) + b"\x00" * 3 + b"\x04"
    assert unwrap_rtx(probe, read_packet(probe, 4, 1), 0xAAAA, 96) is None


@pytest.mark.parametrize(
    ("a", "b", "newer"),
    [(1, 0, True), (0, 1, False), (5, 5, False), (0, 65535, True), (65535, 0, False),
     (10, 65530, True), (65530, 10, False), (0x7FFF, 0, True), (0x8000, 0, False)],
)
def test_seq_newer_across_wrap(a: int, b: int, newer: bool) -> None:
    assert seq_newer(a, b) is newer

"""sfu/vp8.py: the VP8 payload descriptor (RFC 7741 4.2), parsed and rewritten."""

from __future__ import annotations

import pytest

from sfu.vp8 import is_vp8_keyframe, parse_descriptor, rewrite_descriptor

KEY_HEADER = b"\x00\x9d\x01\x2a"  # P bit (LSB of the first byte) 0: keyframe
DELTA_HEADER = b"\x01\x02\x03\x04"  # P bit 1: interframe


def desc_bytes(*, s: bool = True, pid: int = 0, picture_id: int | None = None, bits: int = 15,
               tl0: int | None = None, tk: int | None = None) -> bytes:
    """A descriptor built from RFC 7741 figure 1, independently of the code under test."""
    first = (0x10 if s else 0) | pid
    has_x = picture_id is not None or tl0 is not None or tk is not None
    if not has_x:
        return bytes([first])
    ext = (0x80 if picture_id is not None else 0) | (0x40 if tl0 is not None else 0) | (0x30 if tk is not None else 0)
    out = bytes([first | 0x80, ext])
    if picture_id is not None:
        out += bytes([0x80 | (picture_id >> 8), picture_id & 0xFF]) if bits == 15 else bytes([picture_id & 0x7F])
    if tl0 is not None:
        out += bytes([tl0])
    if tk is not None:
        out += bytes([tk])
    return out


def test_minimal_descriptor_keyframe() -> None:
    d = parse_descriptor(desc_bytes() + KEY_HEADER)
    assert d.size == 1 and d.keyframe and d.starts_frame
    assert d.picture_id is None and d.picture_id_bits == 0 and d.tl0picidx is None


def test_seven_bit_picture_id() -> None:
    d = parse_descriptor(desc_bytes(picture_id=0x55, bits=7) + DELTA_HEADER)
    assert (d.picture_id, d.picture_id_bits, d.picture_id_at, d.size) == (0x55, 7, 2, 3)
    assert not d.keyframe


def test_fifteen_bit_picture_id() -> None:
    d = parse_descriptor(desc_bytes(picture_id=0x1234) + KEY_HEADER)
    assert (d.picture_id, d.picture_id_bits, d.picture_id_at, d.size) == (0x1234, 15, 2, 4)
    assert d.keyframe


def test_picture_id_tl0picidx_and_tid() -> None:
    d = parse_descriptor(desc_bytes(picture_id=0x7FFF, tl0=0xAB, tk=0x40) + KEY_HEADER)
    assert d.picture_id == 0x7FFF and d.tl0picidx == 0xAB and d.tl0picidx_at == 4
    assert d.size == 6 and d.keyframe


def test_tl0picidx_without_picture_id() -> None:
    d = parse_descriptor(desc_bytes(tl0=7) + DELTA_HEADER)
    assert d.picture_id is None and d.tl0picidx == 7 and d.tl0picidx_at == 2 and d.size == 3


def test_k_bit_alone_takes_one_byte() -> None:
    d = parse_descriptor(desc_bytes(picture_id=3, bits=7, tk=0x1F) + KEY_HEADER)
    assert d.size == 4 and d.keyframe  # the KEYIDX byte is skipped before the VP8 header


@pytest.mark.parametrize(
    ("descriptor", "payload", "keyframe"),
    [
        (desc_bytes(picture_id=1), KEY_HEADER, True),
        (desc_bytes(picture_id=1), DELTA_HEADER, False),  # P=1
        (desc_bytes(s=False, picture_id=1), KEY_HEADER, False),  # continuation packet
        (desc_bytes(pid=1, picture_id=1), KEY_HEADER, False),  # not partition 0
        (desc_bytes(picture_id=1), b"", False),  # descriptor only
    ],
)
def test_keyframe_detection(descriptor: bytes, payload: bytes, keyframe: bool) -> None:
    assert parse_descriptor(descriptor + payload).keyframe is keyframe
    assert is_vp8_keyframe(descriptor + payload) is keyframe


def test_partition_and_start_bits() -> None:
    d = parse_descriptor(desc_bytes(s=False, pid=3) + DELTA_HEADER)
    assert d.partition_id == 3 and not d.start_of_partition and not d.starts_frame


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x90",  # X set, no extension byte
        b"\x90\x80",  # I set, no PictureID
        b"\x90\x80\x80",  # 15-bit PictureID cut after its first byte
        b"\x90\x40",  # L set, no TL0PICIDX
        b"\x90\xc0\x05",  # I and L, TL0PICIDX missing
        b"\x90\x20",  # T set, no TID byte
        b"\x90\xf0\x81\x00\x07",  # I, L, T/K: TID byte missing
    ],
)
def test_truncated_descriptors_raise(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_descriptor(data)
    assert is_vp8_keyframe(data) is False


def test_parse_accepts_memoryview() -> None:
    data = b"junk" + desc_bytes(picture_id=300, tl0=9) + KEY_HEADER
    d = parse_descriptor(memoryview(data)[4:])
    assert d.picture_id == 300 and d.tl0picidx == 9 and d.keyframe


# ---------------------------------------------------------------- rewrite


@pytest.mark.parametrize(
    ("picture_id", "offset", "expected"),
    [(1000, 10, 990), (5, 10, 0x7FFF - 4), (0, 1, 0x7FFF), (0x7FFF, 0x7FFF, 0)],
)
def test_rewrite_fifteen_bit_picture_id_modulo(picture_id: int, offset: int, expected: int) -> None:
    data = desc_bytes(picture_id=picture_id, tl0=1) + KEY_HEADER + b"rest-of-frame"
    d = parse_descriptor(data)
    out = rewrite_descriptor(data, d, offset, 0)
    assert out[2] == 0x80 | (expected >> 8) and out[3] == expected & 0xFF  # M bit kept
    assert parse_descriptor(out).picture_id == expected
    assert out[:2] == data[:2] and out[4:] == data[4:]


@pytest.mark.parametrize(("picture_id", "offset", "expected"), [(100, 10, 90), (3, 5, 126), (0, 128, 0)])
def test_rewrite_seven_bit_picture_id_modulo(picture_id: int, offset: int, expected: int) -> None:
    data = desc_bytes(picture_id=picture_id, bits=7) + DELTA_HEADER
    out = rewrite_descriptor(data, parse_descriptor(data), offset, 0)
    assert out[2] == expected
    assert parse_descriptor(out).picture_id_bits == 7
    assert out[3:] == data[3:]


@pytest.mark.parametrize(("tl0", "offset", "expected"), [(10, 3, 7), (2, 5, 253), (0, 1, 255)])
def test_rewrite_tl0picidx_modulo_256(tl0: int, offset: int, expected: int) -> None:
    data = desc_bytes(picture_id=77, tl0=tl0, tk=0x40) + KEY_HEADER + bytes(range(256))
    d = parse_descriptor(data)
    out = rewrite_descriptor(memoryview(data), d, 0, offset)
    assert out[4] == expected
    assert out[:4] == data[:4]  # PictureID untouched with a zero offset
    assert out[5:] == data[5:]  # TID byte and the whole VP8 payload identical


def test_rewrite_both_and_rest_identical() -> None:
    payload = bytes(range(200)) * 3
    data = desc_bytes(picture_id=20000, tl0=100, tk=0xE0) + KEY_HEADER + payload
    d = parse_descriptor(data)
    out = rewrite_descriptor(data, d, 19999, 99)
    back = parse_descriptor(out)
    assert (back.picture_id, back.tl0picidx, back.size, back.keyframe) == (1, 1, d.size, True)
    assert out[d.size :] == data[d.size :]
    assert len(out) == len(data)


def test_rewrite_with_zero_offsets_is_identity() -> None:
    data = desc_bytes(picture_id=1234, tl0=5) + DELTA_HEADER
    assert rewrite_descriptor(memoryview(data), parse_descriptor(data), 0, 0) == data


def test_rewrite_without_fields_ignores_offsets() -> None:
    data = desc_bytes() + KEY_HEADER
    assert rewrite_descriptor(data, parse_descriptor(data), 50, 7) == data

"""The programme's encoders and outputs: H.264 over RTP, Opus over RTP, HLS (and the recording), RTMP."""

from __future__ import annotations

import json
import socket
import struct
import time
from pathlib import Path

import av
import numpy as np
import pytest

from sfu.h264 import starts_keyframe
from sfu.programme.encoder import Encoder, EncoderSettings, HlsWriter, h264_encoder
from sfu.programme.packetize import MTU, NAL_FU_A, RtpStream, fragment_nal, split_nals
from sfu.programme.rtmp import RtmpPush

SETTINGS = EncoderSettings(width=320, height=180, fps=15, video_bitrate=300_000)


def reassemble(payloads: list[bytes]) -> list[bytes]:
    """The NAL units carried by one picture's RTP payloads (single NAL units and FU-A)."""
    nals: list[bytes] = []
    pending = bytearray()
    for payload in payloads:
        if payload[0] & 0x1F != NAL_FU_A:
            nals.append(payload)
            continue
        if payload[1] & 0x80:
            pending = bytearray([(payload[0] & 0xE0) | (payload[1] & 0x1F)])
        pending += payload[2:]
        if payload[1] & 0x40:
            nals.append(bytes(pending))
    return nals


def annexb(nals: list[bytes]) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + nal for nal in nals)


def picture(index: int, width: int = 320, height: int = 180) -> av.VideoFrame:
    """A moving, noisy picture: large enough NAL units to need fragmenting."""
    rng = np.random.default_rng(index)
    rgb = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    rgb[:, (index * 8) % width :] //= 3
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")


def tone(index: int, hz: float = 440.0) -> np.ndarray:
    t = np.arange(index * 960, (index + 1) * 960) / 48000
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)


def rtp_fields(packet: bytes) -> tuple[bool, int, int, int, int, bytes]:
    b0, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", packet)
    assert b0 == 0x80
    return bool(b1 & 0x80), b1 & 0x7F, seq, ts, ssrc, packet[12:]


def run(encoder: Encoder, seconds: float, keyframes: range | tuple[int, ...] = ()) -> None:
    """Feed ``seconds`` of pictures and tones, paced by index only (as fast as possible)."""
    audio = 0
    for index in range(int(seconds * SETTINGS.fps)):
        encoder.video(picture(index), index, keyframe=index in keyframes)
        while audio * 960 < (index + 1) * 48000 / SETTINGS.fps:
            encoder.audio(tone(audio), audio)
            audio += 1


# ---------------------------------------------------------------------- H.264 packetization


def test_nal_units_are_split_on_three_and_four_byte_start_codes() -> None:
    stream = b"\x00\x00\x00\x01\x67\x42\x00" + b"\x00\x00\x01\x68\xce" + b"\x00\x00\x00\x01\x65\x88\x84\x00"
    assert split_nals(stream) == [b"\x67\x42", b"\x68\xce", b"\x65\x88\x84\x00"]


def test_a_large_nal_unit_goes_in_fu_a_fragments_that_reassemble() -> None:
    nal = bytes([0x65]) + bytes(range(256)) * 20
    fragments = fragment_nal(nal, 1188)
    assert len(fragments) == 5 and all(len(f) <= 1188 for f in fragments)
    assert [f[0] for f in fragments] == [0x60 | NAL_FU_A] * 5  # NRI kept, type 28
    assert fragments[0][1] == 0x80 | 5 and fragments[-1][1] == 0x40 | 5 and fragments[2][1] == 5
    assert reassemble(fragments) == [nal]
    assert fragment_nal(b"\x68\xce\x3c\x80", 1188) == [b"\x68\xce\x3c\x80"]


def test_encoded_pictures_packetize_reassemble_and_decode() -> None:
    encoder = h264_encoder(SETTINGS)
    stream = RtpStream(102, 0x1234)
    decoder = av.CodecContext.create("h264", "r")
    decoded = fragmented = 0
    sequence = None
    for index in range(20):
        frame = picture(index)
        frame.pts = index
        for packet in encoder.encode(frame):
            original = bytes(packet)
            rtp = stream.h264(original, index * 6000)
            fields = [rtp_fields(p) for p in rtp]
            assert all(len(p) <= MTU for p in rtp)
            assert [f[0] for f in fields] == [False] * (len(rtp) - 1) + [True]  # the marker ends the picture
            assert {(f[1], f[3] - stream.timestamp_base, f[4]) for f in fields} == {(102, index * 6000, 0x1234)}
            for f in fields:
                assert sequence is None or f[2] == (sequence + 1) & 0xFFFF
                sequence = f[2]
            fragmented += sum(f[5][0] & 0x1F == NAL_FU_A for f in fields)
            nals = reassemble([f[5] for f in fields])
            assert nals == split_nals(original)
            if packet.is_keyframe:
                assert nals[0][0] & 0x1F == 7 and starts_keyframe(fields[0][5])  # SPS first: the SFU's gate sees it
            for frame_out in decoder.decode(av.Packet(annexb(nals))):
                assert (frame_out.width, frame_out.height) == (320, 180)
                decoded += 1
    assert decoded == 20 and fragmented > 20


def test_a_requested_keyframe_is_an_idr_picture_with_sps_and_pps() -> None:
    sent: list[bytes] = []
    encoder = Encoder(SETTINGS, RtpStream(102, 1), RtpStream(111, 2), sent.append)
    run(encoder, 1.0, keyframes=(7,))
    assert encoder.keyframes == 2 and encoder.last_keyframe == 7
    video = [rtp_fields(p) for p in sent if rtp_fields(p)[1] == 102]
    at_7 = [f for f in video if f[3] - encoder.video_rtp.timestamp_base == 7 * 6000]
    assert [n[0] & 0x1F for n in reassemble([f[5] for f in at_7])][:2] == [7, 8]
    assert 5 in [n[0] & 0x1F for n in reassemble([f[5] for f in at_7])]
    encoder.close()


def test_opus_packets_are_stamped_every_20_ms_and_decode() -> None:
    sent: list[bytes] = []
    encoder = Encoder(SETTINGS, RtpStream(102, 1), RtpStream(111, 2), sent.append)
    run(encoder, 1.0)
    audio = [rtp_fields(p) for p in sent if rtp_fields(p)[1] == 111]
    assert len(audio) == encoder.audio_frames == 50
    base = encoder.audio_rtp.timestamp_base
    assert [(f[3] - base) & 0xFFFFFFFF for f in audio] == [i * 960 for i in range(50)]
    decoder = av.CodecContext.create("opus", "r")
    pcm = np.concatenate([f.to_ndarray().reshape(-1) for p in audio for f in decoder.decode(av.Packet(p[5]))])
    spectrum = np.abs(np.fft.rfft(pcm[4800:]))
    assert abs(np.argmax(spectrum) * 48000 / len(pcm[4800:]) - 440) < 5
    encoder.close()


# ---------------------------------------------------------------------- HLS and the recording


def decode_all(path: Path | str) -> tuple[int, np.ndarray]:
    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    with av.open(str(path)) as container:
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return frames, pcm


def test_hls_keeps_every_segment_decodes_and_ends_with_endlist(tmp_path: Path) -> None:
    hls = HlsWriter(tmp_path, SETTINGS, 1.0)
    encoder = Encoder(SETTINGS, RtpStream(102, 1), RtpStream(111, 2), lambda _: None, hls)
    started = time.time()
    hls.describe(started, sitting="cm-2026-03-12", width=320, height=180, fps=15)
    run(encoder, 8.0, keyframes=range(0, 120, 15))  # a keyframe a second: 1 s segments
    playlist = (tmp_path / "programme.m3u8").read_text()
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in playlist and "#EXT-X-ENDLIST" not in playlist
    encoder.close()
    playlist = (tmp_path / "programme.m3u8").read_text()
    segments = [line for line in playlist.splitlines() if line.endswith(".ts")]
    assert playlist.rstrip().endswith("#EXT-X-ENDLIST")
    assert segments[0] == "seg00000.ts" and len(segments) >= 6  # an EVENT playlist forgets nothing
    assert "#EXT-X-PROGRAM-DATE-TIME" in playlist and "#EXT-X-INDEPENDENT-SEGMENTS" in playlist
    assert not list(tmp_path.glob("*.tmp"))
    frames, pcm = decode_all(tmp_path / "programme.m3u8")
    assert frames == 120
    assert 7.9 < len(pcm) / 48000 < 8.05
    with av.open(str(tmp_path / segments[1])) as segment:
        assert {s.type for s in segment.streams} == {"video", "audio"}
        assert segment.streams.video[0].codec_context.profile == "Constrained Baseline"
    info = json.loads((tmp_path / "recording.json").read_text())
    assert info == {"started_at": started, "sitting": "cm-2026-03-12", "width": 320, "height": 180, "fps": 15}


# ---------------------------------------------------------------------- RTMP (through a child process)


def test_rtmp_push_remuxes_the_same_packets_to_flv(tmp_path: Path) -> None:
    target = tmp_path / "push.flv"  # FFmpeg writes FLV to a file as it would to rtmp://
    push = RtmpPush(str(target), 320, 180, 15, 96000)
    encoder = Encoder(SETTINGS, RtpStream(102, 1), RtpStream(111, 2), lambda _: None, rtmp=push)
    run(encoder, 2.0)
    encoder.close()
    assert push.dropped == 0
    frames, pcm = decode_all(target)
    assert frames == 30 and 1.9 < len(pcm) / 48000 <= 2.0


def test_a_failing_rtmp_server_does_not_stop_the_encoder(capfd: pytest.CaptureFixture[str]) -> None:
    push = RtmpPush("rtmp://127.0.0.1:1/live/key", 320, 180, 15, 96000)
    sent: list[bytes] = []
    encoder = Encoder(SETTINGS, RtpStream(102, 1), RtpStream(111, 2), sent.append, rtmp=push)
    run(encoder, 1.0)
    encoder.close()
    assert encoder.video_frames == 15 and len(sent) > 15
    assert "retrying in 10 s" in capfd.readouterr().err


def test_a_silent_rtmp_server_blocks_only_the_push_process() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:  # accepts, never answers the RTMP handshake
        push = RtmpPush(f"rtmp://127.0.0.1:{server.getsockname()[1]}/live/key", 320, 180, 15, 96000)
        encoder = Encoder(SETTINGS, RtpStream(102, 1), RtpStream(111, 2), lambda _: None, rtmp=push)
        began = time.monotonic()
        run(encoder, 2.0)
        assert time.monotonic() - began < 2  # encoding went on at full speed
        server.settimeout(5)
        connection, _ = server.accept()  # the push process is in there, stuck
        child = push.child
        encoder.close()  # does not wait for the server: the stuck push process is ended
        connection.close()
        assert time.monotonic() - began < 7
        assert child is not None and child.returncode is not None


def test_sender_report_ties_the_stream_clock_to_wall_time() -> None:
    import struct as _struct

    from sfu.programme.packetize import NTP_EPOCH_OFFSET, RtpStream

    stream = RtpStream(102, 0xABCD)
    stream.packet(b"x" * 10, 0, True)
    report = stream.sender_report(1_800_000_000.25, 90_000)
    first, packet_type, length, ssrc, ntp, rtp, packets, octets = _struct.unpack("!BBHIQIII", report)
    assert (first, packet_type, length, ssrc) == (0x80, 200, 6, 0xABCD) and len(report) == 28
    assert ntp >> 32 == 1_800_000_000 + NTP_EPOCH_OFFSET and abs((ntp & 0xFFFFFFFF) / 2**32 - 0.25) < 1e-6
    assert rtp == (stream.timestamp_base + 90_000) & 0xFFFFFFFF and (packets, octets) == (1, 10)

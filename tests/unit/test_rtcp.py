"""sfu/rtcp.py: feedback packets checked with aiortc's RTCP parser, reception statistics, NACK tracking."""

from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest
from aiortc.rtp import (
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)

import sfu.rtcp
from sfu.producer import Producer, ProducerSpec
from sfu.rtcp import NackTracker, ReceiveStats, nack, pli, receiver_report, remb, sender_reports
from sfu.rtp import read_packet


def parse_one(data: bytes) -> object:
    (packet,) = RtcpPacket.parse(data)
    length = struct.unpack_from("!H", data, 2)[0]
    assert len(data) == 4 * (length + 1)  # the length field is right
    return packet


# ---------------------------------------------------------------- feedback packets


@pytest.mark.parametrize("cname", [b"", b"abc", b"{4f0a2b1c-0000}", b"x" * 36, b"x" * 255])
def test_sender_reports_fill_compound_packets_below_the_mtu(cname: bytes) -> None:
    reports = [(1000 + i, (0xE000_0000 + i) << 32 | 0x8000_0000, 90_000 * i, 10 * i, 1200 * i) for i in range(20)]
    packets = sender_reports(reports, cname)
    parsed = [list(RtcpPacket.parse(packet)) for packet in packets]  # aiortc reads each part's length
    srs = [p for group in parsed for p in group if isinstance(p, RtcpSrPacket)]
    assert [(p.ssrc, p.sender_info.ntp_timestamp, p.sender_info.rtp_timestamp) for p in srs] == [r[:3] for r in reports]
    assert [(p.sender_info.packet_count, p.sender_info.octet_count) for p in srs] == [r[3:] for r in reports]
    for group in parsed:
        size = len(group) // 2
        assert [type(p) for p in group] == [RtcpSrPacket] * size + [RtcpSdesPacket] * size  # a report first
        sdes = [(c.ssrc, c.items) for p in group[size:] for c in p.chunks]
        assert sdes == [(p.ssrc, [(1, cname)]) for p in group[:size]]
    assert all(len(p) % 4 == 0 and len(p) <= sfu.rtcp.MAX_RTCP_PACKET for p in packets)
    per_stream = 28 + 4 + (6 + len(cname)) // 4 * 4 + 4  # SR; SDES header, CNAME item and its end, padded
    fit = sfu.rtcp.MAX_RTCP_PACKET // per_stream
    assert len(packets) == -(-20 // fit)  # as few as fit


def test_pli() -> None:
    p = parse_one(pli(0x01020304, 0xA0B0C0D0))
    assert isinstance(p, RtcpPsfbPacket)
    assert (p.fmt, p.ssrc, p.media_ssrc, p.fci) == (1, 0x01020304, 0xA0B0C0D0, b"")


@pytest.mark.parametrize(
    ("lost", "fci"),
    [
        ([100], [(100, 0)]),
        ([100, 101, 116], [(100, 0x8001)]),  # 16 after the PID is the last BLP bit
        ([100, 117], [(100, 0), (117, 0)]),  # 17 after does not fit
        ([100, 102, 104, 106], [(100, 0b101010)]),
        ([65534, 65535, 0, 1], [(65534, 0b111)]),  # across the wrap
    ],
)
def test_nack_pid_blp(lost: list[int], fci: list[tuple[int, int]]) -> None:
    data = nack(7, 8, lost)
    assert data[12:] == b"".join(struct.pack("!HH", *item) for item in fci)
    p = parse_one(data)
    assert isinstance(p, RtcpRtpfbPacket)
    assert (p.fmt, p.ssrc, p.media_ssrc) == (1, 7, 8)
    assert [s & 0xFFFF for s in p.lost] == lost


def test_nack_long_run_and_unsorted_duplicates() -> None:
    run = list(range(1000, 1040))
    p = parse_one(nack(1, 2, run))
    assert isinstance(p, RtcpRtpfbPacket) and p.lost == run
    assert len(nack(1, 2, run)) == 12 + 4 * 3  # 40 seqs: 17 + 17 + 6
    p = parse_one(nack(1, 2, [105, 100, 100, 103]))
    assert isinstance(p, RtcpRtpfbPacket)
    assert sorted(p.lost) == [100, 103, 105]  # each asked for exactly once


@pytest.mark.parametrize(
    ("bitrate", "exact"), [(100_000, True), (300_000, True), (2_500_000, True), (1_000_001, False)]
)
def test_remb(bitrate: int, exact: bool) -> None:
    p = parse_one(remb(0x55, bitrate, [0xA0, 0xB0]))
    assert isinstance(p, RtcpPsfbPacket)
    assert (p.fmt, p.ssrc, p.media_ssrc) == (15, 0x55, 0)
    got, ssrcs = unpack_remb_fci(p.fci)
    assert ssrcs == [0xA0, 0xB0]
    if exact:
        assert got == bitrate
    else:
        assert bitrate * (1 - 2**-17) <= got <= bitrate


# ---------------------------------------------------------------- receive statistics


def test_receive_stats_loss_and_extended_highest_across_wrap(monkeypatch: pytest.MonkeyPatch) -> None:
    stats = ReceiveStats(48000)
    seqs = [65530, 65531, 65532, 65533, 65534, 65535, 0, 1, 3, 4, 5]  # 2 is lost
    for i, seq in enumerate(seqs):
        stats.add(seq, 960 * i, 0.02 * i)
    assert stats.expected == 12 and stats.received == 11 and stats.lost == 1
    assert stats.cycles == 1 << 16 and stats.max_seq == 5
    info = RtcpReceiverInfo.parse(stats.report_block(0xABCD))
    assert info.ssrc == 0xABCD
    assert info.highest_sequence == (1 << 16) + 5
    assert info.packets_lost == 1
    assert info.fraction_lost == 256 // 12
    assert info.lsr == 0 and info.dlsr == 0
    # next interval: 10 packets expected, 5 received
    for seq in (6, 8, 10, 12, 15):
        stats.add(seq, 0, 1.0)
    info = RtcpReceiverInfo.parse(stats.report_block(0xABCD))
    assert info.fraction_lost == (5 << 8) // 10 and info.packets_lost == 6
    # an interval with nothing new reports no loss
    info = RtcpReceiverInfo.parse(stats.report_block(0xABCD))
    assert info.fraction_lost == 0 and info.packets_lost == 6


def test_receive_stats_reordering_and_duplicates_do_not_count_as_loss() -> None:
    stats = ReceiveStats(90000)
    for seq in (10, 12, 11, 13, 13, 9):
        stats.add(seq, 0, 0.0)
    assert stats.max_seq == 13 and stats.cycles == 0
    assert stats.lost == 0  # 9 came before the base: expected 4, received 6
    info = RtcpReceiverInfo.parse(stats.report_block(1))
    assert info.fraction_lost == 0 and info.packets_lost == 0


def test_receive_stats_jitter() -> None:
    stats = ReceiveStats(48000)
    for i in range(20):
        stats.add(i, 960 * i, 10 + 0.02 * i)
    assert stats.jitter == pytest.approx(0, abs=1e-3)
    stats.add(20, 960 * 20, 10 + 0.02 * 20 + 0.010)  # 10 ms late: D = 480 ticks
    assert stats.jitter == pytest.approx(480 / 16, abs=0.01)


def test_receive_stats_lsr_and_dlsr(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [500.0]
    monkeypatch.setattr(sfu.rtcp, "time", SimpleNamespace(monotonic=lambda: now[0]))
    stats = ReceiveStats(90000)
    stats.add(1, 0, 0.0)
    stats.on_sender_report(0x1122334455667788)
    now[0] += 1.5
    info = RtcpReceiverInfo.parse(stats.report_block(9))
    assert info.lsr == 0x33445566
    assert info.dlsr == int(1.5 * 65536)


def test_receiver_report_packet() -> None:
    blocks = []
    for ssrc in (0xA0, 0xB0):
        stats = ReceiveStats(90000)
        stats.add(100, 0, 0.0)
        blocks.append(stats.report_block(ssrc))
    p = parse_one(receiver_report(0x77, blocks))
    assert isinstance(p, RtcpRrPacket)
    assert p.ssrc == 0x77 and [r.ssrc for r in p.reports] == [0xA0, 0xB0]
    assert [r.highest_sequence for r in p.reports] == [100, 100]
    p = parse_one(receiver_report(1, [blocks[0]] * 40))  # at most 31 report blocks fit
    assert isinstance(p, RtcpRrPacket) and len(p.reports) == 31


# ---------------------------------------------------------------- NACK tracking


def test_nack_tracker_finds_gaps_and_forgets_arrivals() -> None:
    t = NackTracker()
    assert t.add(10) == []
    assert t.add(11) == []
    assert t.add(15) == [12, 13, 14]
    assert t.add(13) == []  # a late arrival fills its hole
    assert sorted(t.missing) == [12, 14]
    assert t.add(13) == [] and t.add(16) == []


def test_nack_tracker_across_wrap() -> None:
    t = NackTracker()
    t.add(65533)
    assert t.add(2) == [65534, 65535, 0, 1]
    assert t.highest == 2


def test_nack_tracker_retries_then_gives_up() -> None:
    t = NackTracker()
    t.add(1)
    t.add(3)
    rounds = [t.due() for _ in range(NackTracker.MAX_TRIES + 2)]
    assert rounds == [[2]] * NackTracker.MAX_TRIES + [[], []]
    assert t.missing == {}


def test_nack_tracker_bounded() -> None:
    t = NackTracker()
    t.add(0)
    assert len(t.add(1000)) == NackTracker.MAX_MISSING
    t.add(1010)  # 9 more holes: the oldest ones are dropped
    assert len(t.missing) == NackTracker.MAX_MISSING
    assert 1 not in t.missing and 1009 in t.missing


def test_producer_sends_nacks_upstream_and_retries_on_tick() -> None:
    sent: list[bytes] = []
    spec = ProducerSpec(
        mid="1",
        kind="video",
        source="camera",
        payload_type=96,
        clock_rate=90000,
        codec="vp8",
        ssrc=0xA0,
        rtx_ssrc=None,
        rtx_payload_type=None,
        stream_id="s",
    )
    producer = Producer("p", spec, 4, 1, sent.append, feedback_ssrc=0x99)
    for seq in (1, 2, 5):
        data = struct.pack("!BBHII", 0x80, 96, seq, 0, 0xA0) + b"\x10\x01"
        producer.receive(data, read_packet(data, 4, 1))
    assert len(sent) == 1
    p = parse_one(sent[0])
    assert isinstance(p, RtcpRtpfbPacket) and (p.ssrc, p.media_ssrc, p.lost) == (0x99, 0xA0, [3, 4])
    producer.tick()
    p = parse_one(sent[1])
    assert isinstance(p, RtcpRtpfbPacket) and p.lost == [3, 4]
    data = struct.pack("!BBHII", 0x80, 96, 3, 0, 0xA0) + b"\x10\x01"  # 3 is repaired
    producer.receive(data, read_packet(data, 4, 1))
    producer.tick()
    p = parse_one(sent[2])
    assert isinstance(p, RtcpRtpfbPacket) and p.lost == [4]

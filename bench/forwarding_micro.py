"""Microbenchmark of the SFU's per-packet forwarding path, in one process.

It drives the real code: ``SendTransport._on_rtp`` (the DTLS tap) → ``read_packet`` →
``Producer.receive`` → each ``Consumer`` (rewrite: SSRC, PT, seq, ts, VP8 PictureID,
header extensions) → ``RecvTransport.send`` → ``aiortc_glue.make_sender`` (SRTP protect
with a real libsrtp session, ``sendto`` on an aioice ``StunProtocol``'s real UDP socket
on 127.0.0.1). Only DTLS and ICE are skipped: each subscriber leg gets an SRTP session
keyed at random and a "nominated pair" pointing at a UDP socket the bench reads.

The same packets go through variants of the path, so the differences give each stage's
cost inside the real path:

* ``full``: everything, up to the ``sendto`` system call, one socket per leg (aioice's default);
* ``mux``: the same, every leg on one shared socket (``ice.udp_port``, sfu/udp_mux.py), one
  ``sendto`` per datagram;
* ``mux-batch``: the shared socket with its batch: one ``sendmmsg`` per incoming packet
  (sfu/udp_batch.py);
* ``no-sendto``: the same, the socket's ``sendto`` replaced by a no-op;
* ``no-srtp``: the leg's send is a no-op (rewrite only, no SRTP, no socket);
* ``paused``: every consumer paused (what idle consumers cost per incoming packet);
* ``n=0``: the producer alone (per incoming packet, not multiplied by N).

µs per forwarded packet = process CPU time ÷ (incoming packets × N); the receiving
sockets are drained between batches, outside the timed part. The kernel's loopback
delivery (the receiver's queue) is inside ``sendto``; nobody sleeps on the receiving
sockets here, so no wake-up is charged to the sender, unlike in ``bench.relay``.

    .venv/bin/python -m bench.forwarding_micro                  # N=128, VP8 1.2 KB, AES-128-GCM
    .venv/bin/python -m bench.forwarding_micro --n 32 128 --profile aes_cm --audio
    .venv/bin/python -m bench.forwarding_micro --only full --seconds 20   # under py-spy
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import socket
import statistics
import struct
import sys
import time
from types import SimpleNamespace
from typing import Any

import aioice.ice
import pylibsrtp

from sfu import aiortc_glue as glue
from sfu import udp_batch
from sfu.consumer import Consumer
from sfu.producer import Producer, ProducerSpec
from sfu.rtp import ExtensionIds
from sfu.transport import RecvTransport, SendTransport
from sfu.udp_mux import SharedUdpPort

PROFILES = {
    "aes128gcm": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 28),
    "aes256gcm": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 44),
    "aes_cm": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30),
}
PUB_MID_ID, PUB_AST_ID, PUB_LEVEL_ID = 4, 2, 1  # the publisher's extension ids (like Chromium's)
LEG_IDS = ExtensionIds(mid=9, abs_send_time=3, audio_level=10)  # a subscriber leg's, all different
BATCH = 40  # incoming packets between two drains of the receiving sockets
VARIANTS = ("full", "mux", "mux-batch", "no-sendto", "no-srtp", "paused", "n=0")


class NullUdp:
    """A datagram transport whose ``sendto`` does nothing (the ``no-sendto`` variant)."""

    def sendto(self, data: Any, addr: Any = None) -> None:
        pass


def publisher_packet(seq: int, ts: int, size: int, audio: bool, key: bool) -> bytes:
    """An RTP packet as Chromium sends it: MID, abs-send-time (and audio level) extensions."""
    ext = bytes([(PUB_MID_ID << 4) | 0]) + b"1" + bytes([(PUB_AST_ID << 4) | 2]) + b"\x00\x01\x02"
    if audio:
        ext += bytes([PUB_LEVEL_ID << 4, 0x80 | 30])
    ext += b"\x00" * (-len(ext) % 4)
    header = struct.pack("!BBHII", 0x90, 111 if audio else 96, seq, ts, 0x1234 if audio else 0x5678)
    header += struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext
    if audio:
        payload = bytes(size)
    else:  # VP8 descriptor with a 15-bit PictureID and TL0PICIDX, then the frame's bytes
        picture_id = seq & 0x7FFF
        payload = bytes([0x90, 0xC0, 0x80 | (picture_id >> 8), picture_id & 0xFF, seq & 0xFF])
        payload += bytes([0x00 if key else 0x01]) + bytes(size - 6)
    return header + payload


def srtp_session(profile: str) -> pylibsrtp.Session:
    libsrtp_profile, key_size = PROFILES[profile]
    policy = pylibsrtp.Policy(
        key=os.urandom(key_size), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=libsrtp_profile
    )
    policy.allow_repeat_tx = True  # as aiortc sets it (retransmissions repeat a sequence number)
    policy.window_size = 1024
    return pylibsrtp.Session(policy)


class Bench:
    def __init__(self, n: int, audio: bool, size: int, profile: str, mux: str | None = None) -> None:
        self.n, self.audio, self.size, self.profile = n, audio, size, profile
        self.mux = mux  # None: a socket per leg; "sendto" or "batch": every leg on one shared socket
        self.shared: SharedUdpPort | None = None
        self.receivers: list[socket.socket] = []
        self.senders: list[asyncio.DatagramTransport] = []
        self.legs: list[RecvTransport] = []
        self.seq, self.ts = 1000, 90000

    async def setup(self) -> None:
        loop = asyncio.get_running_loop()
        kind = "audio" if self.audio else "video"
        self.pub = SendTransport("pub", [], {"camera": 1_000_000, "screen": 1_000_000})
        self.pub.mid_ext_id, self.pub.audio_level_ext_id = PUB_MID_ID, PUB_LEVEL_ID
        spec = ProducerSpec(
            mid="1", kind=kind, source="mic" if self.audio else "camera",
            payload_type=111 if self.audio else 96, clock_rate=48000 if self.audio else 90000,
            codec="opus" if self.audio else "vp8", ssrc=0x1234 if self.audio else 0x5678,
            rtx_ssrc=None, rtx_payload_type=None, stream_id="s",
        )  # fmt: skip
        self.producer = Producer("p", spec, PUB_MID_ID, PUB_LEVEL_ID, lambda _packet: None, 1)
        self.pub.add_producer(self.producer)
        if self.mux is not None:
            self.shared = SharedUdpPort(0)
            await self.shared.open(["127.0.0.1"])
            if self.mux != "batch":
                self.shared.muxes["127.0.0.1"].batch = None
        for i in range(self.n):
            rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            rx.bind(("127.0.0.1", 0))
            rx.setblocking(False)
            self.receivers.append(rx)
            protocol = aioice.ice.StunProtocol(SimpleNamespace(protocol_lost=lambda _p: None))
            if self.shared is not None:
                mux = self.shared.muxes["127.0.0.1"]
                protocol.connection_made(mux.attach(protocol, f"leg{i}", owner=protocol, remote_ufrag=lambda: None))
            else:
                udp, _ = await loop.create_datagram_endpoint(lambda p=protocol: p, local_addr=("127.0.0.1", 0))  # type: ignore[misc]
                self.senders.append(udp)
            pair = SimpleNamespace(protocol=protocol, remote_addr=rx.getsockname())
            dtls = SimpleNamespace(
                _tx_srtp=srtp_session(self.profile),
                _state=glue.DtlsState.CONNECTED,
                transport=SimpleNamespace(_connection=SimpleNamespace(_nominated={1: pair})),
            )
            leg = RecvTransport(f"sub{i}", [])
            slot = leg.add_slot(kind)
            slot.mid = str(i % 20)
            codecs = {"opus": 109} if self.audio else {"vp8": 100, "h264": 102}
            slot.configure(0x10000 + i, next(iter(codecs.values())), LEG_IDS, spec.clock_rate, codecs)
            leg.sink.attach(dtls)  # type: ignore[arg-type]
            leg.dtls = dtls  # type: ignore[attr-defined]
            self.legs.append(leg)
            Consumer(f"c{i}", self.producer, slot, leg.send)
        self.feed(1, key=True)  # every consumer syncs on a keyframe
        self.drain()

    def variant(self, name: str) -> None:
        """Set the path up for one variant (a bench is made for each)."""
        for leg in self.legs:
            consumer = leg.slots[0].consumer
            assert consumer is not None
            pair = leg.dtls.transport._connection._nominated[1]  # type: ignore[attr-defined]
            if name == "no-sendto":
                pair.protocol.transport = NullUdp()
                leg.sink.reroute()
            elif name == "no-srtp":
                leg.sink.send_built = lambda _length: True  # type: ignore[method-assign]
            elif name == "paused":
                consumer.set_paused(True)
            elif name == "n=0":
                consumer.close()

    def feed(self, count: int, key: bool = False) -> None:
        tap = self.pub._on_rtp
        for _ in range(count):
            data = publisher_packet(self.seq, self.ts, self.size, self.audio, key)
            tap(data, 0)
            self.seq = (self.seq + 1) & 0xFFFF
            self.ts = (self.ts + (960 if self.audio else 3000)) & 0xFFFFFFFF

    def drain(self) -> int:
        got = 0
        buf = bytearray(2048)
        for rx in self.receivers:
            while True:
                try:
                    rx.recv_into(buf)
                except BlockingIOError:
                    break
                got += 1
        return got

    def run(self, packets: int) -> tuple[float, float, int]:
        """CPU seconds, wall seconds spent forwarding ``packets`` incoming packets; datagrams received."""
        packets_list = [publisher_packet((self.seq + i) & 0xFFFF, self.ts + 3000 * i, self.size, self.audio, False)
                        for i in range(packets)]  # fmt: skip
        self.seq = (self.seq + packets) & 0xFFFF
        self.ts = (self.ts + 3000 * packets) & 0xFFFFFFFF
        tap = self.pub._on_rtp
        cpu = wall = 0.0
        received = 0
        for start in range(0, packets, BATCH):
            batch = packets_list[start : start + BATCH]
            c0, w0 = time.process_time(), time.perf_counter()
            for data in batch:
                tap(data, 0)
            cpu += time.process_time() - c0
            wall += time.perf_counter() - w0
            received += self.drain()
        return cpu, wall, received

    def close(self) -> None:
        for rx in self.receivers:
            rx.close()
        for udp in self.senders:
            udp.close()
        if self.shared is not None:
            self.shared.close()


def primitives(size: int, profile: str, rounds: int = 20000) -> dict[str, float]:
    """Tight-loop costs (µs) of the pieces, outside the path."""
    session = srtp_session(profile)
    packet = publisher_packet(1, 1, size, False, False)
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    for _ in range(rounds):
        session.protect(packet)
    out["pylibsrtp Session.protect"] = (time.perf_counter() - t0) / rounds * 1e6
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.setblocking(False)
    addr = rx.getsockname()
    buf = bytearray(2048)
    t = 0.0
    for _ in range(rounds // 100):
        t0 = time.perf_counter()
        for _ in range(100):
            tx.sendto(packet, addr)
        t += time.perf_counter() - t0
        for _ in range(100):
            rx.recv_into(buf)
    out["socket.sendto (loopback)"] = t / rounds * 1e6
    rx.close()
    tx.close()
    return out


async def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for n in args.n:
        for variant in args.only or VARIANTS:
            mux = {"mux": "sendto", "mux-batch": "batch"}.get(variant)
            if mux == "batch" and not udp_batch.available():
                print(f"N={n:4d} {variant:10s} skipped: no sendmmsg here", flush=True)
                continue
            bench = Bench(n, args.audio, args.size, args.srtp, mux)
            await bench.setup()
            bench.variant(variant)
            bench.run(max(BATCH, args.packets // 10))  # warm-up
            per_packet, wall_per_packet = [], []
            received = 0
            deadline = time.monotonic() + args.seconds
            for _ in range(args.repeat):
                cpu, wall, got = bench.run(args.packets)
                legs = max(1, n if variant != "n=0" else 1)
                per_packet.append(cpu / (args.packets * legs) * 1e6)
                wall_per_packet.append(wall / (args.packets * legs) * 1e6)
                received += got
                if args.seconds and time.monotonic() > deadline:
                    break
            bench.close()
            rows.append({"n": n, "variant": variant, "cpu_us": statistics.median(per_packet),
                         "cpu_us_min": min(per_packet), "wall_us": statistics.median(wall_per_packet),
                         "received": received})  # fmt: skip
            row = rows[-1]
            print(f"N={n:4d} {variant:10s} {row['cpu_us']:7.2f} µs/pkt CPU (min {row['cpu_us_min']:.2f}), "
                  f"{row['wall_us']:.2f} wall, {received} datagrams received", flush=True)  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.forwarding_micro", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[128], help="consumers of the one producer")
    parser.add_argument("--packets", type=int, default=400, help="incoming packets per repetition")
    parser.add_argument("--repeat", type=int, default=15, help="repetitions (the median is reported)")
    parser.add_argument("--seconds", type=float, default=0.0, help="stop repeating after this (0: no limit)")
    parser.add_argument("--size", type=int, default=1100, help="RTP payload bytes (video: VP8 descriptor included)")
    parser.add_argument("--audio", action="store_true", help="Opus-like packets with an audio level")
    parser.add_argument("--srtp", choices=sorted(PROFILES), default="aes128gcm", help="SRTP profile of the legs")
    parser.add_argument("--only", choices=VARIANTS, nargs="+", help="variants to run (default: all)")
    parser.add_argument("--no-uvloop", action="store_true", help="asyncio's loop instead of uvloop (the server's)")
    parser.add_argument("--no-primitives", action="store_true", help="skip the tight-loop costs of the pieces")
    args = parser.parse_args(argv)
    if not args.no_uvloop:
        import uvloop

        uvloop.install()
    gc.collect()
    gc.freeze()
    print(f"Python {sys.version.split()[0]}, {'asyncio' if args.no_uvloop else 'uvloop'}, SRTP {args.srtp}, "
          f"{'audio' if args.audio else 'VP8'} payload {args.size} B", flush=True)  # fmt: skip
    if not args.no_primitives:
        for name, value in primitives(args.size, args.srtp).items():
            print(f"  {name:40s} {value:6.2f} µs")
    rows = asyncio.run(measure(args))
    by = {(r["n"], r["variant"]): r["cpu_us"] for r in rows}
    for n in args.n:
        if all((n, v) in by for v in ("full", "no-sendto", "no-srtp")):
            full, no_send, no_srtp = by[n, "full"], by[n, "no-sendto"], by[n, "no-srtp"]
            print(f"N={n}: sendto {full - no_send:.2f} µs, SRTP and its glue {no_send - no_srtp:.2f} µs, "
                  f"rewrite and Python {no_srtp:.2f} µs; total {full:.2f} µs = {1e6 / full:,.0f} pkt/s per core")  # fmt: skip


if __name__ == "__main__":
    main()

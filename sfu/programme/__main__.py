"""``python -m sfu.programme``: the public programme of one sitting, a worker process of the SFU.

stdin: control messages (control.py), one JSON object a line; its end means stop.
stdout: ``{"type": "ready", "port": P}`` once the UDP socket is bound, then a
``{"type": "stats", ...}`` line every 5 s. stderr: diagnostics.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from pathlib import Path
from types import FrameType

from .encoder import EncoderSettings
from .worker import Config, Programme

SOCKET_BUFFER = 4 * 1024 * 1024


def address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` to the numeric address datagrams from the peer will carry."""
    host, _, port = text.rpartition(":")
    try:
        resolved = socket.getaddrinfo(host, int(port), socket.AF_INET, socket.SOCK_DGRAM)[0][4]
    except (OSError, ValueError) as error:
        raise argparse.ArgumentTypeError(f"not a HOST:PORT address: {text!r}") from error
    return str(resolved[0]), int(resolved[1])


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(prog="python -m sfu.programme",
                                     description="The public programme of one sitting: a worker process of the SFU.")
    parser.add_argument("--peer", type=address, required=True, help="the SFU's plain-RTP socket, HOST:PORT")
    parser.add_argument("--bind", default="127.0.0.1", help="address of our UDP socket (port chosen by the system)")
    parser.add_argument("--sitting", required=True, help="the sitting's id (shown until the first scene)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--video-bitrate", type=int, default=1_500_000, help="H.264 bit/s")
    parser.add_argument("--video-pt", type=int, default=102)
    parser.add_argument("--video-ssrc", type=int, required=True)
    parser.add_argument("--audio-pt", type=int, default=111)
    parser.add_argument("--audio-ssrc", type=int, required=True)
    parser.add_argument("--hls-dir", type=Path, help="write the HLS playlist, segments and recording.json here")
    parser.add_argument("--segment-s", type=float, default=2.0, help="seconds per HLS segment")
    parser.add_argument("--rtmp", help="also push by RTMP to this URL")
    args = parser.parse_args(argv)
    if args.width % 2 or args.height % 2 or not 1 <= args.fps <= 60:
        parser.error("--width and --height must be even, --fps within 1..60")
    return Config(
        peer=args.peer, sitting=args.sitting, bind=args.bind,
        encoder=EncoderSettings(args.width, args.height, args.fps, args.video_bitrate,
                                keyframe_interval_s=min(2.0, args.segment_s)),  # segments as short as asked
        video_pt=args.video_pt, video_ssrc=args.video_ssrc, audio_pt=args.audio_pt, audio_ssrc=args.audio_ssrc,
        hls_dir=args.hls_dir, segment_s=args.segment_s, rtmp=args.rtmp,
    )


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):  # a picture is a burst of packets
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        sock.bind((config.bind, 0))
        sock.settimeout(0.25)  # the receiving thread looks at the stop flag this often
        programme = Programme(config, sock, sys.stdout)

        def on_signal(_signum: int, _frame: FrameType | None) -> None:
            programme.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        programme.run()


if __name__ == "__main__":
    main()

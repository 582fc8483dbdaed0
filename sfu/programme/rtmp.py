"""The optional RTMP push (PeerTube, Owncast), in a child process of its own.

FFmpeg's RTMP client holds the GIL while it connects and handshakes, which can
last as long as the server keeps silent: in the programme's process that would
stop the clock. So the programme hands the encoded packets (nothing is encoded
twice) to ``python -m sfu.programme.rtmp`` through a pipe, from a thread, and
drops them while the pipe is full; the child remuxes them to FLV, and when the
server fails it logs, waits 10 s and reconnects at the next keyframe. A server
that stops answering would block the child for good (FFmpeg gets no timeout from
PyAV there), so a watchdog that needs no GIL ends the child after 20 s in one
call; the programme starts a new one 10 s later. A failing push never stops the
programme.

Pipe framing, one frame per packet: ``!BBqI`` (kind 0 video / 1 audio, keyframe,
pts in 1/fps for video or 1/48000 for audio, size), then the packet's bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import queue
import struct
import subprocess
import sys
import threading
import time
from fractions import Fraction
from typing import BinaryIO, Literal

import av

RETRY_S = 10.0
STALL_S = 20.0  # the longest a connection or a write may take
FRAME = struct.Struct("!BBqI")
KINDS = ("video", "audio")
QUEUE_PACKETS = 600  # about 8 s of packets at 30 fps


def log(message: str) -> None:
    print(f"programme rtmp: {message}", file=sys.stderr, flush=True)


class RtmpPush:
    """The programme's side: packets to the child through a bounded queue and a writer thread."""

    def __init__(self, url: str, width: int, height: int, fps: int, aac_bitrate: int) -> None:
        self.command = [sys.executable, "-m", "sfu.programme.rtmp", url, f"--width={width}", f"--height={height}",
                        f"--fps={fps}", f"--aac-bitrate={aac_bitrate}"]
        self.queue: queue.Queue[bytes | None] = queue.Queue(QUEUE_PACKETS)
        self.resync = True  # drop everything until a video keyframe: the child starts on one
        self.dropped = 0
        self.child: subprocess.Popen[bytes] | None = None
        self.retry_at = 0.0
        self.thread = threading.Thread(target=self._run, name="programme-rtmp", daemon=True)
        self.thread.start()

    def push(self, kind: Literal["video", "audio"], data: bytes, pts: int, keyframe: bool) -> None:
        """Queue one packet; never blocks. After a drop, resume only at a video keyframe."""
        if self.resync and not (kind == "video" and keyframe):
            self.dropped += 1
            return
        try:
            self.queue.put_nowait(FRAME.pack(KINDS.index(kind), keyframe, pts, len(data)) + data)
            self.resync = False
        except queue.Full:
            self.resync = True
            self.dropped += 1

    def close(self) -> None:
        """Let the child finish its FLV stream; wait for it briefly, then end it."""
        while True:
            try:
                self.queue.put_nowait(None)
                break
            except queue.Full:  # finishing: what was not sent yet can go
                with contextlib.suppress(queue.Empty):
                    self.queue.get_nowait()
        self.thread.join(timeout=2)
        child = self.child
        if child is not None:
            try:
                child.wait(timeout=2)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def _run(self) -> None:
        while (frame := self.queue.get()) is not None:
            child = self.child
            if child is None or child.poll() is not None:
                if time.monotonic() < self.retry_at:
                    continue
                try:
                    child = self.child = subprocess.Popen(self.command, stdin=subprocess.PIPE,
                                                          stdout=subprocess.DEVNULL)
                except OSError as error:
                    log(f"cannot start the push process ({error}); retrying in {RETRY_S:.0f} s")
                    self.retry_at = time.monotonic() + RETRY_S
                    continue
            assert child.stdin is not None
            try:
                child.stdin.write(frame)
                child.stdin.flush()
            except OSError as error:
                log(f"push process gone ({error}); restarting in {RETRY_S:.0f} s")
                child.kill()
                child.wait()
                self.child, self.retry_at = None, time.monotonic() + RETRY_S
        if self.child is not None and self.child.stdin is not None:
            try:
                self.child.stdin.close()
            except OSError:
                pass


class FlvOutput:
    """One connection to the server: FLV with the programme's H.264 and AAC, timestamps from its first picture."""

    def __init__(self, url: str, width: int, height: int, fps: int, aac_bitrate: int, origin: int) -> None:
        self.container = av.open(url, "w", format="flv")
        video = self.container.add_mux_stream("h264", rate=fps, width=width, height=height)
        audio = self.container.add_stream("aac", rate=48000, layout="mono", bit_rate=aac_bitrate)  # for its config
        self.streams = (video, audio)
        self.time_bases = (Fraction(1, fps), Fraction(1, 48000))
        self.origins = (origin, origin * 48000 // fps)

    def write(self, kind: int, keyframe: bool, pts: int, data: bytes) -> None:
        pts -= self.origins[kind]
        if pts < 0:
            return  # sound from before the first picture
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = self.time_bases[kind]
        packet.is_keyframe = keyframe
        packet.stream = self.streams[kind]
        self.container.mux(packet)

    def close(self) -> None:
        try:
            self.container.close()
        except (av.error.FFmpegError, OSError) as error:
            log(f"closing: {error}")


def read_frames(pipe: BinaryIO) -> tuple[int, bool, int, bytes] | None:
    head = pipe.read(FRAME.size)
    if len(head) < FRAME.size:
        return None
    kind, keyframe, pts, size = FRAME.unpack(head)
    data = pipe.read(size)
    return (kind, bool(keyframe), pts, data) if len(data) == size else None


def main() -> None:
    parser = argparse.ArgumentParser(description="Push the programme's packets (on stdin) by RTMP.")
    parser.add_argument("url")
    for option in ("--width", "--height", "--fps", "--aac-bitrate"):
        parser.add_argument(option, type=int, required=True)
    args = parser.parse_args()
    output: FlvOutput | None = None
    retry_at = 0.0
    while (frame := read_frames(sys.stdin.buffer)) is not None:
        kind, keyframe, pts, data = frame
        if output is None and (kind != 0 or not keyframe or time.monotonic() < retry_at):
            continue  # a connection starts on a keyframe
        faulthandler.dump_traceback_later(STALL_S, exit=True)
        try:
            if output is None:
                output = FlvOutput(args.url, args.width, args.height, args.fps, args.aac_bitrate, pts)
                log(f"pushing to {args.url}")
            output.write(kind, keyframe, pts, data)
        except (av.error.FFmpegError, OSError, ValueError) as error:
            log(f"push to {args.url} failed: {error}; retrying in {RETRY_S:.0f} s")
            if output is not None:
                output.close()
            output, retry_at = None, time.monotonic() + RETRY_S
        faulthandler.cancel_dump_traceback_later()
    if output is not None:
        output.close()


if __name__ == "__main__":
    main()

"""Shared pieces of the relay bench: loopback-only ICE, fixed VP8 bitrate, the test picture,
SDP helpers, the network-namespace check and a description of the machine."""

from __future__ import annotations

import os
import platform
import re
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import VideoStreamTrack

LOOPBACK = "127.0.0.1"


def restrict_to_loopback() -> None:
    """ICE host candidates on 127.0.0.1 only (aioice skips loopback by default)."""
    import aioice.ice

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [LOOPBACK] if use_ipv4 else []

    aioice.ice.get_host_addresses = host_addresses


def fix_vp8_bitrate(bitrate: int) -> None:
    """Pin aiortc's VP8 encoder to one bitrate: REMB cannot move it (clamped to MIN..MAX)."""
    from aiortc.codecs import vpx

    vpx.MIN_BITRATE = vpx.MAX_BITRATE = vpx.DEFAULT_BITRATE = int(bitrate)


def install_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:
        return False
    uvloop.install()
    return True


def non_loopback_candidates(sdp: str) -> list[str]:
    """Addresses of ICE candidates in ``sdp`` that are not on 127.0.0.0/8."""
    bad = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            fields = line.split()
            if len(fields) > 4 and not fields[4].startswith("127."):
                bad.append(fields[4])
    return bad


def assert_loopback_sdp(sdp: str) -> None:
    bad = non_loopback_candidates(sdp)
    if bad:
        raise RuntimeError(f"SDP offers non-loopback ICE candidates: {bad}")


def ssrc_kinds(sdp: str) -> dict[int, str]:
    """Map each SSRC announced in an SDP to the kind ("audio"/"video") of its m-line."""
    kinds: dict[int, str] = {}
    kind = ""
    for line in sdp.splitlines():
        if line.startswith("m="):
            kind = line[2:].split(" ", 1)[0]
        else:
            match = re.match(r"a=ssrc:(\d+) ", line)
            if match:
                kinds.setdefault(int(match.group(1)), kind)
    return kinds


# ---------------------------------------------------------------------------- the picture

BLOCK = 20  # same counter layout as tests/peers.py: 16 bits as 20x20 blocks, read with read_stamp()
STAMP_ROWS = 140  # the stamp lives in the top rows, which carry no noise


def stamp_counter(image: np.ndarray, counter: int) -> None:
    for bit in range(16):
        row, col = divmod(bit, 8)
        y, x = 40 + row * BLOCK * 2, 10 + col * BLOCK * 2
        image[y : y + BLOCK, x : x + BLOCK] = 255 if counter >> bit & 1 else 0


class BenchVideo(VideoStreamTrack):
    """A WxH@30 picture hard enough to keep a 1 Mbit/s VP8 encoder busy.

    A grey header with the frame counter (readable by ``tests.peers.read_stamp`` on the
    luma plane), then cycling noise and a moving box: VP8 cannot predict it away.
    """

    def __init__(self, width: int = 640, height: int = 480, noise_frames: int = 16) -> None:
        super().__init__()
        self.width, self.height = width, height
        rng = np.random.default_rng(7)
        body = height - STAMP_ROWS
        base = np.linspace(40, 200, width, dtype=np.float32)[None, :, None].repeat(body, 0).repeat(3, 2)
        self.noise = [
            np.clip(base + rng.normal(0, 28, (body, width, 3)), 0, 255).astype(np.uint8) for _ in range(noise_frames)
        ]
        self.counter = 0

    def picture(self, counter: int) -> np.ndarray:
        image = np.empty((self.height, self.width, 3), dtype=np.uint8)
        image[:STAMP_ROWS] = 128
        image[STAMP_ROWS:] = self.noise[counter % len(self.noise)]
        x = (counter * 6) % max(1, self.width - 80)
        image[STAMP_ROWS + 40 : STAMP_ROWS + 120, x : x + 80] = (230, 60, 60)
        stamp_counter(image, counter & 0xFFFF)
        return image

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame.from_ndarray(self.picture(self.counter), format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        self.counter += 1
        return frame


def luma(frame: av.VideoFrame) -> np.ndarray:
    """The Y plane of a decoded frame as a (height, width) array, without a colour conversion."""
    plane = frame.planes[0]
    data = np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)
    return data[:, : plane.width]


# ---------------------------------------------------------------------------- environment


def interfaces() -> list[str]:
    """Network interfaces of *this* network namespace (/sys/class/net may show the host's)."""
    names = []
    with open("/proc/net/dev") as handle:
        for line in handle.readlines()[2:]:
            names.append(line.split(":", 1)[0].strip())
    return names


def in_private_netns() -> bool:
    return all(name == "lo" for name in interfaces())


def machine_info() -> dict[str, Any]:
    import aioice
    import aiortc
    import psutil

    cpu_model = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    info: dict[str, Any] = {
        "cpu_model": cpu_model,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiortc": aiortc.__version__,
        "aioice": getattr(aioice, "__version__", "?"),
        "av": av.__version__,
        "numpy": np.__version__,
        "psutil": psutil.__version__,
    }
    try:
        import uvloop

        info["uvloop"] = uvloop.__version__
    except ImportError:
        info["uvloop"] = None
    return info

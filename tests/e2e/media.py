"""Fake camera (.y4m) and microphone (.wav) files, one distinct colour and tone per councillor.

Pure standard library: a solid-colour Y4M is the same frame repeated, and a tone is a few
seconds of 16-bit PCM. Chromium loops both files (``--use-file-for-fake-*-capture``).
"""

from __future__ import annotations

import math
import struct
import wave
from dataclasses import dataclass
from pathlib import Path

WIDTH, HEIGHT, FPS = 320, 240, 15
VIDEO_SECONDS = 2
AUDIO_RATE = 48_000
AUDIO_SECONDS = 2  # whole number of seconds: every tone below loops without a click

# name -> (RGB, tone in Hz). Colours far apart in RGB so that codec loss never confuses them.
PALETTE: dict[str, tuple[tuple[int, int, int], int]] = {
    "red": ((220, 30, 30), 440),
    "green": ((30, 200, 30), 660),
    "blue": ((30, 30, 220), 880),
    "yellow": ((230, 220, 30), 1100),
}
COLOURS = {name: rgb for name, (rgb, _tone) in PALETTE.items()}


@dataclass(frozen=True)
class FakeMedia:
    colour: str
    rgb: tuple[int, int, int]
    tone_hz: int
    y4m: Path
    wav: Path


def rgb_to_yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """BT.601 limited range, what Chromium assumes for a Y4M without colour metadata."""
    r, g, b = (c / 255 for c in rgb)
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    u = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    v = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    return tuple(max(0, min(255, round(x))) for x in (y, u, v))  # type: ignore[return-value]


def write_y4m(
    path: Path,
    rgb: tuple[int, int, int],
    *,
    width: int = WIDTH,
    height: int = HEIGHT,
    fps: int = FPS,
    seconds: int = VIDEO_SECONDS,
) -> Path:
    y, u, v = rgb_to_yuv(rgb)
    luma = bytes([y]) * (width * height)
    chroma_size = (width // 2) * (height // 2)
    frame = b"FRAME\n" + luma + bytes([u]) * chroma_size + bytes([v]) * chroma_size
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(fps * seconds):
            f.write(frame)
    return path


def write_tone_wav(
    path: Path, freq_hz: float, *, rate: int = AUDIO_RATE, seconds: int = AUDIO_SECONDS, amplitude: float = 0.5
) -> Path:
    n = rate * seconds
    scale = amplitude * 32767
    step = 2 * math.pi * freq_hz / rate
    pcm = struct.pack(f"<{n}h", *(int(scale * math.sin(step * i)) for i in range(n)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


def generate(directory: Path, colours: list[str] | None = None) -> dict[str, FakeMedia]:
    """Write (or reuse) one .y4m and one .wav per colour into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, FakeMedia] = {}
    for name in colours or list(PALETTE):
        rgb, tone = PALETTE[name]
        y4m = directory / f"{name}.y4m"
        wav = directory / f"{name}-{tone}hz.wav"
        if not y4m.exists():
            write_y4m(y4m, rgb)
        if not wav.exists():
            write_tone_wav(wav, tone)
        out[name] = FakeMedia(name, rgb, tone, y4m, wav)
    return out


def nearest_colour(rgb: tuple[float, float, float], known: dict[str, tuple[int, int, int]] | None = None) -> str:
    known = known or COLOURS
    return min(known, key=lambda n: sum((a - b) ** 2 for a, b in zip(rgb, known[n])))


if __name__ == "__main__":  # python tests/e2e/media.py DIR
    import sys

    for m in generate(Path(sys.argv[1] if len(sys.argv) > 1 else "e2e-media")).values():
        print(m)

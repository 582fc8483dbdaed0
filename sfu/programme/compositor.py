"""The programme's picture: the shown member's video with a caption, a slate, a card, or the title.

Everything drawn with Pillow is drawn once, when its text changes, and kept as
YUV 4:2:0 planes (plus alpha for the caption band); each frame is then numpy work
on the planes of a new ``yuv420p`` frame: the source scaled to fit (letterboxed,
aspect kept) and the caption band blended over its rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

from .control import Caption, Card, Scene, Slate

FONT_DIR = Path("/usr/share/fonts/truetype/liberation")
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Planes = tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint8]]
Rgb = tuple[int, int, int]
Still = Slate | Card | str  # a full picture: a slate, a card, or the title

BACKGROUND: Rgb = (18, 32, 58)  # the title picture and the card
SLATE: Rgb = (70, 20, 28)  # suspensions and closed sessions: unmistakably not the sitting
BAND: Rgb = (12, 24, 48)
BAND_ALPHA = 210
WHITE: Rgb = (255, 255, 255)
SOFT: Rgb = (214, 222, 235)
BLACK_YUV = (16, 128, 128)


@lru_cache(maxsize=32)
def font(size: int, bold: bool = False) -> Font:
    """LiberationSans (Bold) at ``size`` pixels, or Pillow's own font where it is not installed."""
    path = FONT_DIR / ("LiberationSans-Bold.ttf" if bold else "LiberationSans-Regular.ttf")
    if path.exists():
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def fit(text: str, face: Font, width: int) -> str:
    """``text`` cut with an ellipsis so that it is at most ``width`` pixels wide."""
    if face.getlength(text) <= width:
        return text
    short, long = 0, len(text)  # the longest prefix that fits with the ellipsis: a binary search
    while short < long:
        middle = (short + long + 1) // 2
        if face.getlength(text[:middle] + "…") <= width:
            short = middle
        else:
            long = middle - 1
    return text[:short].rstrip() + "…"


def wrap(text: str, face: Font, width: int, max_lines: int) -> list[str]:
    """Words of ``text`` in lines at most ``width`` pixels wide; the last kept line ellipsized."""
    lines: list[str] = []
    for word in text.split():
        if lines and face.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], lines[max_lines - 1] + " " + " ".join(lines[max_lines:])]
    return [fit(line, face, width) for line in lines]


def to_yuv(image: Image.Image) -> Planes:
    """An RGB image (even size) as its Y, U, V planes (BT.601 limited range, like the scaled sources)."""
    rgb = av.VideoFrame.from_ndarray(np.asarray(image.convert("RGB")), format="rgb24")
    y, u, v = frame_planes(rgb.reformat(format="yuv420p"))
    return y.copy(), u.copy(), v.copy()


def frame_planes(frame: av.VideoFrame) -> Planes:
    """Writable numpy views on the planes of a ``yuv420p`` frame (line padding cut off)."""
    views = []
    for plane in frame.planes:
        rows = np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)
        views.append(rows[:, : plane.width])
    return views[0], views[1], views[2]


@dataclass(frozen=True, slots=True)
class Overlay:
    """A pre-rendered band: its top row, its planes, and alpha at luma and chroma resolution (0..255)."""

    top: int
    planes: Planes
    alpha: tuple[NDArray[np.uint16], NDArray[np.uint16]]

    def blend(self, target: Planes) -> None:
        for index, (dst, src) in enumerate(zip(target, self.planes)):
            alpha = self.alpha[0 if index == 0 else 1]
            top = self.top if index == 0 else self.top // 2
            rows = dst[top : top + src.shape[0]]
            mixed = (rows.astype(np.uint16) * (255 - alpha) + src.astype(np.uint16) * alpha) // 255
            rows[:] = mixed.astype(np.uint8)


class Compositor:
    """Makes each programme frame (``width`` x ``height``, both even) from a source frame and the scene."""

    def __init__(self, width: int, height: int) -> None:
        if width % 2 or height % 2 or width < 64 or height < 64:
            raise ValueError("the programme picture must be at least 64x64 and of even size")
        self.width, self.height = width, height
        self._stills: dict[Still, Planes] = {}
        self._captions: dict[Caption, Overlay] = {}

    def compose(self, source: av.VideoFrame | None, scene: Scene) -> av.VideoFrame:
        """The picture for ``scene``: slate > card > ``source`` with its caption > the title."""
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        planes = frame_planes(frame)
        if scene.slate is not None:
            self._paste_still(planes, scene.slate)
        elif scene.card is not None:
            self._paste_still(planes, scene.card)
        else:
            if source is not None and scene.shows_video:
                self._paste_scaled(planes, source)
            else:
                self._paste_still(planes, scene.title)
            if scene.caption is not None:
                self._caption(scene.caption).blend(planes)
        return frame

    # ------------------------------------------------------------------ per frame

    def _paste_scaled(self, planes: Planes, source: av.VideoFrame) -> None:
        scale = min(self.width / source.width, self.height / source.height)
        width = min(self.width, max(2, round(source.width * scale / 2) * 2))
        height = min(self.height, max(2, round(source.height * scale / 2) * 2))
        scaled = source.reformat(width=width, height=height, format="yuv420p")
        left, top = (self.width - width) // 4 * 2, (self.height - height) // 4 * 2
        for index, (dst, src) in enumerate(zip(planes, frame_planes(scaled))):
            shift = 0 if index == 0 else 1
            x, y = left >> shift, top >> shift
            bottom, right = y + src.shape[0], x + src.shape[1]
            dst[y:bottom, x:right] = src
            if (width, height) != (self.width, self.height):  # the letterbox (or pillarbox) bars
                for bar in (dst[:y], dst[bottom:], dst[y:bottom, :x], dst[y:bottom, right:]):
                    bar.fill(BLACK_YUV[index])

    def _paste_still(self, planes: Planes, still: Still) -> None:
        pixels = self._stills.get(still)
        if pixels is None:
            pixels = to_yuv(self._render_still(still))
            self._stills = {still: pixels}  # one at a time: a scene changes seldom
        for dst, src in zip(planes, pixels):
            dst[:] = src

    # ------------------------------------------------------------------ drawn once per change

    def _render_still(self, still: Still) -> Image.Image:
        width, height = self.width, self.height
        text_width = width * 9 // 10
        if isinstance(still, Slate):
            image = Image.new("RGB", (width, height), SLATE)
            draw = ImageDraw.Draw(image)
            big, small = max(14, height // 9), max(10, height // 20)
            self._centred(draw, wrap(still.title, font(big, bold=True), text_width, 2), big, True, height * 2 // 5)
            if still.detail:
                self._centred(draw, wrap(still.detail, font(small), text_width, 3), small, False, height * 2 // 3, SOFT)
        elif isinstance(still, Card):
            image = Image.new("RGB", (width, height), BACKGROUND)
            draw = ImageDraw.Draw(image)
            big = max(12, height // 12)
            small = max(8, min(height // 16, height * 9 // 20 // max(1, len(still.lines))))
            margin, top = width // 12, height // 8
            draw.text((margin, top), fit(still.title, font(big, True), width - 2 * margin), font=font(big, True),
                      fill=WHITE)
            for row, line in enumerate(still.lines):
                draw.text((margin, top + big * 2 + row * small * 4 // 3), fit(line, font(small), width - 2 * margin),
                          font=font(small), fill=SOFT)
        else:
            image = Image.new("RGB", (width, height), BACKGROUND)
            size = max(12, height // 14)
            self._centred(ImageDraw.Draw(image), wrap(still, font(size, True), text_width, 3), size, True, height // 2)
        return image

    def _centred(self, draw: ImageDraw.ImageDraw, lines: list[str], size: int, bold: bool, middle: int,
                 fill: Rgb = WHITE) -> None:
        step = size * 5 // 4
        top = middle - step * len(lines) // 2 + step // 2
        for row, line in enumerate(lines):
            draw.text((self.width // 2, top + row * step), line, font=font(size, bold), fill=fill, anchor="mm")

    def _caption(self, caption: Caption) -> Overlay:
        overlay = self._captions.get(caption)
        if overlay is None:
            overlay = self._render_caption(caption)
            self._captions = {caption: overlay}  # the previous speaker's band is not coming back soon
        return overlay

    def _render_caption(self, caption: Caption) -> Overlay:
        """The lower third: a translucent band, the name in bold, the agenda item below."""
        band = max(16, self.height * 17 // 100) // 2 * 2
        top = (self.height - band - self.height // 20) // 2 * 2
        margin = self.width // 24
        image = Image.new("RGBA", (self.width, band), (*BAND, BAND_ALPHA))
        draw = ImageDraw.Draw(image)
        name_face, detail_face = font(max(10, band * 36 // 100), bold=True), font(max(8, band * 25 // 100))
        width = self.width - 2 * margin
        if caption.detail:
            draw.text((margin, band * 30 // 100), fit(caption.name, name_face, width), font=name_face, fill=WHITE,
                      anchor="lm")
            draw.text((margin, band * 72 // 100), fit(caption.detail, detail_face, width), font=detail_face,
                      fill=SOFT, anchor="lm")
        else:
            draw.text((margin, band // 2), fit(caption.name, name_face, width), font=name_face, fill=WHITE, anchor="lm")
        alpha = np.asarray(image.getchannel("A"), dtype=np.uint16)
        chroma_alpha = alpha.reshape(band // 2, 2, self.width // 2, 2).mean(axis=(1, 3)).astype(np.uint16)
        return Overlay(top, to_yuv(image), (alpha, chroma_alpha))

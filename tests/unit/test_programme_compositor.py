"""The programme's picture: scaling and letterboxing, the caption band, slates, cards, the title."""

from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image, ImageDraw

from sfu.programme import compositor as compositor_module
from sfu.programme.compositor import Compositor, fit, font, frame_planes, wrap
from sfu.programme.control import Caption, Card, Scene, Slate

W, H = 320, 180
GREEN = (40, 160, 60)


def solid(width: int, height: int, rgb: tuple[int, int, int] = GREEN) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(np.full((height, width, 3), rgb, np.uint8), format="rgb24")


def luma(frame: av.VideoFrame) -> np.ndarray:
    return frame_planes(frame)[0].astype(int)


def text_rows(y: np.ndarray) -> int:
    """How many separate horizontal runs of rows carry bright (text) pixels."""
    inked = (y > 150).sum(axis=1) > 2
    return int(np.count_nonzero(inked[1:] & ~inked[:-1]) + inked[0])


def scene(**kw: object) -> Scene:
    return Scene(**{"title": "Conseil municipal", "audio": (), "video": 7, **kw})  # type: ignore[arg-type]


CAPTION = Caption(name="Mme Éloïse Dupré-Lefèvre", detail="Point 3 — « Révision du PLU » : débat")


def test_output_is_the_programme_size_in_yuv420p() -> None:
    frame = Compositor(W, H).compose(solid(640, 480), scene())
    assert (frame.width, frame.height, frame.format.name) == (W, H, "yuv420p")


def test_a_4_3_source_is_pillarboxed_keeping_its_aspect() -> None:
    y = luma(Compositor(W, H).compose(solid(640, 480), scene()))
    source_y = luma(solid(640, 480).reformat(format="yuv420p"))[0, 0]
    assert (y[:, :38] == 16).all() and (y[:, -38:] == 16).all()  # black bars, 40 px each side (240 px picture)
    assert abs(y[90, 160] - source_y) <= 2
    assert abs(y[:, 42:278] - source_y).max() <= 2


def test_a_wide_source_is_letterboxed() -> None:
    y = luma(Compositor(W, H).compose(solid(640, 120), scene()))
    assert (y[:58] == 16).all() and (y[122:] == 16).all()  # a 320x60 picture in the middle
    assert abs(y[62:118] - y[90, 160]).max() <= 2 and y[90, 160] > 60


def test_an_odd_sized_source_fills_the_picture() -> None:
    frame = Compositor(W, H).compose(solid(321, 181), scene())
    assert abs(luma(frame)[2:-2, 2:-2] - luma(frame)[90, 160]).max() <= 2


def test_the_caption_band_is_drawn_over_the_lower_third_only() -> None:
    compositor = Compositor(W, H)
    plain = luma(compositor.compose(solid(W, H), scene()))
    captioned = luma(compositor.compose(solid(W, H), scene(caption=CAPTION)))
    assert (captioned[:100] == plain[:100]).all()  # the upper part is the source untouched
    band = captioned[140:165]
    assert (band != plain[140:165]).mean() > 0.9  # the band darkens the source...
    assert (band > 200).sum() > 150  # ...and carries white text
    name_rows, detail_rows = captioned[140:152], captioned[154:166]
    assert (name_rows > 200).sum() > 50 and (detail_rows > 170).sum() > 30  # two lines: name, agenda item


def test_the_caption_is_drawn_with_pillow_once_per_change(monkeypatch: pytest.MonkeyPatch) -> None:
    compositor = Compositor(W, H)
    draws = 0
    real_draw = ImageDraw.Draw

    def counting_draw(image: Image.Image, mode: str | None = None) -> ImageDraw.ImageDraw:
        nonlocal draws
        draws += 1
        return real_draw(image, mode)

    monkeypatch.setattr(ImageDraw, "Draw", counting_draw)
    source = solid(W, H)
    for _ in range(10):
        compositor.compose(source, scene(caption=CAPTION))
    assert draws == 1
    compositor.compose(source, scene(caption=Caption(name="M. Martin", detail=None)))
    assert draws == 2


def test_no_source_frame_shows_the_title_and_still_the_caption() -> None:
    compositor = Compositor(W, H)
    title = luma(compositor.compose(None, scene()))
    assert (title[80:100] > 200).sum() > 100  # the sitting's title, in white, in the middle
    assert (title[:20] == title[0, 0]).all()  # on a plain background
    with_caption = luma(compositor.compose(None, scene(caption=CAPTION)))
    assert (with_caption[140:165] != title[140:165]).any()


def test_a_scene_without_video_ignores_the_source() -> None:
    compositor = Compositor(W, H)
    assert (luma(compositor.compose(solid(W, H), scene(video=None))) == luma(compositor.compose(None, scene()))).all()


def test_a_slate_replaces_the_video_with_its_title_and_detail() -> None:
    compositor = Compositor(W, H)
    slate = Slate(title="Séance suspendue", detail="Reprise à 21 h 30 — « huis clos »")
    y = luma(compositor.compose(solid(W, H), scene(slate=slate, caption=CAPTION)))
    background = y[5, 5]
    assert (y[:40] == background).all()
    assert (y[55:90] > 200).sum() > 300  # the title, large
    assert (y[110:130] > 150).sum() > 100  # the detail
    assert (y[140:170] == background).mean() > 0.95  # no caption band on a slate


def test_a_card_lists_its_lines_and_gives_way_to_a_slate() -> None:
    compositor = Compositor(W, H)
    card = Card(title="Vote : budget primitif", lines=("Adopté", "Pour 21 · Contre 4 · Abstention 2"))
    y = luma(compositor.compose(solid(W, H), scene(card=card)))
    assert text_rows(y) == 3  # the title, then each line
    slate = luma(compositor.compose(solid(W, H), scene(card=card, slate=Slate(title="Huis clos"))))
    assert (slate != y).any() and slate[5, 5] != y[5, 5]


def test_french_text_is_fitted_and_wrapped() -> None:
    face = font(20, bold=True)
    long = "Délibération n° 2024-17 « Révision générale du plan local d'urbanisme intercommunal » — débat"
    fitted = fit(long, face, 200)
    assert fitted.endswith("…") and face.getlength(fitted) <= 200
    assert fit("Égalité", face, 200) == "Égalité"
    lines = wrap(long, face, 200, 2)
    assert len(lines) == 2 and all(face.getlength(line) <= 200 for line in lines)


def test_without_liberation_fonts_pillow_s_own_font_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setattr(compositor_module, "FONT_DIR", tmp_path)
    font.cache_clear()
    try:
        y = luma(Compositor(W, H).compose(None, scene(slate=Slate(title="Séance « suspendue » — reprise"))))
        assert (y[55:90] > 200).sum() > 100
    finally:
        font.cache_clear()

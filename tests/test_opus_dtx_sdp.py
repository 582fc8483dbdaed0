"""Opus DTX in the SFU's answers to publishers (sfu/sdp_munging.py) and its setting, ``media.opus_dtx``.

``usedtx`` is a receiver's wish: it goes in the fmtp of the answer the SFU gives to a
publishing browser's offer, and the browser's Opus encoder follows it. An explicit
``usedtx`` already in the answer is left alone; with the setting off none is added.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiortc.sdp import SessionDescription

from config import Settings, load_settings
from sfu import sdp_munging
from sfu.sdp_munging import improve_answer

HEAD = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1"]
AUDIO = [
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 0",
    "c=IN IP4 0.0.0.0",
    "a=mid:0",
    "a=sendrecv",
    "a=rtpmap:111 opus/48000/2",
    "a=rtpmap:0 PCMU/8000",
]
VIDEO = ["m=video 9 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 0.0.0.0", "a=mid:1", "a=rtpmap:96 VP8/90000"]


def sdp(*sections: list[str]) -> str:
    return "\r\n".join(line for section in (HEAD, *sections) for line in section) + "\r\n"


def opus_fmtp(text: str) -> list[str]:
    return [line for line in text.split("\r\n") if line.startswith("a=fmtp:111 ")]


@pytest.fixture
def dtx_setting() -> Iterator[None]:
    """Whatever a test sets, the module goes back to its start-up default (on)."""
    yield
    sdp_munging.set_opus_dtx(True)


def test_dtx_is_asked_for_by_default() -> None:
    assert opus_fmtp(improve_answer(sdp(AUDIO, VIDEO))) == ["a=fmtp:111 minptime=10;useinbandfec=1;usedtx=1"]


def test_off_gives_the_fmtp_without_dtx(dtx_setting: None) -> None:
    sdp_munging.set_opus_dtx(False)
    out = improve_answer(sdp(AUDIO, VIDEO))
    assert opus_fmtp(out) == ["a=fmtp:111 minptime=10;useinbandfec=1"]
    assert "usedtx" not in out
    sdp_munging.set_opus_dtx(True)
    assert "usedtx=1" in improve_answer(sdp(AUDIO, VIDEO))


@pytest.mark.parametrize("enabled", [True, False])
def test_an_explicit_usedtx_is_kept_either_way(dtx_setting: None, enabled: bool) -> None:
    sdp_munging.set_opus_dtx(enabled)
    for explicit in ("usedtx=0", "usedtx=1", "USEDTX=0"):
        out = improve_answer(sdp([*AUDIO, f"a=fmtp:111 minptime=10;{explicit}"]))
        assert opus_fmtp(out) == [f"a=fmtp:111 minptime=10;{explicit};useinbandfec=1"]


def test_an_existing_fmtp_gets_dtx_appended_once_and_stays_idempotent() -> None:
    out = improve_answer(sdp([*AUDIO, "a=fmtp:111 minptime=10;stereo=1"]))
    assert opus_fmtp(out) == ["a=fmtp:111 minptime=10;stereo=1;useinbandfec=1;usedtx=1"]
    assert improve_answer(out) == out


def test_only_opus_gets_dtx_and_aiortc_parses_it() -> None:
    out = improve_answer(sdp(AUDIO, VIDEO))
    assert out.count("usedtx") == 1
    audio, video = SessionDescription.parse(out).media
    opus = next(codec for codec in audio.rtp.codecs if codec.name == "opus")
    assert opus.parameters["usedtx"] == "1" and opus.parameters["useinbandfec"] == 1
    assert all("usedtx" not in codec.parameters for codec in video.rtp.codecs)


def test_setting_defaults_on_and_follows_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("HEMICYCLE_")]:
        monkeypatch.delenv(name)
    assert load_settings().media.opus_dtx is True
    path = tmp_path / "hemicycle.toml"
    path.write_text("[media]\nopus_dtx = false\n", encoding="utf-8")
    assert load_settings(path).media.opus_dtx is False
    monkeypatch.setenv("HEMICYCLE_MEDIA__OPUS_DTX", "true")
    assert load_settings(path).media.opus_dtx is True  # the environment wins over the file
    monkeypatch.setenv("HEMICYCLE_MEDIA__OPUS_DTX", "false")
    assert Settings().media.opus_dtx is False

"""``hemicycle recordings list|delete|prune`` on a real data directory."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from signaling.cli import main

PLAYLIST = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000000,\nseg00000.ts\n#EXTINF:2.000000,\nseg00001.ts\n"


def make_run(root: Path, sitting: str, run: str, started_at: float, ended: bool = True) -> Path:
    path = root / "recordings" / sitting / run
    path.mkdir(parents=True)
    (path / "programme.m3u8").write_text(PLAYLIST + ("#EXT-X-ENDLIST\n" if ended else ""))
    (path / "recording.json").write_text(json.dumps({"started_at": started_at, "sitting": sitting}))
    for n in range(2):
        (path / f"seg{n:05d}.ts").write_bytes(b"\x47" * 188 * 10)
    return path


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in [k for k in os.environ if k.startswith("HEMICYCLE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HEMICYCLE_DATA_DIR", str(tmp_path))
    return tmp_path


def test_list_delete_and_prune(data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    old = make_run(data, "cm-2026-10", "20261001-180000", now - 40 * 86400)
    kept = make_run(data, "cm-2026-11", "20261128-180000", now - 3600)
    open_run = make_run(data, "cm-2026-11", "20261128-200000", now - 60, ended=False)

    assert main(["recordings", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert len(listing) == 3 and "20261001-180000" in listing[0] and "ended" in listing[0]
    assert "open" in listing[2] and "0.1 min" in listing[2]

    assert main(["recordings", "delete", "--sitting", "cm-2026-11", "--run", open_run.name]) == 2
    assert "still open" in capsys.readouterr().out and open_run.exists()
    assert main(["recordings", "delete", "--sitting", "cm-2026-11", "--run", open_run.name, "--force"]) == 0
    assert not open_run.exists() and kept.exists()
    assert main(["recordings", "delete", "--sitting", "../secret", "--run", "x"]) == 2

    assert main(["recordings", "prune"]) == 0
    assert "not set" in capsys.readouterr().out and old.exists()
    monkeypatch.setenv("HEMICYCLE_RECORDING__RETENTION_DAYS", "30")
    assert main(["recordings", "prune"]) == 0
    assert not old.exists() and kept.exists()

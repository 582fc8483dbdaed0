"""signaling/recordings.py: runs on disk, their playlists, retention, and names from URLs kept inside."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from signaling import recordings as rec

DAY = 86400.0
NOW = datetime(2026, 12, 10, 12, 0, tzinfo=UTC).timestamp()


def playlist(*durations: float, ended: bool = True) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:0",
             "#EXT-X-PLAYLIST-TYPE:EVENT"]
    for n, duration in enumerate(durations):
        lines += [f"#EXTINF:{duration:.6f},", f"seg{n:05d}.ts"]
    return "\n".join([*lines, *(["#EXT-X-ENDLIST"] if ended else [])]) + "\n"


def make_run(root: Path, sitting: str, run: str, *durations: float, ended: bool = True,
             started_at: float | None = None, segment_bytes: int = 100) -> Path:
    path = root / sitting / run
    path.mkdir(parents=True)
    (path / rec.PLAYLIST).write_text(playlist(*durations, ended=ended))
    for n in range(len(durations)):
        (path / f"seg{n:05d}.ts").write_bytes(b"\x47" * segment_bytes)
    if started_at is not None:
        (path / rec.METADATA).write_text(json.dumps({"started_at": started_at, "sitting": sitting, "width": 1280,
                                                     "height": 720, "fps": 30}))
    return path


def test_runs_are_listed_oldest_first_with_duration_end_and_size(tmp_path: Path) -> None:
    started = datetime(2026, 11, 28, 20, 15, 0, 250000, tzinfo=UTC).timestamp()
    make_run(tmp_path, "cm-28", "20261128-211000", 2.0, 1.5, ended=False, started_at=started + 3300)
    make_run(tmp_path, "cm-28", "20261128-201500", 2.0, 2.0, 0.5, started_at=started)
    (tmp_path / "cm-28" / "not-a-run").mkdir()
    (tmp_path / "cm-28" / "20261128-220000").mkdir()  # no playlist yet: not a run to show

    runs = rec.list_runs(tmp_path, "cm-28")

    assert [r.id for r in runs] == ["20261128-201500", "20261128-211000"]
    first, second = runs
    assert first.started_at == started and first.duration == pytest.approx(4.5) and first.ended
    assert first.segments == 3 and first.size == 300 + len(playlist(2.0, 2.0, 0.5)) + (first.path / rec.METADATA).stat().st_size
    assert not second.ended and second.duration == pytest.approx(3.5)
    assert first.to_json() == {"id": "20261128-201500", "started_at": started, "duration": 4.5, "ended": True,
                               "size": first.size, "segments": 3}


def test_without_metadata_the_run_name_is_its_utc_start(tmp_path: Path) -> None:
    make_run(tmp_path, "demo", "20261128-201500", 2.0)
    (run,) = rec.list_runs(tmp_path, "demo")
    assert run.started_at == datetime(2026, 11, 28, 20, 15, tzinfo=UTC).timestamp()


def test_sittings_with_runs(tmp_path: Path) -> None:
    make_run(tmp_path, "b-sitting", "20261128-201500", 2.0)
    make_run(tmp_path, "a.sitting", "20261128-201500", 2.0)
    (tmp_path / "empty").mkdir()
    (tmp_path / ".hidden").mkdir()
    assert rec.list_sittings(tmp_path) == ["a.sitting", "b-sitting"]
    assert rec.list_sittings(tmp_path / "missing") == []
    assert rec.list_runs(tmp_path, "missing") == []


def test_the_live_run_is_the_newest_without_endlist(tmp_path: Path) -> None:
    assert rec.live_run_id(tmp_path, "demo") is None
    make_run(tmp_path, "demo", "20261128-190000", 2.0, ended=False)  # cut short by a crash
    make_run(tmp_path, "demo", "20261128-201500", 2.0)
    assert rec.live_run_id(tmp_path, "demo") is None  # the newest ended: nothing is being written
    make_run(tmp_path, "demo", "20261128-201500-2", 2.0, ended=False)
    assert rec.live_run_id(tmp_path, "demo") == "20261128-201500-2"
    (tmp_path / "demo" / "20261128-230000").mkdir()  # created, no playlist yet
    assert rec.live_run_id(tmp_path, "demo") is None


@pytest.mark.parametrize(("text", "expected"), [
    (playlist(2.0, 1.0), playlist(2.0, 1.0)),
    (playlist(2.0, 1.0, ended=False), playlist(2.0, 1.0)),
    (playlist(2.0, ended=False).rstrip("\n"), playlist(2.0)),
    ("", "#EXT-X-ENDLIST\n"),
])
def test_endlist_is_appended_only_when_missing(text: str, expected: str) -> None:
    assert rec.closed_playlist(text) == expected
    assert rec.has_endlist(rec.closed_playlist(text))
    assert rec.closed_playlist(rec.closed_playlist(text)) == expected


def test_playlist_duration_and_segment_prefix() -> None:
    text = playlist(2.0, 2.0, 1.25, ended=False)
    assert rec.playlist_duration(text) == pytest.approx(5.25)
    assert rec.playlist_duration("#EXTM3U\n") == 0
    prefixed = rec.prefixed_segments(text, "20261128-201500/")
    assert "\n20261128-201500/seg00002.ts\n" in prefixed and "\nseg00000.ts" not in prefixed
    assert prefixed.count("#EXTINF") == 3 and prefixed.startswith("#EXTM3U\n")


@pytest.mark.parametrize("sitting", ["..", ".", "", "../demo", "demo/..", "a/b", ".hidden", "-x", "x" * 129, "a b", "a:b",
                                     "demo\x00", "demo\n", "%2e%2e", "..\\secret.key", " demo"])
def test_bad_sitting_ids_are_refused(tmp_path: Path, sitting: str) -> None:
    with pytest.raises(rec.RecordingPathError):
        rec.sitting_dir(tmp_path, sitting)
    with pytest.raises(rec.RecordingPathError):
        rec.run_file(tmp_path, sitting, "20261128-201500", "seg00000.ts")
    assert not rec.valid_sitting_id(sitting)


@pytest.mark.parametrize("run", ["..", "../20261128-201500", "20261128-201500/..", "20261128-201500/x", "2026",
                                 "20261128_201500", "20261128-201500-", " 20261128-201500", "20261128-201500\n"])
def test_bad_run_ids_are_refused(tmp_path: Path, run: str) -> None:
    with pytest.raises(rec.RecordingPathError):
        rec.run_dir(tmp_path, "demo", run)


@pytest.mark.parametrize("name", ["../../secret.key", "..", "recording.json", "seg00000.ts/..", "../seg00000.ts",
                                  ".ts", "seg 1.ts", "seg00000.TS", "seg00000.ts.bak", "a/b.ts", "programme.m3u8/x"])
def test_bad_file_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(rec.RecordingPathError):
        rec.run_file(tmp_path, "demo", "20261128-201500", name)


def test_good_names_resolve_inside(tmp_path: Path) -> None:
    run = rec.run_dir(tmp_path, "cm-2026.11_28", "20261128-201500-2")
    assert run == tmp_path / "cm-2026.11_28" / "20261128-201500-2"
    assert rec.run_file(tmp_path, "demo", "20261128-201500", "programme.m3u8").name == "programme.m3u8"
    assert rec.run_file(tmp_path, "demo", "20261128-201500", "seg00042.ts").name == "seg00042.ts"
    assert rec.sitting_dir(tmp_path, "séance-2026") == tmp_path / "séance-2026"


def test_symbolic_links_out_of_the_recordings_are_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "recordings", tmp_path / "outside"
    make_run(outside, "victim", "20261128-201500", 2.0)
    root.mkdir()
    os.symlink(outside / "victim", root / "linked")
    (root / "demo").mkdir()
    os.symlink(outside / "victim" / "20261128-201500", root / "demo" / "20261128-201500")
    with pytest.raises(rec.RecordingPathError):
        rec.sitting_dir(root, "linked")
    with pytest.raises(rec.RecordingPathError):
        rec.run_file(root, "demo", "20261128-201500", "seg00000.ts")
    assert rec.list_sittings(root) == [] and rec.list_runs(root, "demo") == []


def test_prune_deletes_runs_older_than_the_retention(tmp_path: Path) -> None:
    old = make_run(tmp_path, "old", "20261101-190000", 2.0, started_at=NOW - 40 * DAY)
    recent_of_old = make_run(tmp_path, "mixed", "20261201-190000", 2.0, started_at=NOW - 9 * DAY)
    stale = make_run(tmp_path, "mixed", "20261105-190000", 2.0, started_at=NOW - 35 * DAY)
    live = make_run(tmp_path, "live", "20261101-180000", 2.0, ended=False, started_at=NOW - 31 * DAY)
    crashed = make_run(tmp_path, "crashed", "20261101-180000", 2.0, ended=False, started_at=NOW - 31 * DAY)

    deleted = rec.prune(tmp_path, 30, NOW, is_live=lambda sitting: sitting == "live")

    assert sorted(deleted) == sorted([old, stale, crashed])
    assert not old.exists() and not (tmp_path / "old").exists()  # the emptied sitting goes too
    assert not stale.exists() and recent_of_old.exists()
    assert live.exists()  # being written: kept whatever its age
    assert rec.prune(tmp_path, 30, NOW) == [live]  # no longer live: deleted
    assert rec.prune(tmp_path, 30, NOW) == []


def test_delete_run_and_sitting(tmp_path: Path) -> None:
    first = make_run(tmp_path, "demo", "20261128-201500", 2.0)
    second = make_run(tmp_path, "demo", "20261128-211500", 2.0)
    assert rec.delete_run(tmp_path, "demo", "20261128-201500") == first
    assert not first.exists() and second.exists()
    assert rec.delete_sitting(tmp_path, "demo") == tmp_path / "demo"
    assert not (tmp_path / "demo").exists() and tmp_path.exists()
    with pytest.raises(rec.RecordingPathError):
        rec.delete_sitting(tmp_path, "..")
    with pytest.raises(rec.RecordingPathError):
        rec.delete_run(tmp_path, "demo", "../..")

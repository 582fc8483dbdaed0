"""The recordings of the public programme: one directory per run, and their retention.

Layout (written by the programme, sfu/programme): ``ROOT/<sitting>/<run>/`` holds
``programme.m3u8`` (an HLS EVENT playlist keeping every segment, ``#EXT-X-ENDLIST`` once
the run ended), the MPEG-TS segments and ``recording.json`` (``started_at``: POSIX time of
the first frame). ``<run>`` is the UTC start, ``20261128-201500``. ROOT is
``Settings.recordings_dir``.

Every name coming from a URL goes through :func:`run_dir` or :func:`run_file`: sitting,
run and file names are matched against strict patterns, then the resolved path must
still lie under ROOT (no ``..``, no symbolic link out).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PLAYLIST = "programme.m3u8"
METADATA = "recording.json"
ENDLIST = "#EXT-X-ENDLIST"
SITTING_ID = re.compile(r"\w[\w.-]{0,127}")  # letters (accents too), digits, _ . -; never ".."
RUN_ID = re.compile(r"\d{8}-\d{6}(?:-\d{1,4})?")
SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.ts")
EXTINF = re.compile(r"^#EXTINF:\s*([0-9.]+)", re.MULTILINE)


class RecordingPathError(ValueError):
    """A sitting, run or file name that does not name a recording (or points outside them)."""


@dataclass(frozen=True)
class Run:
    sitting: str
    id: str
    path: Path
    started_at: float
    duration: float  # seconds: the sum of the playlist's EXTINF
    ended: bool  # the playlist has #EXT-X-ENDLIST
    size: int  # bytes of the run's files
    segments: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "started_at": self.started_at, "duration": round(self.duration, 3),
                "ended": self.ended, "size": self.size, "segments": self.segments}


def valid_sitting_id(sitting: str) -> bool:
    return SITTING_ID.fullmatch(sitting) is not None


def sitting_dir(root: Path, sitting: str) -> Path:
    if not valid_sitting_id(sitting):
        raise RecordingPathError(f"not a sitting id: {sitting!r}")
    return _inside(root, root / sitting)


def run_dir(root: Path, sitting: str, run: str) -> Path:
    if RUN_ID.fullmatch(run) is None:
        raise RecordingPathError(f"not a run id: {run!r}")
    return _inside(root, sitting_dir(root, sitting) / run)


def run_file(root: Path, sitting: str, run: str, name: str) -> Path:
    """The playlist or a segment of a run (it may not exist)."""
    if name != PLAYLIST and SEGMENT.fullmatch(name) is None:
        raise RecordingPathError(f"not a recording file: {name!r}")
    return _inside(root, run_dir(root, sitting, run) / name)


def _inside(root: Path, path: Path) -> Path:
    resolved, base = path.resolve(), root.resolve()
    if resolved == base or not resolved.is_relative_to(base):
        raise RecordingPathError(f"{path} is outside the recordings")
    return path


# --- playlists ---------------------------------------------------------------------------


def playlist_duration(text: str) -> float:
    return sum(float(value) for value in EXTINF.findall(text))


def has_endlist(text: str) -> bool:
    return any(line.strip() == ENDLIST for line in text.splitlines())


def closed_playlist(text: str) -> str:
    """The playlist as a finished recording: ``#EXT-X-ENDLIST`` appended when missing (a run
    cut short by a crash), so that players treat it as video on demand, not as live."""
    if has_endlist(text):
        return text
    return text + ("" if text.endswith("\n") or not text else "\n") + ENDLIST + "\n"


def prefixed_segments(text: str, prefix: str) -> str:
    """The playlist with ``prefix`` before each segment URI (the live playlist names its run)."""
    return "".join(prefix + line if SEGMENT.fullmatch(line.strip()) else line for line in text.splitlines(True))


# --- runs --------------------------------------------------------------------------------


def read_run(root: Path, sitting: str, run: str) -> Run | None:
    """The run ``sitting``/``run``, or None when it has no playlist yet."""
    path = run_dir(root, sitting, run)
    try:
        text = (path / PLAYLIST).read_text(encoding="utf-8", errors="replace")
        files = [f for f in path.iterdir() if f.is_file() and not f.is_symlink()]
    except OSError:
        return None
    size = sum(f.stat().st_size for f in files)
    segments = sum(1 for f in files if SEGMENT.fullmatch(f.name))
    return Run(sitting, run, path, _started_at(path, run), playlist_duration(text), has_endlist(text), size, segments)


def _started_at(path: Path, run: str) -> float:
    try:
        value = json.loads((path / METADATA).read_text(encoding="utf-8"))["started_at"]
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:  # no metadata (yet): the run's name is its UTC start
        return datetime.strptime(run[:15], "%Y%m%d-%H%M%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return path.stat().st_mtime


def list_runs(root: Path, sitting: str) -> list[Run]:
    """The runs of ``sitting``, oldest first; [] when it has none."""
    base = sitting_dir(root, sitting)
    if not base.is_dir() or base.is_symlink():
        return []
    runs = [read_run(root, sitting, d.name) for d in base.iterdir()
            if RUN_ID.fullmatch(d.name) and d.is_dir() and not d.is_symlink()]
    return sorted((r for r in runs if r is not None), key=lambda r: (r.started_at, r.id))


def list_sittings(root: Path) -> list[str]:
    """Sittings with at least one run, by name."""
    if not root.is_dir():
        return []
    names = [d.name for d in root.iterdir() if valid_sitting_id(d.name) and d.is_dir() and not d.is_symlink()]
    return sorted(name for name in names if list_runs(root, name))


def live_run_id(root: Path, sitting: str) -> str | None:
    """The run being written: the newest one, if its playlist has no ENDLIST yet. Only
    meaningful while the sitting's programme is running (else it is a run cut short).
    Cheap (one directory listing, the playlist's last bytes): asked on every poll."""
    base = sitting_dir(root, sitting)
    try:
        names = [d.name for d in base.iterdir() if RUN_ID.fullmatch(d.name) and not d.is_symlink()]
        if not names:
            return None
        newest = max(names, key=lambda name: (name[:15], len(name), name))
        with (base / newest / PLAYLIST).open("rb") as playlist:
            playlist.seek(max(0, playlist.seek(0, 2) - 64))
            tail = playlist.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    return None if has_endlist(tail) else newest


# --- deletion ----------------------------------------------------------------------------


def delete_run(root: Path, sitting: str, run: str) -> Path:
    path = run_dir(root, sitting, run)
    shutil.rmtree(path)
    _remove_if_empty(path.parent)
    return path


def delete_sitting(root: Path, sitting: str) -> Path:
    path = sitting_dir(root, sitting)
    shutil.rmtree(path)
    return path


def prune(root: Path, retention_days: float, now: float, is_live: Callable[[str], bool] | None = None) -> list[Path]:
    """Delete the runs that started more than ``retention_days`` before ``now``; returns their
    directories. The live run of a sitting for which ``is_live(sitting)`` holds is kept."""
    limit = now - retention_days * 86400
    deleted: list[Path] = []
    for sitting in list_sittings(root):
        runs = list_runs(root, sitting)
        keep = live_run_id(root, sitting) if is_live is not None and is_live(sitting) else None
        for run in runs:
            if run.started_at < limit and run.id != keep:
                try:
                    deleted.append(delete_run(root, sitting, run.id))
                except OSError as exc:
                    log.warning("recording %s/%s not deleted: %s", sitting, run.id, exc)
    if deleted:
        log.info("retention: %d recording(s) older than %g days deleted", len(deleted), retention_days)
    return deleted


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass  # not empty: other runs remain

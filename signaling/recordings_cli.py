"""``hemicycle recordings list|delete|prune``: the clerk's hand on the recordings (docs/public.md).

Recordings live in DATA_DIR/recordings/<sitting>/<run>/ (one run per start of the
programme). ``list`` prints them; ``delete`` removes one run or every run of a sitting
(CNIL: keep what the council decided to keep, no longer); ``prune`` applies
``recording.retention_days`` at once, as the running server does every hour.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

from config import load_settings

from .recordings import RecordingPathError, delete_run, delete_sitting, list_runs, list_sittings, prune


def add_recordings_command(commands: Any) -> None:
    parser = commands.add_parser("recordings", help="list, delete or prune the sittings' recordings")
    parser.add_argument("--config", help="TOML settings file (data_dir, recording.retention_days)")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every recording: sitting, run, start, duration, size")
    delete = actions.add_parser("delete", help="delete one run, or every run of a sitting")
    delete.add_argument("--sitting", required=True)
    delete.add_argument("--run", help="the run id (default: every run of the sitting)")
    delete.add_argument("--force", action="store_true", help="also a run still open (being recorded, or cut short)")
    actions.add_parser("prune", help="delete the runs older than recording.retention_days now")


def run_recordings_command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    root = settings.recordings_dir
    try:
        if args.action == "list":
            for sitting in list_sittings(root):
                for run in list_runs(root, sitting):
                    start = datetime.fromtimestamp(run.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
                    state = "ended" if run.ended else "open"
                    print(f"{sitting}  {run.id}  {start}  {run.duration / 60:6.1f} min  "
                          f"{run.size / 1e6:8.1f} MB  {state}")
            return 0
        if args.action == "delete":
            runs = [r for r in list_runs(root, args.sitting) if args.run in (None, r.id)]
            if not runs:
                print(f"hemicycle recordings: no recording {args.sitting} {args.run or ''}".rstrip())
                return 2
            if any(not r.ended for r in runs) and not args.force:
                print("hemicycle recordings: a run is still open (being recorded, or cut short by a crash): "
                      "stop the sitting's programme first, or add --force")
                return 2
            path = (delete_run(root, args.sitting, args.run) if args.run else delete_sitting(root, args.sitting))
            print(f"deleted {path}")
            return 0
        days = settings.recording.retention_days
        if days is None:
            print("recording.retention_days is not set: nothing to prune")
            return 0
        for path in prune(root, days, time.time()):
            print(f"deleted {path}")
        return 0
    except (RecordingPathError, FileNotFoundError) as exc:
        print(f"hemicycle recordings: {exc}")
        return 2

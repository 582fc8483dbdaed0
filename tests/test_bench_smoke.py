"""The relay bench on a tiny configuration: a correctness test of the bench, not a speed test.

Runs ``python -m bench.relay`` (N=2, 3 s window, MediaRelay baseline at N=1) in a
subprocess, which isolates itself in a private network namespace, and checks that
its JSON has every field and that what the receivers counted matches what the
server says it forwarded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import common
from bench.report import RESULT_FIELDS

ROOT = Path(__file__).resolve().parent.parent


def _can_isolate() -> bool:
    return common.in_private_netns() or (os.geteuid() == 0 and shutil.which("unshare") is not None)


@pytest.mark.skipif(not _can_isolate(), reason="needs root (unshare -n) or a private network namespace")
def test_relay_bench_tiny_run(tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "bench.relay",
        "--n",
        "2",
        "--baseline-n",
        "1",
        "--window",
        "3",
        "--warmup",
        "2",
        "--out",
        str(tmp_path),
        "--stem",
        "smoke",
        "--max-seconds",
        "150",
        "--quiet-wait",
        "0",
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    row = re.compile(r"^\| hemicycle \| 2( ⚠)? \|", re.MULTILINE)  # ⚠: the shared machine was saturated
    assert row.search(done.stdout)  # the markdown table is printed at the end

    doc = json.loads((tmp_path / "smoke.json").read_text())
    assert len(row.findall((tmp_path / "smoke.md").read_text())) == 1
    assert doc["errors"] == []
    assert doc["netns"].startswith("private")
    for key in ("cpu_model", "usable_cpus", "python", "aiortc"):
        assert doc["machine"][key]
    rows = {r["server"]: r for r in doc["results"]}
    assert set(rows) == {"hemicycle", "mediarelay"}
    for row in rows.values():
        missing = [f for f in RESULT_FIELDS if f not in row]
        assert not missing, missing
        assert row["subscribers_ok"] == row["n"]
        assert 0 <= row["server_cpu_pct"] < 200 * (doc["machine"]["usable_cpus"] or 1)
        assert row["received_video_pps"] > 0 and row["received_audio_pps"] > 0
        assert row["loss_pct"] is not None and row["loss_pct"] < 5
        assert row["us_per_packet"] > 0 and row["packets_per_core_s"] > 0
        assert row["counters_checked"] > 0 and row["bad_size"] == 0
        assert row["publisher_video_pps"] > 0

    hemi = rows["hemicycle"]
    # Every forwarded packet reached a receiver, and only those: the sinks' and decoders'
    # socket counts agree with the SFU's own counters over the same window (± timing).
    assert hemi["server_forwarded_pps"] > 0
    assert 0.95 < hemi["receivers_vs_server"] < 1.05
    # Each subscriber gets what the publisher sends: N times the publisher's packet rate.
    sent = hemi["publisher_video_pps"] + hemi["publisher_audio_pps"]
    assert 0.9 * sent * hemi["n"] < hemi["received_pps"] < 1.1 * sent * hemi["n"]
    assert hemi["counter_skips"] <= 1  # the decoders saw consecutive frame counters

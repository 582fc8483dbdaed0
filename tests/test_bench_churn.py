"""The churn bench on a tiny configuration: a correctness test of the bench (its phases, its
fields, nothing left live), not a memory measurement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_bench_smoke import ROOT, _can_isolate


@pytest.mark.skipif(not _can_isolate(), reason="needs root (unshare -n) or a private network namespace")
def test_churn_bench_tiny_run(tmp_path: Path) -> None:
    out = tmp_path / "tiny.json"
    argv = [
        sys.executable,
        "-m",
        "bench.churn",
        "--duration",
        "4",
        "--members",
        "2",
        "--interval",
        "1",
        "--warmup",
        "2",
        "--sample",
        "2",
        "--settle",
        "2",
        "--out",
        str(out),
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    doc = json.loads(out.read_text())
    phases = [s["phase"] for s in doc["samples"]]
    assert phases[:3] == ["idle", "warm", "after one cycle"] and phases[-1] == "after"
    assert doc["checks"]["zero_live"] is True
    for sample in (doc["cycle"], doc["final"]):
        assert sample["transports"] == sample["producers"] == sample["consumers"] == 0
        assert sample["anon_mb"] > 0 and sample["file_mb"] > 0
    for key in ("rss_vs_idle_pct", "rss_vs_cycle_pct", "anon_vs_idle_pct", "anon_vs_cycle_pct", "file_vs_idle_mb"):
        assert isinstance(doc["checks"][key], float)
    assert doc["joins"] >= 2 * 2 + 2  # the first two, their replacements, two more after the cycle
    text = out.with_suffix(".md").read_text()
    assert "idle start" in text and "after one cycle" in text

"""The scenario benches on tiny configurations: correctness of the bench, not speed.

Runs ``python -m bench.scenario sitting`` (3 members, 1 speaker, 5 s window, MediaRelay
baseline at 2) and ``stress`` in subprocesses, which isolate themselves in a private
network namespace, and checks that the JSON has every field, that every receiver got
exactly what each publisher sent (and nothing of what the chair muted), that the
counts agree with the SFU's own, and that latencies were measured; also with the members
spread over two load-generator processes (``--loadgens 2``), and the merging of their
answers (bench/scenario_check.py) on its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import common
from bench.scenario_check import Plan, compare, histogram, latency_percentiles, merge_counters
from bench.scenario_report import FIELDS

ROOT = Path(__file__).resolve().parent.parent

needs_netns = pytest.mark.skipif(
    not (common.in_private_netns() or (os.geteuid() == 0 and shutil.which("unshare") is not None)),
    reason="needs root (unshare -n) or a private network namespace",
)


def run_scenario(tmp_path: Path, *options: str) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "bench.scenario",
        *options,
        "--duration",
        "5",
        "--warmup",
        "2",
        "--out",
        str(tmp_path),
        "--stem",
        "tiny",
        "--quiet-wait",
        "0",
        "--max-seconds",
        "200",
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| server | N | server CPU %" in done.stdout  # the table at the end
    doc: dict[str, Any] = json.loads((tmp_path / "tiny.json").read_text())
    assert (tmp_path / "tiny.md").exists()
    assert doc["errors"] == []
    assert doc["netns"].startswith("private")
    for key in ("cpu_model", "usable_cpus", "python", "aiortc"):
        assert doc["machine"][key]
    assert doc["rss"] and all(sample["rss_mb"] > 0 for sample in doc["rss"])
    for row in doc["results"]:
        missing = [field for field in FIELDS if field not in row]
        assert not missing, missing
        assert row["members"] == row["n"]
        assert row["loadgens"] >= 1
        assert row["received_pps"] > 0 and row["server_cpu_pct"] > 0
        assert row["loss_pct"] is not None and row["loss_pct"] < 1
        assert row["decoded_fps"] > 0 and row["bad_frames"] == 0
    return doc


def check_hemicycle(row: dict[str, Any], video_streams: int, audio_streams: int, audio_pps: float) -> None:
    # Exact, senders paused around the window: each receiver got every packet each publisher
    # sent, and none of a stream that must not be forwarded (a microphone the chair muted).
    assert row["check_pairs"] == row["n"] * (row["n"] - 1) * 2
    assert row["check_expected"] > 0
    assert row["check_mismatched"] == 0, row["check_examples"]
    assert row["check_received"] == row["check_expected"]
    # What arrived is what the plan forwards, and what the SFU itself says it sent.
    assert row["forwarded_streams"] == video_streams + audio_streams
    assert 0.9 * audio_pps < row["received_audio_pps"] < 1.1 * audio_pps
    assert 0.9 < row["receivers_vs_server"] < 1.1  # rates read one after the other over a 5 s window
    assert 0 < row["latency_p50_ms"] <= row["latency_p99_ms"] <= row["latency_max_ms"] < 1000
    assert row["latency_samples"] > 50
    assert row["counter_skips"] <= 1  # the decoders saw consecutive frame numbers


@needs_netns
def test_sitting_tiny_run(tmp_path: Path) -> None:
    doc = run_scenario(tmp_path, "sitting", "--n", "3", "--speakers", "1", "--baseline-n", "2")
    rows = {(r["server"], r["n"]): r for r in doc["results"]}
    assert set(rows) == {("hemicycle", 2), ("hemicycle", 3), ("mediarelay", 2)}
    for n in (2, 3):
        # every camera on; only the chair's microphone is forwarded (50 packets/s to each other member)
        check_hemicycle(rows[("hemicycle", n)], n * (n - 1), n - 1, 50.0 * (n - 1))
    baseline = rows[("mediarelay", 2)]
    assert baseline["latency_p50_ms"] is None  # re-encoded: no stamp survives
    assert baseline["forwarded_streams"] == 3
    if (tmp_path / "tiny.png").exists():
        assert (tmp_path / "tiny.png").stat().st_size > 1000


@needs_netns
def test_sitting_tiny_run_with_a_video_limit(tmp_path: Path) -> None:
    doc = run_scenario(tmp_path, "sitting", "--n", "3", "--speakers", "1", "--videos", "1", "--no-baseline")
    (row,) = doc["results"]
    # each of the 3 members receives 1 of the 2 other cameras (the server's choice); the chair's microphone
    check_hemicycle(row, 3, 2, 50.0 * 2)


@needs_netns
def test_stress_tiny_run(tmp_path: Path) -> None:
    doc = run_scenario(tmp_path, "stress", "--n", "3", "--speakers", "1", "--no-baseline")
    (row,) = doc["results"]
    # nobody muted: the speaker's 50 packets/s and two DTX microphones (2.5 packets/s), each to 2 members
    check_hemicycle(row, 6, 6, 2 * 50.0 + 2 * 2 * 2.5)


@needs_netns
def test_sitting_tiny_run_over_two_load_generators(tmp_path: Path) -> None:
    doc = run_scenario(tmp_path, "sitting", "--n", "3", "--speakers", "1", "--loadgens", "2", "--no-baseline")
    (row,) = doc["results"]
    assert row["loadgens"] == 2
    # members 0 and 2 in process 0, member 1 (a decoder of the chair's camera) in process 1: every pair across
    # the processes is counted exactly, the chair (process 0) muted member 1's microphone (process 1)
    check_hemicycle(row, 6, 2, 50.0 * 2)
    assert "| loadgens |" in (tmp_path / "tiny.md").read_text()


def test_check_merges_the_processes_counters() -> None:
    plan = Plan("sitting", speakers=1, cameras=-1)
    # process 0 holds members 0 (a, the chair, speaking) and 2 (c); process 1 member 1 (b); c does not select a
    parts = [
        {"sent": {"a": {"audio": 100, "video": 300}, "c": {"audio": 5, "video": 300}},
         "received": {"a": {"b": {"video": 300}, "c": {"video": 300}},
                      "c": {"a": {"audio": 100}, "b": {"video": 300}}},
         "selected": {"a": ["b", "c"], "c": ["b"]}, "index": {"a": 0, "c": 2}},
        {"sent": {"b": {"audio": 5, "video": 300}},
         "received": {"b": {"a": {"audio": 100, "video": 300}, "c": {"video": 300}}},
         "selected": {"b": ["a", "c"]}, "index": {"b": 1}},
    ]  # fmt: skip
    zero = merge_counters(
        [{**part, "sent": {o: dict.fromkeys(k, 0) for o, k in part["sent"].items()}, "received": {}} for part in parts]
    )
    result = compare(zero, merge_counters(parts), plan)
    assert result["pairs"] == 3 * 2 * 2 and result["mismatched"] == 0, result["examples"]
    assert result["expected"] == result["received"] == 100 * 2 + 300 * 5
    parts[1]["received"]["b"]["a"]["audio"] = 99  # one packet lost across the processes
    result = compare(zero, merge_counters(parts), plan)
    assert result["mismatched"] == 1 and result["examples"] == ["member 1 got 99 audio from member 0, expected 100"]
    assert compare(None, merge_counters(parts), plan)["pairs"] == 0  # the first checkpoint only counts


def test_latency_percentiles_from_merged_histograms() -> None:
    first = histogram(float(us) for us in range(1000, 2000))  # 1-2 ms
    second = histogram([3000.0] * 100 + [2_500_000.0])  # 3 ms, and one beyond the buckets
    merged = latency_percentiles([first, None, second])
    assert merged is not None and merged["n"] == 1101 and merged["max"] == 2_500_000.0
    assert abs(merged["p50"] - 1550) <= 10 and abs(merged["p99"] - 3000) <= 10
    assert latency_percentiles([None]) is None

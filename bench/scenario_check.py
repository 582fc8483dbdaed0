"""What the scenario benches expect, as pure functions: shared by the load generators and the orchestrator.

* :class:`Plan`: who speaks, whose camera is on, which stream must be forwarded to whom (by member index,
  which every load-generator process can compute for every member);
* :func:`compare`: the exact check between two checkpoints' counters (merged over the processes);
* :func:`histogram` / :func:`latency_percentiles`: latency samples as a fixed-bucket histogram (10 µs
  buckets below 1 s, the rest kept as they are), so that several processes' samples can be merged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

BUCKET_US = 10.0
OVERFLOW_US = 1_000_000.0
EXAMPLES = 5


@dataclass(frozen=True)
class Plan:
    scenario: str
    speakers: int
    cameras: int  # -1: every camera on
    videos: int = -1  # videos each member receives at most (-1: all)

    def speaks(self, index: int) -> bool:
        return index < self.speakers

    def camera_on(self, index: int) -> bool:
        return self.cameras < 0 or index < self.cameras

    def forwarded(self, index: int, kind: str, owner: str | None = None, selected: Iterable[str] | None = None) -> bool:
        """Must the SFU forward member ``index``'s stream (to a receiver whose ``video_selection`` is
        ``selected``; None: no selection, every camera that is on)?"""
        if kind == "video":
            return self.camera_on(index) and (selected is None or owner in selected)
        return self.speaks(index) or self.scenario != "sitting"

    def cameras_to_receive(self, index: int, members: int) -> int:
        """How many videos member ``index`` must receive in a room of ``members`` (the selection's size)."""
        on = sum(1 for other in range(members) if other != index and self.camera_on(other))
        return on if self.videos < 0 else min(self.videos, on)


def merge_counters(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The ``counters`` answers of every process as one (their members are disjoint)."""
    merged: dict[str, Any] = {"sent": {}, "received": {}, "selected": {}, "index": {}}
    for part in parts:
        for key in merged:
            merged[key].update(part[key])
    return merged


def compare(before: dict[str, Any] | None, now: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """Every (receiver, publisher, kind) pair between two checkpoints: got exactly what was sent, or 0.

    ``now`` / ``before``: merged counters: ``sent`` {owner: {kind: packets}}, ``received`` {receiver:
    {owner: {kind: packets}}}, ``selected`` {receiver: [owners] | None}, ``index`` {id: member index}.
    """
    result: dict[str, Any] = {"pairs": 0, "expected": 0, "received": 0, "mismatched": 0, "examples": []}
    if before is None:
        return result
    index = now["index"]
    for receiver, got in now["received"].items():
        selected = now["selected"].get(receiver)
        for owner, kinds in now["sent"].items():
            if owner == receiver:
                continue
            for kind, sent in kinds.items():
                delta_sent = sent - before["sent"].get(owner, {}).get(kind, 0)
                expected = delta_sent if plan.forwarded(index[owner], kind, owner, selected) else 0
                previously = before["received"].get(receiver, {}).get(owner, {}).get(kind, 0)
                delta_got = got.get(owner, {}).get(kind, 0) - previously
                result["pairs"] += 1
                result["expected"] += expected
                result["received"] += delta_got
                if delta_got != expected:
                    result["mismatched"] += 1
                    if len(result["examples"]) < EXAMPLES:
                        result["examples"].append(
                            f"member {index[receiver]} got {delta_got} {kind} from member {index[owner]}, "
                            f"expected {expected}"
                        )
    return result


def histogram(samples: Iterable[float]) -> dict[str, Any] | None:
    """Latency samples (µs) as ``{"n", "max", "buckets": {bucket: count}, "overflow": [µs]}``; None if none."""
    buckets: dict[int, int] = {}
    overflow: list[float] = []
    n, top = 0, -math.inf
    for sample in samples:
        n += 1
        top = max(top, sample)
        if sample < OVERFLOW_US:
            bucket = max(0, int(sample // BUCKET_US))
            buckets[bucket] = buckets.get(bucket, 0) + 1
        else:
            overflow.append(sample)
    if not n:
        return None
    return {"n": n, "max": top, "buckets": buckets, "overflow": overflow}


def latency_percentiles(parts: Iterable[dict[str, Any] | None]) -> dict[str, float] | None:
    """p50, p99, max (µs) and n over several :func:`histogram` answers (keys may be strings: JSON)."""
    counts: dict[float, int] = {}
    n, top = 0, -math.inf
    for part in parts:
        if part is None:
            continue
        n += part["n"]
        top = max(top, part["max"])
        for bucket, count in part["buckets"].items():
            middle = (int(bucket) + 0.5) * BUCKET_US
            counts[middle] = counts.get(middle, 0) + count
        for sample in part["overflow"]:
            counts[sample] = counts.get(sample, 0) + 1
    if not n:
        return None
    values = sorted(counts.items())

    def percentile(p: float) -> float:
        rank, seen = p / 100 * n, 0
        for value, count in values:
            seen += count
            if seen >= rank:
                return min(value, top)
        return top

    return {"n": n, "p50": percentile(50), "p99": percentile(99), "max": top}


def merge_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``stats`` answers of every process as one: counters summed, latency merged, worst of the worst."""

    def add(key: str) -> dict[str, list[int]]:
        return {kind: [sum(p[key][kind][i] for p in parts) for i in (0, 1)] for kind in ("audio", "video")}

    pacers = [p["pacer"] for p in parts]
    return {
        "t": sum(p["t"] for p in parts) / len(parts),
        "processes": len(parts),
        **{key: sum(p[key] for p in parts) for key in ("members", "viewers", "active_streams", "rtcp_received",
                                                       "decoded_frames", "counter_skips", "bad_frames")},
        "sent": {kind: sum(p["sent"][kind] for p in parts) for kind in ("audio", "video")},
        "received": add("received"),
        "viewer_received": add("viewer_received"),
        "latency_us": latency_percentiles(p["latency"] for p in parts),
        "pacer": {"ticks": sum(x["ticks"] for x in pacers), "late": sum(x["late"] for x in pacers),
                  "worst_ms": max(x["worst_ms"] for x in pacers)},
        "member_errors": [e for p in parts for e in p["member_errors"]][-5:],
    }  # fmt: skip

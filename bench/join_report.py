"""The join bench's figures: per-K statistics of the repetitions, and the Markdown report.

:func:`summarise` gives n, median, nearest-rank p90, min, max and mean of one measure over the
measured repetitions; :func:`markdown` is the table printed at the end and saved as
``bench/results/join-time-<date>.md`` (the JSON holds the same ``doc``).
"""

from __future__ import annotations

import statistics
from typing import Any

from .join_browser import POLL_MS, VIEWPORT


def summarise(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "median": None, "p90": None, "min": None, "max": None, "mean": None}
    s = sorted(values)
    # p90: nearest rank (with 5 values this is the largest but one... or the max)
    rank = max(1, -(-len(s) * 9 // 10))
    return {
        "n": len(s),
        "median": statistics.median(s),
        "p90": s[rank - 1],
        "min": s[0],
        "max": s[-1],
        "mean": statistics.fmean(s),
    }


def fmt_ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f} ms"


def _f(v: Any) -> str:
    return "—" if v is None else f"{v:.0f}"


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [
        f"# Join time: click on join → first decoded remote video frame ({doc['date']})",
        "",
        f"Machine: {m['cpu_model']}, {m['logical_cpus']} logical CPUs ({m['usable_cpus']} usable), "
        f"{m['memory_gb']} GB RAM, Linux {m['kernel']}; {m['chromium']}; Playwright {m['playwright']}; "
        f"Python {m['python']}.",
        f"Network: {doc['network']}. Fake media: {doc['media']}. {doc['reps']} repetitions per K "
        f"(+{doc['warmup']} warm-up, discarded); getStats polled every {POLL_MS} ms in the page.",
        f"All K+1 Chromium processes ({VIEWPORT[0]}x{VIEWPORT[1]} windows) and the server share these CPUs.",
        "",
        "Time to the first decoded remote video frame (ms):",
        "",
        "| K already in | n | median | p90 | min | max | all K decoded, median "
        "| subscribe PC connected, median | first video packet, median | joins with a PLI before frame 1 |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in doc["results"]:
        if "setup_error" in row:
            lines.append(f"| {row['k']} | 0 | the {row['k']} councillors did not get in: {row['setup_error']} |")
            continue
        f, a, c, pk = row["first_ms"], row["all_ms"], row["connected_ms"], row["first_packet_ms"]
        plis = sum(1 for x in row["runs"] if x.get("pli_before_first"))
        n = f"{f['n']}" + (f" ({row['failed']} failed)" if row["failed"] else "")
        lines.append(
            f"| {row['k']} | {n} | {_f(f['median'])} | {_f(f['p90'])} | {_f(f['min'])} | {_f(f['max'])} "
            f"| {_f(a['median'])} | {_f(c['median'])} | {_f(pk['median'])} | {plis}/{len(row['runs'])} |"
        )
    lines += [
        "",
        "p90 is the nearest-rank 90th percentile (with 5 repetitions, the maximum).",
        f"Command: `{doc['command']}`",
        "",
    ]
    return "\n".join(lines)

"""Results of ``bench.scenario``: one row per (server, N) from two marks, then JSON, Markdown and a plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .report import _f

FIELDS = [
    "scenario", "server", "n", "members", "viewers", "window_s", "setup_s",
    "server_cpu_pct", "server_cpu_user_pct", "server_cpu_sys_pct", "server_main_cpu_pct", "server_processes", "loadgens", "loadgen_cpu_pct",
    "sent_pps", "sent_audio_pps", "sent_video_pps",
    "received_pps", "received_audio_pps", "received_video_pps", "viewer_received_pps",
    "forwarded_streams", "cpu_per_stream_pct", "us_per_packet", "packets_per_core_s",
    "latency_p50_ms", "latency_p99_ms", "latency_max_ms", "latency_samples",
    "loss_pct", "viewer_loss_pct", "rtcp_received_pps",
    "check_pairs", "check_expected", "check_received", "check_mismatched", "check_examples",
    "server_forwarded_pps", "receivers_vs_server", "server_rss_mb",
    "decoded_fps", "counter_skips", "bad_frames", "pacer_late_pct", "pacer_worst_ms",
    "host_busy_pct", "others_cpu_pct", "loadavg_1min", "saturated", "udp_drops_server", "udp_drops_loadgen",
]  # fmt: skip


def _loss(got: float, expected: float) -> float | None:
    return None if expected <= 0 else max(0.0, (expected - got) / expected * 100)


def compute(
    scenario: str, server: str, n: int, m0: dict[str, Any], m1: dict[str, Any], check: dict[str, Any]
) -> dict[str, Any]:
    """One row from the marks at the start and the end of a window, and the exact check around it."""
    wall = m1["wall"] - m0["wall"]
    l0, l1 = m0["loadgen"], m1["loadgen"]
    dt = l1["t"] - l0["t"]
    cpu = {name: (m1["cpu"][name] - m0["cpu"][name]) / wall * 100 for name in m0["cpu"]}

    def rate(a: dict[str, Any], b: dict[str, Any], kind: str, column: int | None = None) -> float:
        first, last = (a[kind], b[kind]) if column is None else (a[kind][column], b[kind][column])
        return (last - first) / dt

    received = {k: rate(l0["received"], l1["received"], k, 0) for k in ("audio", "video")}
    expected = {k: rate(l0["received"], l1["received"], k, 1) for k in ("audio", "video")}
    viewer_got = sum(rate(l0["viewer_received"], l1["viewer_received"], k, 0) for k in ("audio", "video"))
    viewer_expected = sum(rate(l0["viewer_received"], l1["viewer_received"], k, 1) for k in ("audio", "video"))
    total = received["audio"] + received["video"] + viewer_got
    streams = l1["active_streams"]
    latency = l1["latency_us"]
    ticks = l1["pacer"]["ticks"]
    host = (m1["host_busy"] - m0["host_busy"]) / wall * 100
    ours = sum(m1["cpu"].values()) - sum(m0["cpu"].values()) + m1["orchestrator"] - m0["orchestrator"]
    row: dict[str, Any] = {
        "scenario": scenario,
        "server": server,
        "n": n,
        "members": l1["members"],
        "viewers": l1["viewers"],
        "window_s": round(dt, 2),
        "server_cpu_pct": cpu["server"],
        "server_cpu_user_pct": (m1["server_times"][0] - m0["server_times"][0]) / wall * 100,
        "server_cpu_sys_pct": (m1["server_times"][1] - m0["server_times"][1]) / wall * 100,
        "server_processes": m1["server_processes"],
        "server_main_cpu_pct": (m1["server_main"] - m0["server_main"]) / wall * 100,
        "loadgen_cpu_pct": cpu["loadgen"],
        "sent_audio_pps": rate(l0["sent"], l1["sent"], "audio"),
        "sent_video_pps": rate(l0["sent"], l1["sent"], "video"),
        "received_audio_pps": received["audio"],
        "received_video_pps": received["video"],
        "viewer_received_pps": viewer_got,
        "received_pps": received["audio"] + received["video"],
        "forwarded_streams": streams,
        "cpu_per_stream_pct": cpu["server"] / streams if streams else None,
        "us_per_packet": cpu["server"] / 100 * 1e6 / total if total else None,
        "packets_per_core_s": total / (cpu["server"] / 100) if cpu["server"] > 0 else None,
        "latency_p50_ms": None if latency is None else latency["p50"] / 1000,
        "latency_p99_ms": None if latency is None else latency["p99"] / 1000,
        "latency_max_ms": None if latency is None else latency["max"] / 1000,
        "latency_samples": 0 if latency is None else latency["n"],
        "loss_pct": _loss(received["audio"] + received["video"], expected["audio"] + expected["video"]),
        "viewer_loss_pct": _loss(viewer_got, viewer_expected) if l1["viewers"] else None,
        "rtcp_received_pps": (l1["rtcp_received"] - l0["rtcp_received"]) / dt,
        **{
            f"check_{key}": check[key] if server == "hemicycle" else None  # MediaRelay re-encodes: no exact count
            for key in ("pairs", "expected", "received", "mismatched", "examples")
        },
        "server_forwarded_pps": None,
        "receivers_vs_server": None,
        "server_rss_mb": m1["server_rss_mb"],
        "decoded_fps": (l1["decoded_frames"] - l0["decoded_frames"]) / dt,
        "counter_skips": l1["counter_skips"] - l0["counter_skips"],
        "bad_frames": l1["bad_frames"] - l0["bad_frames"],
        "pacer_late_pct": l1["pacer"]["late"] / ticks * 100 if ticks else None,
        "pacer_worst_ms": l1["pacer"]["worst_ms"],
        "host_busy_pct": host,
        "others_cpu_pct": max(0.0, host - ours / wall * 100),
        "loadavg_1min": m1["loadavg"],
        "udp_drops_server": m1["udp_drops"].get("server", 0) - m0["udp_drops"].get("server", 0),
        "udp_drops_loadgen": m1["udp_drops"].get("loadgen", 0) - m0["udp_drops"].get("loadgen", 0),
    }
    row["sent_pps"] = row["sent_audio_pps"] + row["sent_video_pps"]
    s0, s1 = m0.get("server_stats"), m1.get("server_stats")
    if s0 is not None and s1 is not None:
        out = sum(s1["out"].values()) - sum(s0["out"].values())
        row["server_forwarded_pps"] = out / wall
        row["receivers_vs_server"] = row["received_pps"] * dt / out if out else None
    return row


def markdown(doc: dict[str, Any]) -> str:
    m, s = doc["machine"], doc["settings"]
    lines = [
        f"# Scenario `{s['scenario']}`, {doc['date']}",
        "",
        f"Machine: {m['cpu_model']}, {m['usable_cpus']} usable CPUs ({m['logical_cpus']} logical), "
        f"{m['memory_gb']} GB; Linux {m['kernel']}; Python {m['python']}, aiortc {m['aiortc']}, PyAV {m['av']}. "
        f"Loopback only; network: {doc['netns']}.",
        f"Load: {doc['load']}",
        "",
        "| server | N | server CPU % (main process) | fwd pkt/s | streams | CPU/stream % | pkt/s/core | latency p50 / p99 ms "
        "| loss % | exact check | RSS MB | loadgen CPU % | loadgens | others CPU % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in doc["results"]:
        fwd = r["received_pps"] + (r["viewer_received_pps"] or 0)
        exact = (
            "–"
            if r["server"] != "hemicycle"
            else ("ok" if r["check_mismatched"] == 0 else f"{r['check_mismatched']}/{r['check_pairs']} pairs off")
        )
        lines.append(
            f"| {r['server']} | {r['n']}{' ⚠' if r['saturated'] else ''} | {_f(r['server_cpu_pct'])}"
            f" ({_f(r.get('server_main_cpu_pct'))}) | {_f(fwd, 0)} "
            f"| {r['forwarded_streams']} | {_f(r['cpu_per_stream_pct'], 2)} | {_f(r['packets_per_core_s'], 0)} "
            f"| {_f(r['latency_p50_ms'], 2)} / {_f(r['latency_p99_ms'], 2)} | {_f(r['loss_pct'], 2)} | {exact} "
            f"| {_f(r['server_rss_mb'], 0)} | {_f(r['loadgen_cpu_pct'])} | {r.get('loadgens', 1)} | {_f(r['others_cpu_pct'], 0)} |"
        )
    lines += [
        "",
        "N: members (broadcast: WHEP viewers). server CPU: user+sys of every process of the server (children "
        "included: the programme worker), % of one core; in brackets, its main process alone (signaling and SFU). "
        "fwd pkt/s: RTP packets counted at the receivers' sockets "
        "(members and viewers). streams: (receiver, SSRC) pairs that received packets in the window. pkt/s/core: "
        "fwd pkt/s ÷ server cores used. latency: publisher's send → receiver's socket (the kernel's arrival stamp), from the stamp in the "
        "payload (Hemicycle forwards payloads untouched; MediaRelay re-encodes, so none). exact check: with the "
        "senders paused and drained around the window, every (receiver, publisher, kind) got exactly what the "
        "publisher sent, or nothing when the stream must not be forwarded (muted, camera off). loadgen CPU: every "
        "load-generator process together, % of one core; loadgens: how many processes held the synthetic members "
        "(member i in process i mod P). ⚠: all cores busy.",
    ]
    for note in doc.get("notes", []):
        lines.append(f"\n- {note}")
    for error in doc.get("errors", []):
        lines.append(f"\n- ERROR: {error}")
    return "\n".join(lines) + "\n"


def plot(doc: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (cpu, latency, memory) = plt.subplots(1, 3, figsize=(14, 4.2))
    for server, style in (("hemicycle", "o-"), ("mediarelay", "s--")):
        rows = sorted((r for r in doc["results"] if r["server"] == server), key=lambda r: r["n"])
        if rows:
            cpu.plot([r["n"] for r in rows], [r["server_cpu_pct"] for r in rows], style, label=server)
        timed = [r for r in rows if r["latency_p50_ms"] is not None]
        if timed:
            latency.plot([r["n"] for r in timed], [r["latency_p50_ms"] for r in timed], style, label=f"{server} p50")
            latency.plot(
                [r["n"] for r in timed], [r["latency_p99_ms"] for r in timed], style, alpha=0.5, label=f"{server} p99"
            )
        samples = [x for x in doc["rss"] if x["server"] == server]
        if samples:
            memory.plot([x["t"] for x in samples], [x["rss_mb"] for x in samples], label=server)
    axis_n = "WHEP viewers" if doc["settings"]["scenario"] == "broadcast" else "members N"
    for axis, title, xlabel in (
        (cpu, "server CPU (% of one core)", axis_n),
        (latency, "added latency (ms)", axis_n),
        (memory, "server RSS (MB)", "seconds since start"),
    ):
        axis.set_title(title)
        axis.set_xlabel(xlabel)
        axis.grid(True, alpha=0.3)
        if axis.has_data():
            axis.legend(fontsize=8)
    fig.suptitle(f"Scenario {doc['settings']['scenario']}: {doc['load']} — {doc['machine']['cpu_model']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def save(doc: dict[str, Any], out_dir: Path, stem: str) -> dict[str, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md", "png": out_dir / f"{stem}.png"}
    paths["json"].write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    paths["md"].write_text(markdown(doc))
    if not plot(doc, paths["png"]):
        del paths["png"]
    return {k: str(v) for k, v in paths.items()}

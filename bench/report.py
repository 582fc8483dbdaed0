"""Turning two measurement marks into one result row, and rows into JSON, Markdown and a plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULT_FIELDS = [
    "server", "n", "subscribers_ok", "decoders", "window_s",
    "server_cpu_pct", "server_cpu_user_pct", "server_cpu_sys_pct", "loadgen_cpu_pct", "publisher_cpu_pct",
    "received_pps", "received_video_pps", "received_audio_pps", "min_sub_video_pps",
    "cpu_per_stream_pct", "us_per_packet", "packets_per_core_s",
    "loss_pct", "video_loss_pct", "audio_loss_pct",
    "decoded_fps_min", "counter_skips", "frames_skipped", "bad_size", "counters_checked",
    "publisher_video_pps", "publisher_audio_pps", "publisher_video_kbps",
    "server_forwarded_pps", "receivers_vs_server", "server_retransmits", "server_keyframe_requests",
    "sink_loss_pct", "decoder_loss_pct", "host_busy_pct", "others_cpu_pct", "loadavg_1min",
    "publisher_fps", "delivered_pct", "misread_frames",
    "setup_s", "quiet_wait_s", "others_before_pct", "saturated",
    "server_received_pps", "upstream_loss_pct", "udp_drops_server", "udp_drops_loadgen", "udp_drops_publisher",
]  # fmt: skip


def _delta(a: dict[str, Any], b: dict[str, Any], key: str) -> float:
    return float(b.get(key, 0)) - float(a.get(key, 0))


def compute(server: str, n: int, decoders: int, m0: dict[str, Any], m1: dict[str, Any]) -> dict[str, Any]:
    """One result row from the marks taken at the start and the end of a window."""
    wall = m1["wall"] - m0["wall"]
    dt = m1["loadgen"]["t"] - m0["loadgen"]["t"]
    cpu = {name: (m1["cpu"][name] - m0["cpu"][name]) / wall * 100 for name in m0["cpu"]}
    user = (m1["server_times"][0] - m0["server_times"][0]) / wall * 100
    system = (m1["server_times"][1] - m0["server_times"][1]) / wall * 100
    got = {"video": 0, "audio": 0}
    expected = {"video": 0, "audio": 0}
    min_video = None
    dec_fps: list[float] = []
    skips = skipped = bad = checked = misread = 0
    by_role = {True: [0, 0], False: [0, 0]}  # decode? -> [got, expected]
    for r0, r1 in zip(m0["loadgen"]["rows"], m1["loadgen"]["rows"], strict=False):
        for kind in ("video", "audio"):
            got[kind] += r1[kind][0] - r0[kind][0]
            expected[kind] += r1[kind][1] - r0[kind][1]
            by_role[r1["decode"]][0] += r1[kind][0] - r0[kind][0]
            by_role[r1["decode"]][1] += r1[kind][1] - r0[kind][1]
        video_pps = (r1["video"][0] - r0["video"][0]) / dt
        min_video = video_pps if min_video is None else min(min_video, video_pps)
        if r1["decode"]:
            frames = r1["frames"] - r0["frames"]
            dec_fps.append(frames / dt)
            checked += frames
            skips += r1["skips"] - r0["skips"]
            skipped += r1["skipped"] - r0["skipped"]
            bad += r1["bad_size"] - r0["bad_size"]
            misread += r1["misread"] - r0["misread"]
    received = got["video"] + got["audio"]
    server_cpu_s = m1["cpu"]["server"] - m0["cpu"]["server"]

    def loss(g: int, e: int) -> float | None:
        return None if e <= 0 else max(0.0, (e - g) / e * 100)

    us = server_cpu_s * 1e6 / received if received else None
    pub_sent0, pub_sent1 = m0["publisher"]["sent"], m1["publisher"]["sent"]
    pub_dt = m1["publisher"]["t"] - m0["publisher"]["t"]

    def pub(kind: str, key: str) -> float:
        return _delta(pub_sent0.get(kind, {}), pub_sent1.get(kind, {}), key) / pub_dt

    row: dict[str, Any] = {
        "server": server,
        "n": n,
        "subscribers_ok": len(m1["loadgen"]["rows"]),
        "decoders": decoders,
        "window_s": round(dt, 2),
        "server_cpu_pct": cpu["server"],
        "server_cpu_user_pct": user,
        "server_cpu_sys_pct": system,
        "loadgen_cpu_pct": cpu["loadgen"],
        "publisher_cpu_pct": cpu["publisher"],
        "received_pps": received / dt,
        "received_video_pps": got["video"] / dt,
        "received_audio_pps": got["audio"] / dt,
        "min_sub_video_pps": min_video,
        "cpu_per_stream_pct": cpu["server"] / len(m1["loadgen"]["rows"]) if m1["loadgen"]["rows"] else None,
        "us_per_packet": us,
        "packets_per_core_s": 1e6 / us if us else None,
        "loss_pct": loss(received, expected["video"] + expected["audio"]),
        "video_loss_pct": loss(got["video"], expected["video"]),
        "audio_loss_pct": loss(got["audio"], expected["audio"]),
        "decoded_fps_min": min(dec_fps) if dec_fps else None,
        "counter_skips": skips,
        "frames_skipped": skipped,
        "bad_size": bad,
        "counters_checked": checked,
        "misread_frames": misread,
        "publisher_video_pps": pub("video", "packets"),
        "publisher_audio_pps": pub("audio", "packets"),
        "publisher_video_kbps": pub("video", "bytes") * 8 / 1000,
        "server_forwarded_pps": None,
        "receivers_vs_server": None,
        "server_retransmits": None,
        "server_keyframe_requests": None,
    }
    row["publisher_fps"] = (m1["publisher"]["frames"] - m0["publisher"]["frames"]) / pub_dt
    sent = row["publisher_video_pps"] + row["publisher_audio_pps"]
    row["delivered_pct"] = received / dt / (sent * len(m1["loadgen"]["rows"])) * 100 if sent else None
    row["sink_loss_pct"] = loss(*by_role[False])
    row["decoder_loss_pct"] = loss(*by_role[True])
    host = (m1["host_busy"] - m0["host_busy"]) / wall * 100
    ours = sum(m1["cpu"].values()) - sum(m0["cpu"].values()) + m1["orchestrator"] - m0["orchestrator"]
    row["host_busy_pct"] = host
    row["others_cpu_pct"] = max(0.0, host - ours / wall * 100)
    row["loadavg_1min"] = m1["loadavg"]
    for name in ("server", "loadgen", "publisher"):
        row[f"udp_drops_{name}"] = m1["udp_drops"].get(name, 0) - m0["udp_drops"].get(name, 0)
    row["server_received_pps"] = None
    row["upstream_loss_pct"] = None
    s0, s1 = m0.get("server_stats"), m1.get("server_stats")
    if s0 is not None and s1 is not None:
        out = sum(s1["out"].values()) - sum(s0["out"].values())
        row["server_forwarded_pps"] = out / wall
        row["receivers_vs_server"] = received / out if out else None
        if s1.get("in"):
            got_in = sum(s1["in"].values()) - sum(s0["in"].values())
            row["server_received_pps"] = got_in / wall
            row["upstream_loss_pct"] = max(0.0, (1 - got_in / wall / sent) * 100) if sent else None
        if "retransmits" in s1:
            row["server_retransmits"] = s1["retransmits"] - s0["retransmits"]
            row["server_keyframe_requests"] = s1["keyframe_requests"] - s0["keyframe_requests"]
    return row


def marginal(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Slope between consecutive N of one server: extra CPU per extra stream and per extra packet."""
    out = []
    for server in dict.fromkeys(r["server"] for r in rows):
        mine = sorted((r for r in rows if r["server"] == server), key=lambda r: r["n"])
        for a, b in zip(mine, mine[1:]):
            dn = b["n"] - a["n"]
            dpps = b["received_pps"] - a["received_pps"]
            dcpu = b["server_cpu_pct"] - a["server_cpu_pct"]
            us = dcpu / 100 * 1e6 / dpps if dpps > 0 else None
            out.append(
                {
                    "server": server,
                    "from_n": a["n"],
                    "to_n": b["n"],
                    "cpu_per_extra_stream_pct": dcpu / dn if dn else None,
                    "us_per_extra_packet": us,
                    "packets_per_core_s": 1e6 / us if us and us > 0 else None,
                }
            )
    return out


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}".replace(",", " ")
    return str(value)


def markdown(doc: dict[str, Any]) -> str:
    m, s = doc["machine"], doc["settings"]
    lines = [
        f"# Relay benchmark, {doc['date']}",
        "",
        f"Machine: {m['cpu_model']}, {m['usable_cpus']} usable CPUs ({m['logical_cpus']} logical), "
        f"{m['memory_gb']} GB; Linux {m['kernel']}; Python {m['python']}, aiortc {m['aiortc']}, "
        f"aioice {m['aioice']}, PyAV {m['av']}, uvloop {m['uvloop']}.",
        f"Publisher: VP8 {s['size']}@30 fixed at {s['bitrate'] // 1000} kbit/s + Opus; "
        f"{s['decoders']} decoding subscribers, the rest SRTP sinks; warm-up {s['warmup']} s, "
        f"window {s['window']} s; loopback only, network namespace: {doc['netns']}.",
        "",
        "| server | N | server CPU % | fwd pkt/s | delivered % | CPU/stream % | µs/pkt | pkt/s/core "
        "| loadgen CPU % | loss % | decoded fps (min) | counter skips | other procs CPU % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["results"]:
        lines.append(
            f"| {r['server']} | {r['n']}{' ⚠' if r.get('saturated') else ''} | {_f(r['server_cpu_pct'])} | {_f(r['received_pps'], 0)} "
            f"| {_f(r['delivered_pct'], 0)} | {_f(r['cpu_per_stream_pct'], 2)} | {_f(r['us_per_packet'])} "
            f"| {_f(r['packets_per_core_s'], 0)} | {_f(r['loadgen_cpu_pct'])} | {_f(r['loss_pct'], 2)} "
            f"| {_f(r['decoded_fps_min'])} | {r['counter_skips']} / {r['counters_checked']} "
            f"| {_f(r['others_cpu_pct'], 0)} |"
        )
    if doc.get("marginal"):
        lines += ["", "Marginal cost between consecutive N (slope; removes fixed costs such as the publisher leg):", ""]
        lines += [
            "| server | N from → to | CPU per extra stream % | µs per extra pkt | pkt/s/core |",
            "|---|---|---:|---:|---:|",
        ]
        for g in doc["marginal"]:
            lines.append(
                f"| {g['server']} | {g['from_n']} → {g['to_n']} | {_f(g['cpu_per_extra_stream_pct'], 2)} "
                f"| {_f(g['us_per_extra_packet'])} | {_f(g['packets_per_core_s'], 0)} |"
            )
    lines += [
        "",
        "CPU figures are % of one core (user+sys, psutil, process and children). fwd pkt/s: RTP packets "
        "(video+audio) counted at the receivers. delivered: that rate / (publisher's packet rate × N). "
        "CPU/stream: server CPU / N (one stream = the publisher's audio+video to one subscriber). "
        "µs/pkt: server CPU time / packets received; pkt/s/core = 1e6 / µs/pkt. loss: sequence-number "
        "gaps at the receivers. counter skips: decoded frames whose stamped counter was not previous+1, "
        "out of the frames checked. other procs: CPU used on the machine by processes outside the bench "
        "during the window (a shared machine makes every figure noisier). ⚠: all cores were busy during "
        "the window (saturated machine): that row measures contention, not the server.",
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
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for server, style in (("hemicycle", "o-"), ("mediarelay", "s--")):
        rows = sorted((r for r in doc["results"] if r["server"] == server), key=lambda r: r["n"])
        if not rows:
            continue
        xs = [r["n"] for r in rows]
        left.plot(xs, [r["server_cpu_pct"] for r in rows], style, label=server)
        right.plot(xs, [r["cpu_per_stream_pct"] for r in rows], style, label=server)
    ticks = sorted({r["n"] for r in doc["results"]})
    for axis, title in ((left, "server CPU (% of one core)"), (right, "server CPU per forwarded stream (%)")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(ticks, [str(t) for t in ticks])
        axis.set_xlabel("subscribers N")
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
        axis.legend()
    right.set_yscale("log")
    fig.suptitle(f"Relay of one 1 Mbit/s VP8 + Opus publisher, {doc['machine']['cpu_model']}", fontsize=9)
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

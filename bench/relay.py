"""Relay benchmark: server CPU to forward one publisher to N subscribers, on loopback.

``python -m bench.relay [--n 1 8 32 128] [--baseline-n 1 4 8] [--window 10] ...``
``python -m bench.relay --media-port sockets mux mux-batch --rounds 2 --no-baseline``: the same
server with a socket per transport, then the muxed port (``ice.udp_port``) without and with
``sendmmsg`` batching, back to back, twice.

For each server (Hemicycle's SFU, then aiortc's MediaRelay as a baseline) it starts
the server, one publisher (bench/publisher.py) and one load generator
(bench/loadgen.py) as separate processes, grows the subscribers to each N, waits a
warm-up, and measures over a window: CPU (psutil, user+sys) of each process, packets
counted at the receivers, loss, and the decoded frame counters. See bench/README.md.
The private network, the time budget and the wait for a quiet machine, which the other
benches share, are in bench/orchestration.py; the rows and the report in bench/report.py.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from . import common, report
from .orchestration import DEFAULT_OUT, Deadline, busy_seconds, ensure_private_network, log, server_stats, wait_quiet
from .procs import ROOT, Child, ChildFailed, module_argv, udp_drops

MEDIA_PORTS = {"sockets": "hemicycle", "mux": "hemicycle-mux", "mux-batch": "hemicycle-mux-batch"}  # -> row label


def mark(children: dict[str, Child], stats_url: str | None) -> dict[str, Any]:
    lg = children["loadgen"].ask_json("stats", "STATS")
    wall = time.monotonic()
    cpu = {name: child.cpu_seconds() for name, child in children.items()}
    server_times = children["server"].cpu_times()
    host_busy = busy_seconds()
    me = psutil.Process().cpu_times()
    pub = children["publisher"].ask_json("stats", "PUBSTATS")
    drops = udp_drops({name: child.proc.pid for name, child in children.items()})
    return {
        "udp_drops": drops,
        "wall": wall,
        "cpu": cpu,
        "server_times": server_times,
        "loadgen": lg,
        "publisher": pub,
        "host_busy": host_busy,
        "orchestrator": me.user + me.system,
        "loadavg": os.getloadavg()[0],
        "server_stats": server_stats(stats_url),
    }


def start_server(
    kind: str, args: argparse.Namespace, work: Path, children: dict[str, Child], media_port: str = "sockets"
) -> tuple[str, str | None, str]:
    """Start one server (registered in ``children`` at once); returns (base url, stats url, publisher token)."""
    if kind == "hemicycle":
        secret = work / "secret.key"
        module = "bench.hemiserver" if args.server_stats else "signaling"
        flags = f"serve --host 127.0.0.1 --port 0 --no-demo --log-level {args.server_log_level}".split()
        argv = module_argv(module, *flags, "--secret-file", str(secret))
        env = {
            "HEMICYCLE_DATA_DIR": str(work),
            "HEMICYCLE_MEDIA__CAMERA_BITRATE": str(args.bitrate),
            "HEMICYCLE_PROGRAMME__ENABLED": "false",
        }  # forwarding alone; bench.programme measures the programme
        if max(args.n) + 2 > 200:  # the publisher, N subscribers: above the default limits.max_participants
            env["HEMICYCLE_LIMITS__MAX_PARTICIPANTS"] = str(max(args.n) + 2)
        if media_port != "sockets":  # one muxed port; bench.hemiserver turns sendmmsg batching off for "mux"
            env["HEMICYCLE_ICE__UDP_PORT"] = str(args.udp_port)
            env["HEMICYCLE_BENCH_UDP_BATCH"] = "1" if media_port == "mux-batch" else "0"
        child = children["server"] = Child("hemicycle server", argv, str(work / "hemicycle-server.log"), env)
        url = child.expect("HEMICYCLE READY", 30)
        flags = ["invite", "--name", "Publisher", "--role", "councillor", "--sitting", "demo", "--base-url", url]
        invite = module_argv("signaling", *flags, "--secret-file", str(secret))
        link = subprocess.run(invite, capture_output=True, text=True, check=True, cwd=ROOT, timeout=30).stdout.strip()
        token = link.split("#token=", 1)[1]
        return url, (url if args.server_stats else None), token
    argv = module_argv("bench.mediarelay_server", "--bitrate", str(args.bitrate))
    if args.no_uvloop:
        argv.append("--no-uvloop")
    child = children["server"] = Child("mediarelay server", argv, str(work / "mediarelay-server.log"))
    url = child.expect("MEDIARELAY READY", 30)
    return url, url, "publisher"


def measure_server(
    kind: str, ns: list[int], args: argparse.Namespace, work: Path, deadline: Deadline, media_port: str = "sockets"
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    children: dict[str, Child] = {}
    loop_flag = [] if args.no_uvloop else ["--uvloop"]
    label = MEDIA_PORTS[media_port] if kind == "hemicycle" else kind
    try:
        url, stats_url, token = start_server(kind, args, work, children, media_port)
        log(f"{kind}: server ready at {url}")
        media = f"--bitrate {args.bitrate} --size {args.size}".split()
        children["publisher"] = Child(
            "publisher",
            module_argv("bench.publisher", "--url", url, "--token", token, *media, *loop_flag),
            str(work / f"{kind}-publisher.log"),
        )
        children["publisher"].expect("PUBLISHER READY", 30)
        secret = ["--secret-file", str(work / "secret.key")] if kind == "hemicycle" else []
        receivers = f"--decoders {args.decoders} --size {args.size} --concurrency {args.concurrency}".split()
        children["loadgen"] = Child(
            "load generator",
            module_argv("bench.loadgen", "--url", url, *secret, *receivers, *loop_flag),
            str(work / f"{kind}-loadgen.log"),
        )
        children["loadgen"].expect("LOADGEN READY", 30)
        log(f"{kind}: publisher connected, load generator up")
        for n in ns:
            need = args.warmup + args.window + 10
            if deadline.left() < need:
                log(f"{kind}: time budget exhausted, skipping N={n}")
                break
            limit = max(10.0, min(deadline.left() - args.warmup - args.window, args.grow_timeout))
            grown = children["loadgen"].ask_json(f"grow {n} {limit:.0f}", "GROWN", timeout=limit + 30)
            log(
                f"{kind}: N={n}: {grown['ok']}/{grown['subscribers']} subscribers receiving "
                f"after {grown['seconds']:.1f} s{'; failures: ' + str(grown['failed']) if grown['failed'] else ''}"
            )
            if grown["ok"] < n:
                rows.append({"server": label, "error": f"N={n}: only {grown['ok']}/{n} subscribers received media"})
            if grown["ok"] == 0:
                break
            time.sleep(args.warmup)
            waited, others = wait_quiet(children, args, deadline)
            if waited > 1.5:
                log(f"{kind}: N={n}: waited {waited:.0f} s for other processes to calm down ({others:.0f} % CPU)")
            m0 = mark(children, stats_url)
            time.sleep(args.window)
            m1 = mark(children, stats_url)
            row = report.compute(label, n, min(args.decoders, n), m0, m1)
            row.update(batch_rates(m0, m1))
            row["setup_s"] = round(grown["seconds"], 1)
            row["quiet_wait_s"] = round(waited, 1)
            row["others_before_pct"] = round(others, 1)
            row["saturated"] = row["host_busy_pct"] > 90 * len(os.sched_getaffinity(0))
            rows.append(row)
            if not row["received_pps"]:
                rows.append({"server": label, "error": f"N={n}: nothing received during the window"})
            log(
                f"{label}: N={n}: server CPU {row['server_cpu_pct']:.1f} %, {row['received_pps']:.0f} pkt/s received, "
                f"{_fmt(row['us_per_packet'])} µs/pkt, loss {_fmt(row['loss_pct'], 2)} %, loadgen CPU "
                f"{row['loadgen_cpu_pct']:.1f} %, decoded fps min {_fmt(row['decoded_fps_min'])}, "
                f"skips {row['counter_skips']}/{row['counters_checked']}, other processes {row['others_cpu_pct']:.0f} %"
                + (" — MACHINE SATURATED, figures unreliable" if row["saturated"] else "")
            )
    except (ChildFailed, subprocess.SubprocessError, OSError, ValueError, KeyError) as exc:
        log(f"{label}: FAILED: {exc!r}")
        rows.append({"server": label, "error": str(exc)})
    finally:
        for name in ("loadgen", "publisher", "server"):
            if name in children:
                children[name].stop(polite=0 if name == "server" else 5)
    return rows


def batch_rates(m0: dict[str, Any], m1: dict[str, Any]) -> dict[str, Any]:
    """sendmmsg calls per second on the muxed port and datagrams per call, from the server's counters."""
    s0, s1 = (m.get("server_stats") or {} for m in (m0, m1))
    b0, b1 = s0.get("udp_batch"), s1.get("udp_batch")
    if not b0 or not b1:
        return {"sendmmsg_per_s": None, "datagrams_per_sendmmsg": None, "batch_fallbacks": None}
    calls, sent = b1["calls"] - b0["calls"], b1["sent"] - b0["sent"]
    return {
        "sendmmsg_per_s": round(calls / (m1["wall"] - m0["wall"]), 1),
        "datagrams_per_sendmmsg": round(sent / calls, 1) if calls else None,
        "batch_fallbacks": b1["fallbacks"] - b0["fallbacks"],
    }


def _fmt(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1, 8, 32, 128], help="subscriber counts (Hemicycle)")
    parser.add_argument(
        "--baseline-n", type=int, nargs="*", default=[1, 4, 8], help="subscriber counts (MediaRelay, ≤ 8)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the MediaRelay baseline")
    parser.add_argument(
        "--media-port",
        nargs="+",
        choices=sorted(MEDIA_PORTS),
        default=["sockets"],
        help="Hemicycle's media sockets, each measured in turn: sockets (one per transport), mux (ice.udp_port, "
        "one sendto per datagram), mux-batch (ice.udp_port, one sendmmsg per incoming packet)",
    )
    parser.add_argument("--udp-port", type=int, default=20700, help="the muxed port (mux, mux-batch)")
    parser.add_argument("--rounds", type=int, default=1, help="measure the --media-port configurations this many times")
    parser.add_argument("--decoders", type=int, default=2, help="full aiortc subscribers that decode and check")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds after the subscribers are up")
    parser.add_argument("--window", type=float, default=10.0, help="measurement window, seconds")
    parser.add_argument("--bitrate", type=int, default=1_000_000, help="publisher VP8 bitrate, fixed")
    parser.add_argument("--size", default="640x480", help="publisher picture size")
    parser.add_argument(
        "--grow-timeout", type=float, default=90, help="seconds for the subscribers of one step to join"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="subscribers joining at once")
    parser.add_argument("--no-uvloop", action="store_true", help="asyncio loop in the bench's own processes")
    parser.add_argument(
        "--no-server-stats",
        dest="server_stats",
        action="store_false",
        help="run `python -m signaling serve` itself, without the /bench/stats route",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    parser.add_argument("--stem", help="file name stem (default relay-YYYY-MM-DD)")
    parser.add_argument("--max-seconds", type=float, default=420, help="time budget; later steps are skipped")
    parser.add_argument("--quiet-threshold", type=float, default=30, help="CPU %% of other processes to wait out")
    parser.add_argument("--quiet-wait", type=float, default=30, help="max seconds to wait for a quiet machine per step")
    parser.add_argument("--server-log-level", default="WARNING", help="Hemicycle server's log level")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (kept anyway on errors)")
    parser.add_argument("--allow-host-network", action="store_true", help="run without a private network namespace")
    args = parser.parse_args(argv)
    if any(n > 8 for n in args.baseline_n):
        parser.error("--baseline-n: MediaRelay re-encodes per subscriber, keep N ≤ 8")
    if "mux" in args.media_port and not args.server_stats:
        parser.error("--media-port mux needs bench.hemiserver (it turns batching off): drop --no-server-stats")
    args.n = sorted(set(args.n))
    args.baseline_n = sorted(set(args.baseline_n))
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    netns = ensure_private_network(argv, args.allow_host_network, module="bench.relay")
    started = time.monotonic()
    deadline = Deadline(args.max_seconds)
    machine = common.machine_info()
    log(
        f"relay bench: {machine['cpu_model']}, {machine['usable_cpus']} CPUs, Python {machine['python']}, "
        f"aiortc {machine['aiortc']}; network: {netns}"
    )
    work = Path(tempfile.mkdtemp(prefix="hemicycle-bench-"))
    waited, others = wait_quiet({}, args, deadline)
    log(f"other processes use {others:.0f} % CPU" + (f" (after waiting {waited:.0f} s)" if waited > 1.5 else ""))
    rows = []
    for round_ in range(1, args.rounds + 1):
        for media_port in args.media_port:
            measured = measure_server("hemicycle", args.n, args, work, deadline, media_port)
            rows += [{**row, "round": round_} for row in measured]
    if not args.no_baseline and args.baseline_n:
        rows += measure_server("mediarelay", args.baseline_n, args, work, deadline)
    results = [r for r in rows if "error" not in r]
    marginal = [
        {**slope, "round": round_}
        for round_ in dict.fromkeys(r.get("round", 1) for r in results)
        for slope in report.marginal([r for r in results if r.get("round", 1) == round_])
    ]
    errors = [r["error"] for r in rows if "error" in r]
    date = datetime.date.today().isoformat()
    doc = {
        "date": date,
        "started_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 1),
        "machine": machine,
        "netns": netns,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "fields": report.RESULT_FIELDS,
        "results": results,
        "marginal": marginal,
        "errors": errors,
        "notes": [],
    }
    paths = report.save(doc, args.out, args.stem or f"relay-{date}")
    print()
    print(report.markdown(doc))
    log(f"saved {', '.join(paths.values())}; {doc['duration_s']} s in total")
    if errors or args.keep_logs:
        log(f"{'errors: ' + str(errors) + '; ' if errors else ''}logs kept in {work}")
        return 1 if errors else 0
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Workers bench: two sittings, each one publisher and K subscribers, ``server.workers`` 1 vs 2.

``python -m bench.workers [--k 12] [--workers 1 2] [--repeat 2] [--window 10] ...``

For each configuration (alternated, ``--repeat`` times) it starts the real server
(``python -m signaling serve``) with two sittings, one publisher (bench/publisher.py) and one
load generator (bench/loadgen.py, K subscribers) per sitting, waits a warm-up and measures over
a window: the CPU and memory of every server process (the front and each worker apart), the
RTP packets forwarded (the server's own ``/metrics``), what reached the subscribers, and the
signaling round trip (hello, then refused messages answered by an error) under that load.
See bench/README.md, « bench.workers ».
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from signaling.tokens import TokenSigner

from . import common
from .orchestration import DEFAULT_OUT, Deadline, busy_seconds, ensure_private_network, log, wait_quiet
from .procs import Child, ChildFailed, module_argv

SITTINGS = ("s1", "s2")
CONFIG = """demo = false
[server]
workers = {workers}
[programme]
enabled = false
[[sittings]]
id = "s1"
title = "Séance 1"
[[sittings]]
id = "s2"
title = "Séance 2"
"""


def forwarded(url: str) -> float:
    """RTP packets forwarded so far, all sittings and workers (the server's /metrics)."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("hemicycle_rtp_forwarded_packets_total{")
    )


def processes(server: Child) -> dict[str, psutil.Process]:
    """The front (or the single server) and its workers, by role; the programme is off."""
    found = {"front" if server.ps.children() else "server": server.ps}
    for child in server.ps.children():
        with _gone():
            argv = child.cmdline()
            if "signaling.workers" in argv:
                found[f"worker {argv[argv.index('signaling.workers') + 1]}"] = child
    return found


class _gone:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, tb: Any) -> bool:
        return kind is not None and issubclass(kind, psutil.Error)


def mark(server: Child, url: str, loadgens: list[Child]) -> dict[str, Any]:
    cpu, rss = {}, {}
    for name, proc in processes(server).items():
        with _gone():
            times = proc.cpu_times()
            cpu[name] = times.user + times.system
            rss[name] = proc.memory_info().rss
    received = 0
    for loadgen in loadgens:
        rows = loadgen.ask_json("stats", "STATS")["rows"]
        received += sum(r["video"][0] + r["audio"][0] for r in rows)  # [packets, highest seq, streams]
    return {
        "wall": time.monotonic(),
        "cpu": cpu,
        "rss": rss,
        "forwarded": forwarded(url),
        "received": received,
        "host_busy": busy_seconds(),
        "loadavg": os.getloadavg()[0],
    }


async def round_trips(url: str, token: str, count: int = 50) -> list[float]:
    import aiohttp

    trips = []
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url.replace("http", "ws", 1) + "/ws")
        await ws.send_json({"type": "hello", "version": 1, "token": token})
        while (await ws.receive_json(timeout=10))["type"] != "welcome":
            pass
        for _ in range(count):
            started = time.perf_counter()
            await ws.send_json({"type": "teleport"})
            while (await ws.receive_json(timeout=5))["type"] != "error":
                pass
            trips.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.02)
        await ws.close()
    return trips


def measure(workers: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    run = work / f"w{workers}-{time.monotonic_ns()}"
    run.mkdir()
    (run / "hemicycle.toml").write_text(CONFIG.format(workers=workers), encoding="utf-8")
    env = {"HEMICYCLE_DATA_DIR": str(run), "HEMICYCLE_MEDIA__CAMERA_BITRATE": str(args.bitrate)}
    argv = module_argv(
        "signaling",
        "serve",
        "--config",
        str(run / "hemicycle.toml"),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--no-demo",
        "--log-level",
        "WARNING",
    )
    children: dict[str, Child] = {}
    try:
        server = children["server"] = Child("server", argv, str(run / "server.log"), env)
        url = server.expect("HEMICYCLE READY", 60)
        signer = TokenSigner.from_file(run / "secret.key")
        shared = ["--url", url, "--size", args.size, "--uvloop"]
        for sitting in SITTINGS:
            token = signer.mint(sitting, "Orateur", "councillor", lifetime=3600)
            publisher = [*shared, "--token", token, "--bitrate", str(args.bitrate)]
            loadgen = [*shared, "--secret-file", str(run / "secret.key"), "--sitting", sitting]
            for name, module, argv_, ready in (
                (f"pub {sitting}", "bench.publisher", publisher, "PUBLISHER READY"),
                (f"lg {sitting}", "bench.loadgen", [*loadgen, "--decoders", str(args.decoders)], "LOADGEN READY"),
            ):
                children[name] = Child(name, module_argv(module, *argv_), str(run / f"{name.replace(' ', '-')}.log"))
                children[name].expect(ready, 30)
        loadgens = [children[f"lg {s}"] for s in SITTINGS]
        for loadgen in loadgens:
            grown = loadgen.ask_json(f"grow {args.k} 120", "GROWN", timeout=150)
            if grown["ok"] < args.k:
                raise ChildFailed(f"only {grown['ok']}/{args.k} subscribers: {grown['failed']}")
        time.sleep(args.warmup)
        waited, others = wait_quiet(children, args, Deadline(args.quiet_wait + 120))
        m0 = mark(server, url, loadgens)
        time.sleep(args.window)
        m1 = mark(server, url, loadgens)
        trips = asyncio.run(round_trips(url, signer.mint("s2", "Public", "public", lifetime=600)))
        seconds = m1["wall"] - m0["wall"]
        cpu = {name: round((m1["cpu"][name] - m0["cpu"][name]) / seconds * 100, 1) for name in m1["cpu"]}
        ours = sum(c.cpu_seconds() for c in children.values())
        return {
            "workers": workers,
            "k": args.k,
            "window_s": round(seconds, 1),
            "server_cpu_pct": round(sum(cpu.values()), 1),
            "cpu_pct": cpu,
            "rss_mb": {name: round(value / 2**20, 1) for name, value in m1["rss"].items()},
            "forwarded_pps": round((m1["forwarded"] - m0["forwarded"]) / seconds),
            "received_pps": round((m1["received"] - m0["received"]) / seconds),
            "rtt_ms_median": round(statistics.median(trips), 2),
            "rtt_ms_p90": round(sorted(trips)[int(len(trips) * 0.9)], 2),
            "host_busy_pct": round((m1["host_busy"] - m0["host_busy"]) / seconds * 100, 1),
            "others_before_pct": round(others, 1),
            "quiet_wait_s": round(waited, 1),
            "loadavg_1min": m1["loadavg"],
            "bench_procs_cpu_s": round(ours, 1),
        }
    finally:
        for name, child in reversed(children.items()):
            child.stop(polite=0 if name == "server" else 5)


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [
        f"# bench.workers — {doc['date']}",
        "",
        f"Machine: {m['cpu_model']}, {m['usable_cpus']} CPUs, Python {m['python']}; network: {doc['netns']}. "
        f"Two sittings, each 1 publisher ({doc['settings']['size']} VP8 at {doc['settings']['bitrate']} bit/s + Opus) "
        f"and K = {doc['settings']['k']} subscribers; {doc['settings']['window']} s windows. The publishers and load "
        "generators run on the same machine (shared with other engineers' tests: see the load columns).",
        "",
        "| workers | server CPU % | per process CPU % | RSS MB | fwd pkt/s | recv pkt/s | µs CPU/fwd pkt "
        "| RTT ms (median, p90) | host busy % | others before % | load 1 min |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        per = ", ".join(f"{k} {v}" for k, v in r["cpu_pct"].items())
        rss = ", ".join(f"{k} {v}" for k, v in r["rss_mb"].items())
        us = r["server_cpu_pct"] * 1e4 / r["forwarded_pps"] if r["forwarded_pps"] else float("nan")
        lines.append(
            f"| {r['workers']} | {r['server_cpu_pct']} | {per} | {rss} | {r['forwarded_pps']} | "
            f"{r['received_pps']} | {us:.1f} | {r['rtt_ms_median']}, {r['rtt_ms_p90']} | {r['host_busy_pct']} | "
            f"{r['others_before_pct']} | {r['loadavg_1min']:.2f} |"
        )
    lines += ["", *[f"- {note}" for note in doc["notes"]], *[f"- error: {e}" for e in doc["errors"]], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=12, help="subscribers per sitting")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="server.workers values, alternated")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each value")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--bitrate", type=int, default=1_000_000)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--decoders", type=int, default=1, help="subscribers per sitting that decode (the rest: sinks)")
    parser.add_argument("--quiet-threshold", type=float, default=30)
    parser.add_argument("--quiet-wait", type=float, default=30)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--stem")
    parser.add_argument("--allow-host-network", action="store_true")
    args = parser.parse_args(argv)
    netns = ensure_private_network(argv, args.allow_host_network, module="bench.workers")
    machine = common.machine_info()
    log(f"workers bench: {machine['cpu_model']}, {machine['usable_cpus']} CPUs; network: {netns}")
    work = Path(tempfile.mkdtemp(prefix="hemicycle-bench-workers-"))
    results, errors = [], []
    for round_ in range(args.repeat):
        for workers in args.workers:
            try:
                row = measure(workers, args, work)
            except (ChildFailed, OSError, ValueError, KeyError) as exc:
                log(f"workers={workers}: FAILED: {exc!r}")
                errors.append(f"workers={workers} run {round_ + 1}: {exc}")
                continue
            row["run"] = round_ + 1
            results.append(row)
            log(
                f"workers={workers}: server CPU {row['server_cpu_pct']} % {row['cpu_pct']}, "
                f"{row['forwarded_pps']} fwd pkt/s, RTT {row['rtt_ms_median']} ms, host busy {row['host_busy_pct']} %"
            )
    date = datetime.date.today().isoformat()
    doc = {
        "date": date,
        "machine": machine,
        "netns": netns,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "results": results,
        "errors": errors,
        "notes": [],
    }
    stem = args.stem or f"workers-{date}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(doc))
    print(markdown(doc))
    if errors:
        log(f"logs kept in {work}")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

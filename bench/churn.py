"""Churn: members join and leave for a while; does the server give everything back?

Runs the real server (``bench.hemiserver``) as a subprocess and, in this process, aiortc
members (tests/peers.py: 320x240 VP8 + Opus) that keep joining and leaving: ``--members``
are in at any time, one is replaced every ``--interval`` seconds. Every ``--sample``
seconds it records the server's RSS, open file descriptors, threads, asyncio tasks and
live transports/producers/consumers. Memory is the RSS split into anonymous memory (heap,
arenas, stacks) and file-backed pages (the code of the libraries, touched once).

First one full cycle: ``--members`` join, each is replaced once, everyone leaves; the empty
server's level then is the "after one cycle" reference. Then the churn proper, and at the end
everyone leaves; after a pause the server must have zero live transports, producers and
consumers, and memory is compared with both the idle start and the level after one cycle
(the first includes the one-time warm-up, the second only what a long sitting adds).

    python -m bench.churn --duration 600        # the 10-minute run of the reference results
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench import common
from bench.orchestration import ensure_private_network, log

RESULTS = Path(__file__).resolve().parent / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_server(data: Path, port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.hemiserver", "serve", "--port", str(port), "--no-demo",
        "--secret-file", str(data / "secret.key"),
        # the programme stays off unless asked for (HEMICYCLE_PROGRAMME__ENABLED=true): churn measures the SFU
        env={"HEMICYCLE_PROGRAMME__ENABLED": "false", **os.environ, "HEMICYCLE_DATA_DIR": str(data)},
        cwd=Path(__file__).resolve().parent.parent,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        if not line:
            raise SystemExit("the server exited before it was ready")
        if line.startswith("HEMICYCLE READY"):
            return proc


def smaps_rollup(pid: int) -> dict[str, int]:
    """``/proc/PID/smaps_rollup`` in kB (Linux; empty elsewhere)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    fields = (line.split() for line in text.splitlines())
    return {f[0].rstrip(":"): int(f[1]) for f in fields if len(f) == 3 and f[2] == "kB"}


class OtherWork:
    """Who else used the machine: every process's CPU seconds at each sample (a process that
    started during the run counts from 0; one that ended between two samples loses that part)."""

    def __init__(self) -> None:
        self.first: dict[int, float] = {}
        self.last: dict[int, tuple[str, float]] = {}
        self.look()
        self.started = time.monotonic()

    def look(self) -> None:
        starting = not self.last
        for p in psutil.process_iter(["cmdline", "cpu_times"]):
            times = p.info["cpu_times"]
            if times is not None:
                cpu = times.user + times.system
                self.first.setdefault(p.pid, cpu if starting else 0.0)
                self.last[p.pid] = (" ".join(p.info["cmdline"] or [])[:120], cpu)

    def busiest(self, ours: set[int]) -> list[dict[str, Any]]:
        """The other processes that used more than 2 % of a core during the run, busiest first."""
        wall = time.monotonic() - self.started
        rows: list[tuple[float, str, int]] = []
        for pid, (cmd, cpu) in self.last.items():
            used = cpu - self.first[pid]
            if pid not in ours and used > 0.02 * wall:
                rows.append((round(100 * used / wall, 1), cmd, pid))
        return [{"pid": pid, "cmdline": cmd, "cpu_pct": share} for share, cmd, pid in sorted(rows, reverse=True)[:10]]


async def sample(
    http: aiohttp.ClientSession, base: str, server: psutil.Process, started: float, work: OtherWork
) -> dict[str, Any]:
    work.look()
    async with http.get(base + "/bench/stats") as response:
        stats = await response.json()
    memory = server.memory_info()
    smaps = smaps_rollup(server.pid)
    anon = smaps.get("Anonymous")
    return {
        "t": round(time.monotonic() - started, 1),
        "rss_mb": round(memory.rss / 2**20, 1),
        "anon_mb": None if anon is None else round(anon / 2**10, 1),
        "file_mb": None if anon is None else round((smaps["Rss"] - anon) / 2**10, 1),
        "loadavg": round(os.getloadavg()[0], 2),
        "fds": server.num_fds(),
        "threads": server.num_threads(),
        "tasks": stats["tasks"],
        **stats["live"],
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from signaling.tokens import TokenSigner
    from tests.peers import COLOURS, Peer

    common.restrict_to_loopback()
    data = Path(tempfile.mkdtemp(prefix="hemicycle-churn-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = await start_server(data, port)
    server = psutil.Process(proc.pid)
    signer = TokenSigner((data / "secret.key").read_bytes())
    colours = list(COLOURS)
    joined = 0

    async def newcomer() -> Peer:
        nonlocal joined
        joined += 1
        peer = Peer(base, signer.mint("demo", f"Membre {joined}", "councillor", 3600), colours[joined % 4], 300 + joined)
        await peer.join()
        await peer.publish()
        return peer

    async def replace_one(members: list[Peer]) -> None:
        await asyncio.sleep(args.interval)
        leaving = members.pop(random.randrange(len(members)))
        await leaving.close()
        members.append(await newcomer())

    async def everyone_leaves(members: list[Peer], phase: str) -> dict[str, Any]:
        for peer in members:
            await peer.close()
        await asyncio.sleep(args.settle)
        point = {**await sample(http, base, server, started, work), "phase": phase}
        samples.append(point)
        log(f"{phase}, everyone left: {point}")
        return point

    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    work = OtherWork()
    async with aiohttp.ClientSession() as http:
        samples.append({**await sample(http, base, server, started, work), "phase": "idle"})
        members = [await newcomer() for _ in range(args.members)]
        await asyncio.sleep(args.warmup)
        warm = {**await sample(http, base, server, started, work), "phase": "warm"}
        samples.append(warm)
        log(f"warm: {warm}")
        first = list(members)  # one cycle: every first member replaced once, then everyone leaves
        while any(peer in members for peer in first):
            await replace_one(members)
        cycle = await everyone_leaves(members, "after one cycle")
        members = [await newcomer() for _ in range(args.members)]
        end = time.monotonic() + args.duration
        next_sample = time.monotonic() + args.sample
        while time.monotonic() < end:
            await replace_one(members)
            if time.monotonic() >= next_sample:
                next_sample += args.sample
                samples.append({**await sample(http, base, server, started, work), "phase": "churn"})
                log(f"{samples[-1]} (joins so far: {joined})")
        final = await everyone_leaves(members, "after")
    busy = work.busiest({os.getpid(), proc.pid})
    proc.terminate()
    await proc.wait()

    def pct(key: str, reference: dict[str, Any]) -> float | None:
        if final[key] is None or not reference[key]:
            return None
        return round(100 * float(final[key] - reference[key]) / float(reference[key]), 1)

    idle = samples[0]
    return {
        "machine": common.machine_info(),
        "python": platform.python_version(),
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "stem")},
        "joins": joined,
        "samples": samples,
        "warm": warm,
        "cycle": cycle,
        "final": final,
        "other_processes": busy,
        "checks": {
            "zero_live": all(final[k] == 0 for k in ("transports", "producers", "consumers", "peer_connections")),
            "rss_change_pct": round(100 * (final["rss_mb"] - warm["rss_mb"]) / warm["rss_mb"], 1),
            "rss_vs_idle_pct": pct("rss_mb", idle),
            "rss_vs_cycle_pct": pct("rss_mb", cycle),
            "anon_vs_idle_pct": pct("anon_mb", idle),
            "anon_vs_cycle_pct": pct("anon_mb", cycle),
            "file_vs_idle_mb": None if final["file_mb"] is None else round(final["file_mb"] - idle["file_mb"], 1),
            "fds_vs_idle": final["fds"] - samples[0]["fds"],
            "tasks_vs_idle": final["tasks"] - samples[0]["tasks"],
        },
    }


def markdown(result: dict[str, Any]) -> str:
    m, c, checks = result["machine"], result["config"], result["checks"]
    lines = [
        f"# Churn, {time.strftime('%Y-%m-%d')}",
        "",
        f"Machine: {m['cpu_model']}, {m['usable_cpus']} usable CPUs, {m['memory_gb']} GB; Python {m['python']}, "
        f"aiortc {m['aiortc']}. Loopback only, private network namespace.",
        f"Load: {c['members']} aiortc members (320x240 VP8 + Opus) in at any time, one replaced every "
        f"{c['interval']} s for {c['duration']} s, after one full cycle (each first member replaced once, "
        f"then everyone left): {result['joins']} joins in all, each a new invitation (a new seat).",
        f"Other work on the machine (more than 2 % of a core over the run): {others_text(result)}.",
        "",
        "| phase | t (s) | RSS (MB) | anon (MB) | file (MB) | fds | threads | tasks | transports | producers | consumers | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in result["samples"]:
        lines.append(
            f"| {s['phase']} | {s['t']} | {s['rss_mb']} | {s.get('anon_mb')} | {s.get('file_mb')} | {s['fds']} | "
            f"{s['threads']} | {s['tasks']} | {s['transports']} | {s['producers']} | {s['consumers']} | "
            f"{s.get('loadavg')} |"
        )
    idle, cycle, final = result["samples"][0], result["cycle"], result["final"]
    lines += [
        "",
        f"After everyone left: zero live transports/producers/consumers: **{checks['zero_live']}**; file "
        f"descriptors {checks['fds_vs_idle']:+} and asyncio tasks {checks['tasks_vs_idle']:+} against the idle server.",
        "",
        f"Memory after everyone left, {final['rss_mb']} MB RSS:",
        f"* against the **idle start** ({idle['rss_mb']} MB): **{checks['rss_vs_idle_pct']:+} %** "
        f"(anonymous {checks['anon_vs_idle_pct']:+} %, file-backed {checks['file_vs_idle_mb']:+} MB). This includes the "
        "one-time warm-up of the first members: library code first run (OpenSSL/cryptography for DTLS, libsrtp: the "
        "file-backed pages), and the high-water mark of Python's obmalloc arenas and of the glibc heap, which stay "
        "mapped when partly used;",
        f"* against the empty server **after one full cycle** ({cycle['rss_mb']} MB): "
        f"**{checks['rss_vs_cycle_pct']:+} %** (anonymous {checks['anon_vs_cycle_pct']:+} %): what the churn added "
        "after the warm-up, i.e. what a long sitting would keep.",
    ]
    return "\n".join(lines) + "\n"


def others_text(result: dict[str, Any]) -> str:
    rows = result.get("other_processes") or []
    return "; ".join(f"`{r['cmdline'][:80]}` {r['cpu_pct']} %" for r in rows) or "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.churn", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of churn")
    parser.add_argument("--members", type=int, default=4, help="members in at any time")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between replacements")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--sample", type=float, default=30.0)
    parser.add_argument(
        "--settle", type=float, default=25.0,
        help="seconds after the last leave (longer than the server's reconnect_grace, 20 s: every departure recorded)",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default bench/results/STEM.json)")
    parser.add_argument("--stem", default=None, help="file name without extension (default churn-DATE)")
    parser.add_argument("--allow-host-network", action="store_true")
    args = parser.parse_args(argv)
    network = ensure_private_network(sys.argv[1:], args.allow_host_network, module="bench.churn")
    log(f"network: {network}")
    result = asyncio.run(run(args))
    out = args.out or RESULTS / f"{args.stem or 'churn-' + time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    log(f"saved {out} and {out.with_suffix('.md')}")
    return 0 if result["checks"]["zero_live"] else 1


if __name__ == "__main__":
    sys.exit(main())

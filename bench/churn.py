"""Churn: members join and leave for a while; does the server give everything back?

Runs the real server (``bench.hemiserver``) as a subprocess and, in this process, aiortc
members (tests/peers.py: 320x240 VP8 + Opus) that keep joining and leaving: ``--members``
are in at any time, one is replaced every ``--interval`` seconds. Every ``--sample``
seconds it records the server's RSS, open file descriptors, threads, asyncio tasks and
live transports/producers/consumers. At the end everyone leaves; after a pause the server
must have zero live transports, producers and consumers, and its memory and file
descriptors must be back near their level after the warm-up.

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
from bench.relay import ensure_private_network, log

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


async def sample(http: aiohttp.ClientSession, base: str, server: psutil.Process, started: float) -> dict[str, Any]:
    async with http.get(base + "/bench/stats") as response:
        stats = await response.json()
    memory = server.memory_info()
    return {
        "t": round(time.monotonic() - started, 1),
        "rss_mb": round(memory.rss / 2**20, 1),
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

    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        samples.append({**await sample(http, base, server, started), "phase": "idle"})
        members = [await newcomer() for _ in range(args.members)]
        await asyncio.sleep(args.warmup)
        warm = {**await sample(http, base, server, started), "phase": "warm"}
        samples.append(warm)
        log(f"warm: {warm}")
        end = time.monotonic() + args.duration
        next_sample = time.monotonic() + args.sample
        while time.monotonic() < end:
            await asyncio.sleep(args.interval)
            leaving = members.pop(random.randrange(len(members)))
            await leaving.close()
            members.append(await newcomer())
            if time.monotonic() >= next_sample:
                next_sample += args.sample
                samples.append({**await sample(http, base, server, started), "phase": "churn"})
                log(f"{samples[-1]} (joins so far: {joined})")
        for peer in members:
            await peer.close()
        await asyncio.sleep(args.settle)
        final = {**await sample(http, base, server, started), "phase": "after"}
        samples.append(final)
        log(f"after everyone left: {final}")
    proc.terminate()
    await proc.wait()
    return {
        "machine": common.machine_info(),
        "python": platform.python_version(),
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "joins": joined,
        "samples": samples,
        "warm": warm,
        "final": final,
        "checks": {
            "zero_live": all(final[k] == 0 for k in ("transports", "producers", "consumers", "peer_connections")),
            "rss_change_pct": round(100 * (final["rss_mb"] - warm["rss_mb"]) / warm["rss_mb"], 1),
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
        f"{c['interval']} s for {c['duration']} s: {result['joins']} joins in all.",
        "",
        "| phase | t (s) | RSS (MB) | fds | threads | tasks | transports | producers | consumers |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in result["samples"]:
        lines.append(
            f"| {s['phase']} | {s['t']} | {s['rss_mb']} | {s['fds']} | {s['threads']} | {s['tasks']} | "
            f"{s['transports']} | {s['producers']} | {s['consumers']} |"
        )
    lines += [
        "",
        f"After everyone left: zero live transports/producers/consumers: **{checks['zero_live']}**; "
        f"RSS {checks['rss_change_pct']:+} % against the warm level; file descriptors {checks['fds_vs_idle']:+} and "
        f"asyncio tasks {checks['tasks_vs_idle']:+} against the idle server.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.churn", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of churn")
    parser.add_argument("--members", type=int, default=4, help="members in at any time")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between replacements")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--sample", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after the last leave")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default bench/results/churn-DATE.json)")
    parser.add_argument("--allow-host-network", action="store_true")
    args = parser.parse_args(argv)
    network = ensure_private_network(sys.argv[1:], args.allow_host_network, module="bench.churn")
    log(f"network: {network}")
    result = asyncio.run(run(args))
    out = args.out or RESULTS / f"churn-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    log(f"saved {out} and {out.with_suffix('.md')}")
    return 0 if result["checks"]["zero_live"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Scenario benches: will this server carry our council?

``python -m bench.scenario sitting|stress|broadcast [options]``, ``python -m bench.scenario churn [bench.churn options]``

* ``sitting``: N members (default 45) publish a camera and a microphone; the chair mutes
  all but ``--speakers`` (server-enforced); every camera on (``--cameras``), each member
  receives ``--videos`` of them (the server's ``media.max_videos``: it chooses which);
* ``stress``: the same, nobody muted (silent microphones send Opus DTX);
* ``broadcast``: ``--members`` members and N WHEP viewers of the public programme;
* ``churn``: ``bench.churn``.

The server (``bench.hemiserver``) and the load generators (``bench.scenario_loadgen``,
synthetic members: bench/synthetic.py, spread over ``--loadgens`` processes by
bench/scenario_fleet.py) are separate processes on loopback, in a private network
namespace. For each N it grows the members, waits a warm-up, then measures over
``--duration`` seconds: server CPU (every process, children included), the packets the
receivers counted, latency, loss, RSS, and checks, senders paused around the window, that
every receiver got exactly what it should. The same load through aiortc's
MediaRelay (bench/mediarelay_room.py) at ``--baseline-n`` is the baseline.
Results: ``bench/results/scenario-<name>-<date>.{json,md,png}``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from . import common, scenario_report
from .orchestration import DEFAULT_OUT, Deadline, busy_seconds, ensure_private_network, log, server_stats, wait_quiet
from .procs import Child, ChildFailed, module_argv, udp_drops
from .scenario_fleet import Fleet, loadgens_for

SCENARIOS = ("sitting", "stress", "broadcast")
# Silent microphones send what a browser sends: Opus DTX, which the server negotiates (media.opus_dtx).
SILENCE = {"sitting": "dtx", "stress": "dtx", "broadcast": "dtx"}


def start_server(kind: str, args: argparse.Namespace, work: Path, children: dict[str, Child]) -> str:
    if kind == "hemicycle":
        flags = f"serve --host 127.0.0.1 --port 0 --no-demo --log-level {args.server_log_level}".split()
        argv = module_argv("bench.hemiserver", *flags, "--secret-file", str(work / "secret.key"))
        env = {
            "HEMICYCLE_DATA_DIR": str(work),
            "HEMICYCLE_PROGRAMME__ENABLED": "true" if args.programme else "false",
            "HEMICYCLE_MEDIA__CAMERA_BITRATE": str(args.video_bitrate),
            "HEMICYCLE_MEDIA__MAX_VIDEOS": str(args.videos if args.videos >= 0 else 100),
            "HEMICYCLE_MEDIA__OPUS_DTX": "true" if args.silence == "dtx" else "false",
        }
        if args.udp_port:  # every connection's media on one port: sendmmsg batches (sfu/udp_batch.py)
            env["HEMICYCLE_ICE__UDP_PORT"] = str(args.udp_port)
        children["server"] = Child("hemicycle server", argv, str(work / "hemicycle-server.log"), env)
        return children["server"].expect("HEMICYCLE READY", 30)
    argv = module_argv("bench.mediarelay_room", "--bitrate", str(args.video_bitrate))
    children["server"] = Child("mediarelay room", argv, str(work / "mediarelay-server.log"))
    return children["server"].expect("MEDIARELAY READY", 30)


def server_processes(child: Child) -> list[psutil.Process]:
    try:
        return [child.ps, *child.ps.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def rss_mb(child: Child) -> float:
    total = 0
    for proc in server_processes(child):
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def fold(values: dict[str, Any]) -> dict[str, Any]:
    """Per child -> per role: the load generators (``loadgen0``, ``loadgen1``..) summed as ``loadgen``."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        role = "loadgen" if name.startswith("loadgen") else name
        out[role] = out.get(role, 0) + value
    return out


def mark(children: dict[str, Child], fleet: Fleet, stats_url: str | None) -> dict[str, Any]:
    loadgen = fleet.stats()
    me = psutil.Process().cpu_times()
    return {
        "wall": time.monotonic(),
        "loadgen": loadgen,
        "cpu": fold({name: child.cpu_seconds() for name, child in children.items()}),
        "server_times": children["server"].cpu_times(),
        "server_processes": len(server_processes(children["server"])),
        "server_main": sum(children["server"].ps.cpu_times()[:2]),  # the SFU and signaling process alone
        "server_rss_mb": rss_mb(children["server"]),
        "host_busy": busy_seconds(),
        "orchestrator": me.user + me.system,
        "loadavg": os.getloadavg()[0],
        "udp_drops": fold(udp_drops({name: child.proc.pid for name, child in children.items()})),
        "server_stats": server_stats(stats_url),
    }


class RssSampler(threading.Thread):
    """The server's RSS (its processes together) once a second, for the memory-over-time plot."""

    def __init__(self, child: Child, server: str, samples: list[dict[str, Any]], started: float) -> None:
        super().__init__(daemon=True)
        self.child, self.server, self.samples, self.started = child, server, samples, started
        self.n = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            self.samples.append(
                {
                    "t": round(time.monotonic() - self.started, 1),
                    "server": self.server,
                    "n": self.n,
                    "rss_mb": round(rss_mb(self.child), 1),
                }
            )


def watch_window(kind: str, n: int, children: dict[str, Child], seconds: float) -> None:
    """Sleep through the window, printing the server's CPU every few seconds."""
    start = time.monotonic()
    cpu0, t0 = children["server"].cpu_seconds(), start
    while (left := start + seconds - time.monotonic()) > 0:
        time.sleep(min(3.0, left))
        cpu1, t1 = children["server"].cpu_seconds(), time.monotonic()
        log(f"  {kind} N={n}: {t1 - start:4.0f}/{seconds:.0f} s, server CPU {(cpu1 - cpu0) / (t1 - t0) * 100:5.0f} %")
        cpu0, t0 = cpu1, t1


def measure(
    kind: str,
    steps: list[int],
    loadgens: int,
    args: argparse.Namespace,
    work: Path,
    deadline: Deadline,
    rss: list[dict[str, Any]],
    started: float,
) -> list[dict[str, Any]]:
    """One server and ``loadgens`` load-generator processes, grown through ``steps``."""
    rows: list[dict[str, Any]] = []
    children: dict[str, Child] = {}
    sampler: RssSampler | None = None
    fleet: Fleet | None = None
    work.mkdir(parents=True, exist_ok=True)
    try:
        url = start_server(kind, args, work, children)
        sampler = RssSampler(children["server"], kind, rss, started)
        sampler.start()
        fleet = Fleet(kind, args, url, work, loadgens, children)
        clip = fleet.ready()
        log(
            f"{kind}: server at {url}, {loadgens} load generator process{'es' if loadgens > 1 else ''} up "
            f"(VP8 clip {clip['video_kbps']} kbit/s)"
        )
        for n in steps:
            if deadline.left() < args.warmup + args.duration + 30:
                log(f"{kind}: time budget exhausted, skipping N={n}")
                break
            sampler.n = n
            limit = max(10.0, min(deadline.left() - args.warmup - args.duration, args.grow_timeout))
            members = args.members if args.scenario == "broadcast" else n
            grown = fleet.grow(members, limit)
            log(
                f"{kind}: {grown['ok']}/{grown['members']} members receive every camera after {grown['seconds']:.1f} s"
                + (f"; failures: {grown['failed']}" if grown["failed"] else "")
                + (f"; cameras missing (member: count): {grown['lagging']}" if grown["lagging"] else "")
            )
            if grown["ok"] < members:
                rows.append({"server": kind, "error": f"N={n}: only {grown['ok']}/{members} members fully receiving"})
            arranged = fleet.arrange()
            if arranged["forced_muted"]:
                log(f"{kind}: the chair muted {arranged['forced_muted']} microphone(s) in {arranged['seconds']:.1f} s")
            setup = grown["seconds"]
            if args.scenario == "broadcast":
                viewers = fleet.viewers(n, limit)
                log(
                    f"{kind}: {viewers['viewers']} WHEP viewers after {viewers['seconds']:.1f} s"
                    + (f"; failures: {viewers['failed']}" if viewers["failed"] else "")
                )
                if viewers["viewers"] < n:
                    rows.append({"server": kind, "error": f"N={n}: only {viewers['viewers']}/{n} viewers"})
                setup += viewers["seconds"]
            time.sleep(args.warmup)
            waited, others = wait_quiet(children, args, deadline)
            if waited > 1.5:
                log(f"{kind}: N={n}: waited {waited:.0f} s for other processes to calm down ({others:.0f} % CPU)")
            fleet.checkpoint()
            time.sleep(0.5)
            m0 = mark(children, fleet, url if kind == "hemicycle" else None)
            watch_window(kind, n, children, args.duration)
            m1 = mark(children, fleet, url if kind == "hemicycle" else None)
            check = fleet.checkpoint()
            row = scenario_report.compute(args.scenario, kind, n, m0, m1, check)
            row["setup_s"] = round(setup, 1)
            row["loadgens"] = loadgens
            row["saturated"] = row["host_busy_pct"] > 90 * len(os.sched_getaffinity(0))
            rows.append(row)
            if m1["loadgen"]["member_errors"]:
                log(f"{kind}: protocol errors seen by members: {m1['loadgen']['member_errors']}")
            log(
                f"{kind}: N={n}: server CPU {row['server_cpu_pct']:.0f} %, {row['received_pps']:.0f} pkt/s to members"
                f" over {row['forwarded_streams']} streams, latency p50/p99 {_ms(row['latency_p50_ms'])}/"
                f"{_ms(row['latency_p99_ms'])} ms, loss {_ms(row['loss_pct'])} %, exact check "
                + (f"{check['mismatched']}/{check['pairs']} pairs off" if kind == "hemicycle" else "n/a (re-encoded)")
                + f", loadgen CPU {row['loadgen_cpu_pct']:.0f} % ({loadgens} process{'es' if loadgens > 1 else ''})"
                + (" — MACHINE SATURATED" if row["saturated"] else "")
            )
    except (ChildFailed, OSError, ValueError, KeyError) as exc:
        log(f"{kind}: FAILED: {exc!r}")
        rows.append({"server": kind, "error": str(exc)})
    finally:
        if sampler is not None:
            sampler.done.set()
        if fleet is not None:
            fleet.stop()
        if "server" in children:
            children["server"].stop()
    return rows


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def fleet_groups(kind: str, steps: list[int], args: argparse.Namespace) -> list[tuple[int, list[int]]]:
    """The steps by number of load-generator processes (members stay in their process from step to step).

    The MediaRelay baseline (N <= 8) always has one."""
    groups: list[tuple[int, list[int]]] = []
    for n in steps:
        loadgens = 1 if kind == "mediarelay" else loadgens_for(args.loadgens, n)
        if groups and groups[-1][0] == loadgens:
            groups[-1][1].append(n)
        else:
            groups.append((loadgens, [n]))
    return groups


def describe_load(args: argparse.Namespace) -> str:
    cameras = "every camera on" if args.cameras < 0 else f"{args.cameras} cameras on (the others off)"
    cameras += ", each member receiving " + ("every one" if args.videos < 0 else f"at most {args.videos}")
    members = f"{args.members} members and N WHEP viewers" if args.scenario == "broadcast" else "N members"
    muted = "the others muted by the chair" if args.scenario == "sitting" else "nobody muted"
    silence = "DTX (one Opus frame per 400 ms)" if args.silence == "dtx" else "Opus silence every 20 ms"
    return (
        f"{members}, each VP8 640x360@30 ~{args.video_bitrate // 1000} kbit/s + Opus; {args.speakers} speaking, "
        f"{muted}; {cameras}; silent microphones: {silence}; programme {'on' if args.programme else 'off'}; "
        + (f"media on one shared UDP port ({args.udp_port})" if args.udp_port else "a UDP port per connection")
        + (f"; load generators at nice {args.loadgen_nice}" if args.loadgen_nice else "")
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scenario", description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--n", type=int, nargs="+", help="members (broadcast: WHEP viewers); default 45 (broadcast 20)")
    parser.add_argument("--members", type=int, default=9, help="broadcast: members publishing")
    parser.add_argument("--speakers", type=int, default=3)
    parser.add_argument(
        "--videos",
        type=int,
        default=9,
        help="videos each member receives at most (the server's media.max_videos; -1: all)",
    )
    parser.add_argument("--cameras", type=int, default=-1, help="cameras kept on (-1: all); the rest turned off")
    parser.add_argument(
        "--silence",
        choices=["frames", "dtx"],
        help="silent microphones: dtx (the default: what "
        "browsers send, the server asks usedtx=1) or frames (every 20 ms: media.opus_dtx=false)",
    )
    parser.add_argument(
        "--programme",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the public programme worker (default: off; broadcast: on)",
    )
    parser.add_argument("--baseline-n", type=int, nargs="*", default=[2, 4], help="MediaRelay baseline N (≤ 8)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--duration", type=float, default=20.0, help="measurement window per N, seconds")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds after joining, before measuring")
    parser.add_argument("--decoders", type=int, default=2, help="members that decode the chair's camera")
    parser.add_argument("--video-bitrate", type=int, default=500_000, help="synthetic VP8 clip bitrate")
    parser.add_argument("--udp-port", type=int, default=0, help="Hemicycle's ice.udp_port (0: a port per connection)")
    parser.add_argument("--concurrency", type=int, default=2, help="members joining at once (over all load generators)")
    parser.add_argument("--loadgens", default="auto", help="load-generator processes: an int, or auto (2 if 2 CPUs "
                        "are usable and N >= 16, else 1); member i lives in process i %% P")
    parser.add_argument("--loadgen-nice", type=int, default=0, help="run the load generators at this nice level: "
                        "the server first on a shared machine, as if its clients were elsewhere")
    parser.add_argument("--grow-timeout", type=float, default=300.0, help="seconds for one step's members to join")
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="time budget; later steps are skipped")
    parser.add_argument("--quiet-threshold", type=float, default=30.0, help="CPU %% of other processes to wait out")
    parser.add_argument("--quiet-wait", type=float, default=30.0, help="max seconds to wait for a quiet machine")
    parser.add_argument("--no-uvloop", action="store_true", help="plain asyncio in the load generator")
    parser.add_argument("--server-log-level", default="WARNING")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    parser.add_argument("--stem", help="file name stem (default scenario-<name>-YYYY-MM-DD)")
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument("--allow-host-network", action="store_true", help="run without a private network namespace")
    args = parser.parse_args(argv)
    if any(n > 8 for n in args.baseline_n):
        parser.error("--baseline-n: MediaRelay re-encodes for every subscriber, keep N ≤ 8")
    if args.loadgens != "auto" and not (args.loadgens.isdigit() and int(args.loadgens) >= 1):
        parser.error("--loadgens: a positive int or auto")
    args.n = sorted(set(args.n or [20 if args.scenario == "broadcast" else 45]))
    args.silence = args.silence or SILENCE[args.scenario]
    args.programme = args.scenario == "broadcast" if args.programme is None else args.programme
    if args.scenario == "broadcast" and not args.programme:
        parser.error("broadcast needs the programme")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["churn"]:
        from . import churn

        os.environ.setdefault("HEMICYCLE_PROGRAMME__ENABLED", "false")  # explicit; set it to true to include it
        ensure_private_network(argv[1:], "--allow-host-network" in argv, module="bench.churn")
        return churn.main(argv[1:])
    args = parse_args(argv)
    netns = ensure_private_network(argv, args.allow_host_network, module="bench.scenario")
    started = time.monotonic()
    deadline = Deadline(args.max_seconds)
    machine = common.machine_info()
    log(f"scenario {args.scenario}: {machine['cpu_model']}, {machine['usable_cpus']} CPUs; network: {netns}")
    work = Path(tempfile.mkdtemp(prefix="hemicycle-scenario-"))
    baseline = [] if args.no_baseline or args.scenario == "broadcast" else args.baseline_n
    rss: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for kind, steps in (("hemicycle", sorted(set(args.n) | set(baseline))), ("mediarelay", baseline)):
        groups = fleet_groups(kind, steps, args)
        for loadgens, group in groups:  # a fresh server when the number of load generators changes
            place = work if len(groups) == 1 else work / f"{kind}-{loadgens}-loadgens"
            rows += measure(kind, group, loadgens, args, place, deadline, rss, started)
    date = datetime.date.today().isoformat()
    doc = {
        "date": date,
        "started_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 1),
        "machine": machine,
        "netns": netns,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "load": describe_load(args),
        "fields": scenario_report.FIELDS,
        "results": [r for r in rows if "error" not in r],
        "rss": rss,
        "errors": [r["error"] for r in rows if "error" in r],
        "notes": [
            "Each member receives at most --videos cameras, chosen by the server (media.max_videos: screen shares, "
            "the floor, the chair, the chamber, the last speakers, then publishing order); the exact check expects "
            "from each publisher what the server's video_selection told that receiver. The MediaRelay baseline "
            "sends every camera (it has no selection); at its N <= 8 that is the same load.",
        ]
        + (
            [
                "With the programme on, the SFU's own packet count (receivers_vs_server) includes its taps to the "
                "programme worker."
            ]
            if args.programme
            else []
        ),
    }
    paths = scenario_report.save(doc, args.out, args.stem or f"scenario-{args.scenario}-{date}")
    print()
    print(scenario_report.markdown(doc))
    log(f"saved {', '.join(paths.values())}; {doc['duration_s']} s in total")
    if doc["errors"] or args.keep_logs:
        log(f"{'errors: ' + str(doc['errors']) + '; ' if doc['errors'] else ''}logs kept in {work}")
        return 1 if doc["errors"] else 0
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Join-time benchmark: from a click on "join" to the first decoded remote video frame.

``python -m bench.join_time [--k 1 3 6] [--reps 5] [--warmup 1] [--allow-host-network]``

The real server (``python -m signaling serve``) runs as a subprocess; invitations come
from the real ``python -m signaling invite``. For each K, K councillors (each its own
headless Chromium with a 320x240 15 fps fake camera and a tone) are already in the
sitting; then a joiner Chromium opens a fresh invitation, waits until the pre-join screen
is ready, and clicks ``#join-button``. In the page itself (no driver round trip in the
measure) a capture-phase click listener stamps ``performance.now()``, and a 20 ms timer
polls the subscribing connection's ``getStats()``:

* ``connected``: the subscribing RTCPeerConnection reaches ``connected`` (ICE + DTLS);
* ``first``: the first inbound video with ``framesDecoded > 0`` (the measure asked for);
* ``all``: every one of the K remote videos has decoded a frame.

The joiner then leaves (``#leave-button``) and the next repetition starts with another
invitation (a new seat), so each repetition is a cold join into the same warm sitting.
Runs only inside a private network namespace with nothing but ``lo`` (re-executes itself
under ``unshare -n`` when root), unless ``--allow-host-network``. Results: a Markdown table
on stdout and ``bench/results/join-time-<date>.{json,md}``.

Here: the command, the network, the machine and the loop over K. The server and its
invitations are in bench/join_server.py, the in-page probe and one join in
bench/join_browser.py, the statistics and the table in bench/join_report.py.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import in_private_netns
from .join_browser import POLL_MS, VIEWPORT, diagnose, one_join, present_and_publishing, wait_for
from .join_report import fmt_ms, markdown, summarise
from .join_server import Server
from .orchestration import DEFAULT_OUT, log

ROOT = Path(__file__).resolve().parents[1]
NETNS_MARK = "HEMICYCLE_JOIN_BENCH_NETNS"
NETNS_SCRIPT = 'ip link set lo up && ip route add default dev lo src 127.0.0.1; exec "$@"'


# ---------------------------------------------------------------------------- environment


def ensure_private_network(argv: list[str], allow_host: bool) -> str:
    """Re-exec under ``unshare -n`` (root); returns how the network is isolated."""
    if in_private_netns():
        return "private network namespace (only lo)"
    if os.environ.get(NETNS_MARK):
        raise SystemExit("re-executed under unshare -n, but interfaces other than lo are still visible")
    if os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip"):
        os.environ[NETNS_MARK] = "1"
        os.execvp(
            "unshare",
            ["unshare", "-n", "sh", "-c", NETNS_SCRIPT, "sh", sys.executable, "-m", "bench.join_time", *argv],
        )
    if allow_host:
        log("WARNING: host network namespace (--allow-host-network): browsers gather candidates on every interface")
        return "host network (--allow-host-network)"
    raise SystemExit(
        "refusing to run: not root (or no unshare/ip), so no private network namespace; "
        "run as root or pass --allow-host-network"
    )


def chromium_version(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def machine_info(chromium: str) -> dict[str, Any]:
    """The relay bench's machine facts, plus the browser's versions."""
    from importlib.metadata import PackageNotFoundError, version

    from bench.common import machine_info as common_machine_info

    info = common_machine_info()
    info["chromium"] = chromium_version(chromium)
    try:
        info["playwright"] = version("playwright")
    except PackageNotFoundError:
        info["playwright"] = "unknown"
    return info


class SetupFailed(RuntimeError):
    pass


async def run(args: argparse.Namespace, server: Server, media: dict) -> list[dict[str, Any]]:
    from playwright.async_api import async_playwright

    from tests.e2e.browser import launch_chromium

    colours = list(media)
    results: list[dict[str, Any]] = []
    async with async_playwright() as pw:
        for k in args.k:
            present = []
            joiner = None
            try:
                log(f"K={k}: starting {k} councillor browsers")
                present = await asyncio.gather(
                    *(
                        launch_chromium(pw, f"k{k}-member{i}", media[colours[i % len(colours)]].y4m,
                                        media[colours[i % len(colours)]].wav, viewport=VIEWPORT)
                        for i in range(k)
                    )
                )  # fmt: skip
                urls = await asyncio.gather(
                    *(asyncio.to_thread(server.invite, f"K{k} member {i + 1}") for i in range(k))
                )
                for c, url in zip(present, urls):
                    await c.page.goto(url)
                    await c.page.locator("#join-button:not([disabled])").wait_for(timeout=15_000)
                    await c.page.locator("#join-button").click()
                for c in present:
                    try:
                        await wait_for(lambda c=c: present_and_publishing(c.page), 30, f"{c.name} publishing")
                    except RuntimeError as e:
                        await diagnose(c, server)
                        raise SetupFailed(str(e)) from None
                await asyncio.sleep(args.settle)
                log(f"K={k}: {k} councillors in the sitting and publishing")
                joiner = await launch_chromium(
                    pw, f"k{k}-joiner", media[colours[-1]].y4m, media[colours[-1]].wav, viewport=VIEWPORT
                )
                runs = []
                for r in range(args.warmup + args.reps):
                    warm = r < args.warmup
                    url = await asyncio.to_thread(server.invite, f"K{k} joiner {r + 1}")
                    try:
                        res = await one_join(joiner, url, k, args.timeout)
                    except Exception as e:  # this repetition failed; the next one starts afresh
                        res = {key: None for key in ("connected_ms", "first_packet_ms", "first_ms", "all_ms")}
                        res.update(remotes=0, pli_before_first=None, error=f"{type(e).__name__}: {e}"[:300])
                    res.update(k=k, rep=r + 1 - args.warmup, warmup=warm, loadavg_1min=os.getloadavg()[0])
                    if not warm:
                        runs.append(res)
                    tag = "warm-up" if warm else f"rep {r + 1 - args.warmup}/{args.reps}"
                    log(
                        f"K={k} {tag}: connected {fmt_ms(res['connected_ms'])}, first video packet "
                        f"{fmt_ms(res['first_packet_ms'])}, first frame {fmt_ms(res['first_ms'])}, all {k} "
                        f"{fmt_ms(res['all_ms'])}, PLIs sent before it {res['pli_before_first']}"
                        + (f" (error {res['error']})" if res.get("error") else "")
                    )
                    await asyncio.sleep(args.pause)
                row: dict[str, Any] = {"k": k, "runs": runs}
                for key in ("first_ms", "all_ms", "connected_ms", "first_packet_ms"):
                    row[key] = summarise([x[key] for x in runs if x[key] is not None])
                row["failed"] = sum(1 for x in runs if x["first_ms"] is None)
                results.append(row)
            except SetupFailed as e:
                log(f"K={k}: the {k} councillors did not all get in: {e}")
                results.append({"k": k, "runs": [], "setup_error": str(e), "failed": args.reps})
            finally:
                for c in [*present, *([joiner] if joiner else [])]:
                    await c.close()
    return results


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.join_time", description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 3, 6], help="councillors already in (default 1 3 6)")
    parser.add_argument("--reps", type=int, default=5, help="measured joins per K (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured joins first, per K (default 1)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the K videos per join")
    parser.add_argument("--settle", type=float, default=4.0, help="seconds between the K joining and the 1st join")
    parser.add_argument("--pause", type=float, default=1.5, help="seconds between repetitions")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-save", action="store_true", help="print only, write no result files")
    parser.add_argument("--allow-host-network", action="store_true", help="run without a private network namespace")
    args = parser.parse_args(argv)
    if any(k < 1 for k in args.k) or args.reps < 1:
        parser.error("K and --reps must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    network = ensure_private_network(argv, args.allow_host_network)
    if os.geteuid() == 0 and in_private_netns():
        route = subprocess.run(["ip", "-4", "route", "show", "default"], capture_output=True, text=True).stdout
        if "src 127.0.0.1" not in route:
            subprocess.run(["ip", "route", "replace", "default", "dev", "lo", "src", "127.0.0.1"], check=False)
    sys.path.insert(0, str(ROOT))
    from tests.e2e import media as media_mod
    from tests.e2e.browser import CHROMIUM

    machine = machine_info(CHROMIUM)
    log(f"machine: {machine['cpu_model']}, {machine['usable_cpus']} CPUs, {machine['chromium']}; network: {network}")
    workdir = Path(tempfile.mkdtemp(prefix="hemicycle-join-bench-"))
    media = media_mod.generate(workdir / "media")
    server = Server(workdir)
    server.start()
    log(f"server ready at {server.base_url}")
    started = time.time()
    try:
        results = asyncio.run(run(args, server, media))
    finally:
        server.stop()
    doc = {
        "bench": "join_time",
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 1),
        "command": "python -m bench.join_time " + " ".join(argv),
        "network": network,
        "machine": machine,
        "media": f"{media_mod.WIDTH}x{media_mod.HEIGHT} {media_mod.FPS} fps colour .y4m + tone .wav, headless Chromium",
        "reps": args.reps,
        "warmup": args.warmup,
        "poll_ms": POLL_MS,
        "results": results,
    }
    text = markdown(doc)
    print()
    print(text)
    if not args.no_save:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        stem = f"join-time-{datetime.date.today().isoformat()}"
        (args.out_dir / f"{stem}.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        (args.out_dir / f"{stem}.md").write_text(text)
        log(f"saved {args.out_dir / stem}.json and .md")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0 if all(row["failed"] == 0 for row in results) else 1


if __name__ == "__main__":
    sys.exit(main())

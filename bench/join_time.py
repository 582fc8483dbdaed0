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
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results"
NETNS_MARK = "HEMICYCLE_JOIN_BENCH_NETNS"
NETNS_SCRIPT = 'ip link set lo up && ip route add default dev lo src 127.0.0.1; exec "$@"'
READY_RE = re.compile(r"HEMICYCLE READY (http://\S+)")
URL_RE = re.compile(r"(https?://\S+/join#token=\S+)")
SITTING = "bench-join"
POLL_MS = 20
VIEWPORT = (640, 400)  # small windows: less compositing for K+1 browsers on a few CPUs

# Installed before the click: stamps the click, then polls getStats every POLL_MS.
PROBE_JS = """(pollMs) => {
  const b = {click: null, connected: null, packet: null, first: null, all: null, remotes: 0, expected: null,
             pli: 0, error: null};
  window.__joinBench = b;
  const button = document.querySelector('#join-button');
  button.addEventListener('click', () => { b.click = performance.now(); }, {capture: true, once: true});
  let busy = false;
  const timer = setInterval(async () => {
    if (busy || b.click === null) return;
    busy = true;
    try {
      const conn = window.hemicycle?.connection;
      const pc = conn?.subscribePc;
      if (!pc) return;
      const now = performance.now();
      if (b.connected === null && pc.connectionState === 'connected') b.connected = now;
      let decoded = 0, packets = 0, pli = 0;
      (await pc.getStats()).forEach(s => {
        if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
        if ((s.framesDecoded || 0) > 0) decoded += 1;
        packets += s.packetsReceived || 0;
        pli += s.pliCount || 0;
      });
      const t = performance.now();
      b.remotes = decoded;
      if (packets > 0 && b.packet === null) b.packet = t;
      if (decoded > 0 && b.first === null) { b.first = t; b.pli = pli; }
      if (b.expected !== null && decoded >= b.expected && b.all === null) b.all = t;
      if (b.all !== null) clearInterval(timer);
    } catch (e) {
      b.error = String(e);
    } finally {
      busy = false;
    }
  }, pollMs);
  b.stop = () => clearInterval(timer);
}"""

RESULT_JS = """() => { const b = window.__joinBench; if (!b) return null;
  const ms = (x) => (x === null || b.click === null) ? null : x - b.click;
  return {connected_ms: ms(b.connected), first_packet_ms: ms(b.packet), first_ms: ms(b.first),
          all_ms: ms(b.all), remotes: b.remotes, pli_before_first: b.pli, error: b.error}; }"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------------------- environment


def interfaces() -> list[str]:
    with open("/proc/net/dev") as handle:
        return [line.split(":", 1)[0].strip() for line in handle.readlines()[2:]]


def in_private_netns() -> bool:
    return all(name == "lo" for name in interfaces())


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


# ---------------------------------------------------------------------------- server


class Server:
    """``python -m signaling serve`` on 127.0.0.1, and ``invite`` for links."""

    def __init__(self, workdir: Path, python: str = sys.executable) -> None:
        self.python = python
        self.workdir = workdir
        self.secret_file = workdir / "invite-secret"
        self.secret_file.write_text(secrets.token_hex(32) + "\n")
        self.secret_file.chmod(0o600)
        self.stderr_path = workdir / "server-stderr.log"
        self.base_url = ""
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [
            self.python, "-m", "signaling", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--sitting", SITTING, "--sitting-title", "Join-time bench",
            "--secret-file", str(self.secret_file), "--no-demo", "--log-level", "WARNING",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEMICYCLE_")}
        env.update(PYTHONUNBUFFERED="1", HEMICYCLE_DATA_DIR=str(self.workdir / "data"))
        self._stderr = open(self.stderr_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env, start_new_session=True
        )
        ready = threading.Event()
        found: dict[str, str] = {}

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                if (m := READY_RE.search(line)) and not ready.is_set():
                    found["url"] = m.group(1).rstrip("/")
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout) or "url" not in found:
            self.stop()
            raise SystemExit(f"server not ready in {timeout:.0f}s:\n{self.stderr_path.read_text()[-3000:]}")
        self.base_url = found["url"]

    def invite(self, name: str) -> str:
        cmd = [
            self.python, "-m", "signaling", "invite", "--base-url", self.base_url, "--name", name,
            "--role", "councillor", "--sitting", SITTING, "--secret-file", str(self.secret_file),
        ]  # fmt: skip
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30)
        m = URL_RE.search(res.stdout)
        if res.returncode != 0 or not m:
            raise RuntimeError(f"invite failed ({res.returncode}): {res.stderr}")
        return m.group(1)

    def stop(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if getattr(self, "_stderr", None):
            self._stderr.close()


# ---------------------------------------------------------------------------- browsers


async def wait_for(predicate, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await predicate()
        except Exception as e:  # page still loading
            last = e
        if last and not isinstance(last, Exception):
            return last
        await asyncio.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


async def present_and_publishing(page) -> bool:
    return await page.evaluate(
        """() => { const c = window.hemicycle?.connection;
                   return !!(c && c.joined && c.publishPc?.connectionState === 'connected'); }"""
    )


async def one_join(joiner, url: str, k: int, timeout: float) -> dict[str, Any]:
    page = joiner.page
    await page.goto("about:blank")  # a new fragment alone would not reload /join
    await page.goto(url)
    await page.locator("#join-button:not([disabled])").wait_for(timeout=15_000)
    await page.evaluate(PROBE_JS, POLL_MS)
    await page.evaluate(f"() => {{ window.__joinBench.expected = {k}; }}")
    await page.locator("#join-button").click()
    try:
        await wait_for(
            lambda: page.evaluate("() => window.__joinBench.all !== null"), timeout, f"{k} remote videos decoding"
        )
    except RuntimeError:
        pass  # reported below as a missing "all"
    result = await page.evaluate(RESULT_JS)
    await page.evaluate("() => window.__joinBench.stop()")
    # a DOM click: with K tiles in a small window Playwright may find the button hard to "click"
    await page.evaluate("() => document.querySelector('#leave-button').click()")
    await wait_for(lambda: page.evaluate("() => document.body.dataset.view === 'ended'"), 10, "left")
    return result


async def diagnose(c, server: Server) -> None:
    """What a councillor's page and the server say when it does not get in."""
    try:
        info = await c.page.evaluate(
            """() => { const c = window.hemicycle?.connection;
                       return {view: document.body.dataset.view, state: window.hemicycle?.state(),
                               ws: c?.ws?.readyState, pub: c?.publishPc?.connectionState,
                               pubIce: c?.publishPc?.iceConnectionState, sub: c?.subscribePc?.connectionState,
                               status: document.querySelector('#status-line')?.textContent}; }"""
        )
    except Exception as e:  # page gone
        info = repr(e)
    log(f"{c.name}: page {json.dumps(info, default=str)[:2000]}")
    log(f"{c.name}: console (last 20):\n  " + "\n  ".join(c.console[-20:]))
    log("server stderr (tail):\n" + server.stderr_path.read_text(errors="replace")[-3000:])


class SetupFailed(RuntimeError):
    pass


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
                        f"K={k} {tag}: connected {_ms(res['connected_ms'])}, first video packet "
                        f"{_ms(res['first_packet_ms'])}, first frame {_ms(res['first_ms'])}, all {k} "
                        f"{_ms(res['all_ms'])}, PLIs sent before it {res['pli_before_first']}"
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


def _ms(v: float | None) -> str:
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

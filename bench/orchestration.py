"""What every bench orchestrator shares: a log line, a private network, a time budget, a quiet machine.

``bench.relay`` grew these first; ``bench.scenario``, ``bench.workers``, ``bench.churn`` and
``bench.programme`` use them too, ``bench.join_time`` its log line and results directory:

* :func:`log`: a time-stamped progress line on stdout; :data:`DEFAULT_OUT`: bench/results/;
* :func:`ensure_private_network`: re-execute the bench under ``unshare -n`` (only ``lo``);
* :class:`Deadline`: the ``--max-seconds`` budget;
* :func:`busy_seconds`, :func:`others_cpu`, :func:`wait_quiet`: the CPU the rest of the shared
  machine uses, and a wait until it calms down before a window;
* :func:`server_stats`: the server's ``GET /bench/stats`` (bench/hemiserver.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from . import common
from .procs import Child

NETNS_MARK = "HEMICYCLE_BENCH_NETNS"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def ensure_private_network(argv: list[str], allow_host: bool, module: str) -> str:
    """Re-exec ``python -m module argv`` under ``unshare -n`` when possible; returns how the network is isolated."""
    if common.in_private_netns():
        return "private (only lo)"
    if os.environ.get(NETNS_MARK):
        raise SystemExit("re-executed under unshare -n, but interfaces other than lo are still visible")
    if os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip"):
        os.environ[NETNS_MARK] = "1"
        script = 'ip link set lo up && exec "$@"'
        os.execvp("unshare", ["unshare", "-n", "sh", "-c", script, "sh", sys.executable, "-m", module, *argv])
    if allow_host:
        log("WARNING: running in the host network namespace (--allow-host-network); ICE stays on 127.0.0.1")
        return "host (--allow-host-network), ICE restricted to 127.0.0.1"
    raise SystemExit(
        "refusing to run: not root (or no unshare/ip) so no private network namespace; "
        "run as root, under `unshare -rn`, or pass --allow-host-network"
    )


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def server_stats(url: str | None) -> dict[str, Any] | None:
    if url is None:
        return None
    try:
        with urllib.request.urlopen(url + "/bench/stats", timeout=5) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]
    except OSError as exc:
        log(f"server stats unavailable: {exc!r}")
        return None


def busy_seconds() -> float:
    host = psutil.cpu_times()
    return host.user + host.nice + host.system + getattr(host, "irq", 0.0) + getattr(host, "softirq", 0.0)


def others_cpu(children: dict[str, Child], seconds: float = 1.0) -> float:
    """CPU (% of one core) used by processes that are not part of the bench, over ``seconds``."""
    me = psutil.Process()

    def ours() -> float:
        times = me.cpu_times()
        return sum(c.cpu_seconds() for c in children.values()) + times.user + times.system

    h0, o0, t0 = busy_seconds(), ours(), time.monotonic()
    time.sleep(seconds)
    h1, o1, t1 = busy_seconds(), ours(), time.monotonic()
    return max(0.0, ((h1 - h0) - (o1 - o0)) / (t1 - t0) * 100)


def wait_quiet(children: dict[str, Child], args: argparse.Namespace, deadline: Deadline) -> tuple[float, float]:
    """Wait (at most --quiet-wait s) until other processes use less than --quiet-threshold % CPU.

    This machine is shared: another session's browser tests can take a whole core.
    Returns (seconds waited, the last reading).
    """
    started = time.monotonic()
    reading = others_cpu(children)
    while reading > args.quiet_threshold and time.monotonic() - started < min(args.quiet_wait, deadline.left() - 60):
        reading = others_cpu(children)
    return time.monotonic() - started, reading

"""Where a forwarding process's CPU time goes, from ``perf`` samples with kernel call chains.

Python 3.11 frames have no names for ``perf``, but the shared objects and the kernel's
call chains do; each sample of the process is put in one bucket:

* ``kernel: loopback delivery to the receiver`` — the receiving half of a loopback
  datagram (``__netif_receive_skb`` … ``udp_rcv`` … waking the reader), run in the
  *sender's* system call. On a real network this is the other machine's work (and the
  NIC's): it is charged to the SFU only on loopback;
* ``kernel: sending`` — the rest of ``sendto``/``sendmmsg`` (UDP, IP, the loopback "NIC");
* ``kernel: receiving`` — ``recvfrom``/``recvmsg`` and ``epoll`` of the process's own sockets;
* ``kernel: other`` — everything else in the kernel (timers, memory, scheduling);
* ``SRTP (libsrtp, OpenSSL)`` (pylibsrtp's ``_binding`` links both in), ``Python interpreter``,
  ``FFI calls (cffi)``, ``uvloop``, ``libc``, ``other user``.

The three symbols with most samples of each bucket are kept too (``top`` in the JSON).

Use it on the in-process microbenchmark (the default) or on a running server::

    .venv/bin/python -m bench.cost_split                       # forwarding_micro mux-batch, N=128
    .venv/bin/python -m bench.cost_split --pid 1234 --seconds 20 --label "server, sitting of 45"

Run it inside the private network namespace (the microbenchmark sends on loopback). It
needs ``perf`` (Debian ``linux-perf``) and ``kernel.perf_event_paranoid`` ≤ 2 as root.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from .common import machine_info
from .orchestration import DEFAULT_OUT, log

RECEIVER_SIDE = frozenset({
    "__netif_receive_skb", "__netif_receive_skb_core", "__netif_receive_skb_one_core", "process_backlog",
    "net_rx_action", "ip_rcv", "ip_local_deliver", "udp_rcv", "__udp4_lib_rcv", "udpv6_rcv", "ip6_rcv",
    "udp_queue_rcv_skb", "__udp_enqueue_schedule_skb", "sock_def_readable", "ep_poll_callback",
})
SENDING = frozenset({"__sys_sendto", "__sys_sendmmsg", "__sys_sendmsg", "udp_sendmsg", "udpv6_sendmsg"})
RECEIVING = frozenset({"__sys_recvfrom", "__sys_recvmsg", "__sys_recvmmsg", "do_epoll_wait", "udp_recvmsg"})
BUCKETS = (
    "kernel: loopback delivery to the receiver", "kernel: sending", "kernel: receiving", "kernel: other",
    "SRTP (libsrtp, OpenSSL)", "Python interpreter", "FFI calls (cffi)", "uvloop", "libc", "other user",
)


def bucket(frames: list[tuple[str, str]]) -> str:
    """The bucket of one sample: ``frames`` are (symbol, shared object), innermost first."""
    symbols = {sym.split("+", 1)[0] for sym, _ in frames}
    _, dso = frames[0]
    if "kernel" in dso or (dso.startswith("[") and dso != "[unknown]"):
        if symbols & RECEIVER_SIDE and symbols & SENDING:
            return "kernel: loopback delivery to the receiver"
        if symbols & SENDING:
            return "kernel: sending"
        if symbols & RECEIVING:
            return "kernel: receiving"
        return "kernel: other"
    name = os.path.basename(dso)
    if "srtp" in name or "libcrypto" in name or name.startswith("_binding"):  # pylibsrtp links both in
        return "SRTP (libsrtp, OpenSSL)"
    if name.startswith("_cffi_backend"):
        return "FFI calls (cffi)"
    if name.startswith(("python", "libpython")):
        return "Python interpreter"
    if "uvloop" in name or "loop.cpython" in name:
        return "uvloop"
    if name.startswith(("libc.so", "libc-", "ld-linux")):
        return "libc"
    return "other user"


def parse_samples(text: str, pids: set[int] | None = None) -> tuple[Counter[str], dict[str, Counter[str]]]:
    """Count ``perf script -F comm,pid,ip,sym,dso`` samples per bucket (of these pids only),
    and per innermost symbol within each bucket."""
    counts: Counter[str] = Counter()
    symbols: dict[str, Counter[str]] = {name: Counter() for name in BUCKETS}
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line.strip()]
        if len(lines) < 2:
            continue
        head = lines[0].split()
        if pids is not None and not (len(head) >= 2 and head[-1].isdigit() and int(head[-1]) in pids):
            continue
        frames = []
        for line in lines[1:]:
            parts = line.strip().split(" ", 1)
            if len(parts) < 2:
                continue
            sym, _, dso = parts[1].rpartition(" (")
            frames.append((sym.strip(), dso.rstrip(")")))
        if frames:
            name = bucket(frames)
            counts[name] += 1
            symbols[name][frames[0][0].split("+", 1)[0]] += 1
    return counts, symbols


def record(command: list[str] | None, pid: int | None, seconds: float, data: Path) -> float | None:
    """Sample; with a command (the microbenchmark), return the µs per packet it measured."""
    base = ["perf", "record", "-e", "cpu-clock", "-F", "1999", "-g", "-o", str(data)]
    if pid is not None:
        subprocess.run([*base, "-p", str(pid), "--", "sleep", str(seconds)], check=True, capture_output=True)
        return None
    assert command is not None
    output = subprocess.run([*base, "--", *command], check=True, capture_output=True, text=True).stdout
    print(output, end="", file=sys.stderr)
    found = re.search(r"([0-9.]+) µs/pkt CPU", output)
    return float(found.group(1)) if found else None


def table(counts: Counter[str]) -> list[tuple[str, float]]:
    total = sum(counts.values()) or 1
    return [(name, 100.0 * counts[name] / total) for name in BUCKETS]


def markdown(label: str, rows: list[tuple[str, float]], samples: int, per_packet_us: float | None,
             top: dict[str, list[str]]) -> str:
    lines = [f"**{label}** ({samples} samples)", "", "| where | share % | µs per forwarded packet | top symbols |",
             "|---|---:|---:|---|"]
    for name, share in rows:
        us = "" if per_packet_us is None else f"{per_packet_us * share / 100:.2f}"
        lines.append(f"| {name} | {share:.1f} | {us} | {', '.join(top[name])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost_split", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pid", type=int, help="sample this running process (default: run the microbenchmark)")
    parser.add_argument("--seconds", type=float, default=20.0, help="with --pid: how long to sample")
    parser.add_argument("--n", type=int, default=128, help="microbenchmark: consumers of the one producer")
    parser.add_argument("--variant", default="mux-batch", help="microbenchmark variant (bench.forwarding_micro)")
    parser.add_argument("--us-per-packet", type=float,
                        help="µs per forwarded packet measured over the same window, to split it (default: what the "
                             "microbenchmark printed; with --pid, the bench's figure for the window)")
    parser.add_argument("--label", default="")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--stem", default=f"cost-split-{time.strftime('%Y-%m-%d')}")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "perf.data"
        command = None
        if args.pid is None:
            command = [sys.executable, "-m", "bench.forwarding_micro", "--n", str(args.n), "--only", args.variant,
                       "--no-primitives", "--repeat", "40"]
        label = args.label or (f"forwarding_micro {args.variant}, N={args.n}" if command else f"pid {args.pid}")
        log(f"perf record: {label}")
        measured = record(command, args.pid, args.seconds, data)
        if args.us_per_packet is None:
            args.us_per_packet = measured
        script = subprocess.run(["perf", "script", "-i", str(data), "-F", "comm,pid,ip,sym,dso"],
                                capture_output=True, text=True, check=True).stdout
    counts, symbols = parse_samples(script, {args.pid} if args.pid is not None else None)
    rows = table(counts)
    top = {name: [sym for sym, _ in symbols[name].most_common(3)] for name in BUCKETS}
    text = markdown(label, rows, sum(counts.values()), args.us_per_packet, top)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"label": label, "machine": machine_info(), "samples": sum(counts.values()),
              "us_per_packet": args.us_per_packet, "shares_pct": dict(rows), "top": top}
    (args.out / f"{args.stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{args.stem}.md").write_text(text + "\n")
    log(f"saved {args.out / args.stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""bench.cost_split puts each perf sample in the right bucket (samples as `perf script` prints them)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from bench.cost_split import BUCKETS, parse_samples

K = "[kernel.kallsyms]"
LOOPBACK_SEND = [  # innermost first: the receiving half of a loopback datagram, inside sendmmsg
    ("__udp_enqueue_schedule_skb+0x10", K), ("udp_queue_rcv_one_skb", K), ("udp_rcv", K), ("ip_rcv", K),
    ("__netif_receive_skb_one_core", K), ("process_backlog", K), ("net_rx_action", K), ("handle_softirqs", K),
    ("__dev_queue_xmit", K), ("ip_output", K), ("udp_sendmsg", K), ("__sys_sendmmsg", K),
    ("sendmmsg", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
]
SEND = [("_copy_from_iter", K), ("ip_make_skb", K), ("udp_sendmsg", K), ("__sys_sendmmsg", K)]
RECV = [("_copy_to_iter", K), ("udp_recvmsg", K), ("__sys_recvfrom", K)]
SRTP = [("ossl_aes_gcm_encrypt_avx512", "/x/site-packages/pylibsrtp/_binding.abi3.so")]
PYTHON = [("_PyEval_EvalFrameDefault", "/x/lib/libpython3.11.so.1.0")]
TIMER = [("hrtimer_interrupt", K)]


def script(samples: list[tuple[int, list[tuple[str, str]]]]) -> str:
    blocks = []
    for pid, frames in samples:
        lines = [f"python {pid} "] + [f"\tffffffff81000000 {sym} ({dso})" for sym, dso in frames]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def test_samples_are_bucketed_by_object_and_kernel_call_chain() -> None:
    text = script([(7, LOOPBACK_SEND), (7, LOOPBACK_SEND), (7, SEND), (7, RECV), (7, SRTP), (7, PYTHON),
                   (7, PYTHON), (7, PYTHON), (7, TIMER), (8, PYTHON)])
    counts, symbols = parse_samples(text, {7})
    assert counts == {
        "kernel: loopback delivery to the receiver": 2, "kernel: sending": 1, "kernel: receiving": 1,
        "SRTP (libsrtp, OpenSSL)": 1, "Python interpreter": 3, "kernel: other": 1,
    }
    assert set(counts) <= set(BUCKETS)
    assert symbols["kernel: loopback delivery to the receiver"] == {"__udp_enqueue_schedule_skb": 2}
    all_counts, _ = parse_samples(text)  # no pid filter: the other process's sample too
    assert all_counts["Python interpreter"] == 4


@pytest.mark.skipif(shutil.which("perf") is None, reason="perf (linux-perf) is not installed")
def test_perf_script_output_parses() -> None:
    """A real `perf record` of a real process gives samples in the buckets (the format holds)."""
    probe = subprocess.run(["perf", "record", "-e", "cpu-clock", "-g", "-o", "/dev/null", "true"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("perf cannot sample here: " + probe.stderr.decode(errors="replace")[-200:])
    from pathlib import Path
    from tempfile import TemporaryDirectory

    with TemporaryDirectory() as tmp:
        data = Path(tmp) / "perf.data"
        subprocess.run(["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-o", str(data), "--",
                        sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True, capture_output=True)
        text = subprocess.run(["perf", "script", "-i", str(data), "-F", "comm,pid,ip,sym,dso"],
                              capture_output=True, text=True, check=True).stdout
    counts, _ = parse_samples(text)
    assert sum(counts.values()) > 50
    assert counts["Python interpreter"] > sum(counts.values()) / 2

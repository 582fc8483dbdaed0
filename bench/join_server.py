"""The join bench's server: ``python -m signaling serve`` on 127.0.0.1, and ``invite`` for links.

A subprocess of its own (stdout read by a thread for the ``HEMICYCLE READY`` line, stderr to a
file that :func:`bench.join_browser.diagnose` shows), with a fresh secret and data directory,
and one sitting, :data:`SITTING`, that every invitation is for.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from .procs import ROOT

READY_RE = re.compile(r"HEMICYCLE READY (http://\S+)")
URL_RE = re.compile(r"(https?://\S+/join#token=\S+)")
SITTING = "bench-join"


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
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if getattr(self, "_stderr", None):
            self._stderr.close()

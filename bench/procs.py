"""Child processes of the bench: started by the orchestrator, driven by stdin lines.

Orchestrator side: :class:`Child` (a subprocess, its stdout read by a thread, its CPU
read with psutil). Child side: :func:`commands`, an async iterator over stdin lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import psutil

PYTHON = sys.executable
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ChildFailed(RuntimeError):
    pass


class Child:
    """A subprocess whose stdout lines are queued and whose stderr goes to a log file."""

    def __init__(self, name: str, argv: list[str], log_path: str, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
            env={**os.environ, **(env or {})},
        )
        self.ps = psutil.Process(self.proc.pid)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, timeout: float) -> str:
        """The rest of the first stdout line starting with ``prefix`` (other lines are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildFailed(f"{self.name}: no '{prefix}' within {timeout:.0f} s (see {self.log_path})")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise ChildFailed(f"{self.name} exited with {self.proc.wait()} (see {self.log_path})")
            if line.startswith(prefix):
                return line[len(prefix) :].strip()

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def ask(self, command: str, prefix: str, timeout: float = 30.0) -> str:
        self.send(command)
        return self.expect(prefix, timeout)

    def ask_json(self, command: str, prefix: str, timeout: float = 30.0) -> Any:
        return json.loads(self.ask(command, prefix, timeout))

    def cpu_times(self) -> tuple[float, float]:
        """(user, sys) seconds of the process and of its live children, all threads included."""
        user = system = 0.0
        for proc in [self.ps, *self.ps.children(recursive=True)]:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            user += times.user
            system += times.system
        return user, system

    def cpu_seconds(self) -> float:
        return sum(self.cpu_times())

    def stop(self, timeout: float = 10.0, polite: float = 0.0) -> int | None:
        """Close stdin (children stop on EOF), wait ``polite`` seconds, then SIGTERM, then SIGKILL."""
        if polite and self.proc.poll() is None:
            try:
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
                self.proc.wait(polite)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            try:
                if self.proc.stdin is not None and not self.proc.stdin.closed:
                    self.proc.stdin.close()
            except OSError:
                pass
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def udp_drops(pids: dict[str, int]) -> dict[str, int]:
    """Datagrams the kernel dropped (receive buffer full) on the UDP sockets of each process.

    Reads /proc/net/udp and udp6 (this network namespace) and matches socket inodes
    to the processes' file descriptors.
    """
    owners: dict[str, str] = {}
    for name, pid in pids.items():
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    owners[target[8:-1]] = name
        except OSError:
            continue
    drops = dict.fromkeys(pids, 0)
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as handle:
                lines = handle.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) >= 13 and fields[9] in owners:
                drops[owners[fields[9]]] += int(fields[12])
    return drops


def module_argv(module: str, *args: str) -> list[str]:
    return [PYTHON, "-m", module, *args]


# ---------------------------------------------------------------------------- child side


async def commands() -> AsyncIterator[str]:
    """stdin lines, until EOF."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        text = line.decode().strip()
        if text:
            yield text


def say(prefix: str, payload: Any = None) -> None:
    """One line for the orchestrator on stdout."""
    if payload is None:
        print(prefix, flush=True)
    else:
        text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
        print(f"{prefix} {text}", flush=True)

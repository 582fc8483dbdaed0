"""Worker processes: the sittings spread over several processes, one per core.

With ``server.workers`` above 1 (and more than one sitting), ``hemicycle serve`` runs a
*front* process (signaling/front.py: the public listener, TLS, the static pages, the
proxy) and N *workers*. A worker is the ordinary application (``create_app``: signaling,
SFU, programme) holding only the sittings placed on it, listening on ``127.0.0.1`` on a
port of its own choosing, with its own media UDP sockets: media never passes through
the front. This module places the sittings, starts the workers (``python -m
signaling.workers INDEX``, the settings pickled on stdin), restarts those that die and
is, on the worker's side, its ``main``. docs/architecture.md, « Workers ».
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import pickle
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from config import Settings
from config.settings import SittingSettings

log = logging.getLogger(__name__)

READY = "HEMICYCLE WORKER READY"
START_TIMEOUT = 60.0  # seconds for a worker to import, replay its sittings and listen
STOP_TIMEOUT = 15.0  # seconds for a worker to close its sittings before SIGKILL
RESTART_DELAYS = (0.2, 1.0, 2.0, 5.0, 10.0)  # after the 1st, 2nd… failure in a row
STABLE_AFTER = 30.0  # seconds up after which a worker's failures are forgotten
EXPECTED_PARTICIPANTS = 20  # a sitting without a roster: assumed size for placement


def worker_count(settings: Settings) -> int:
    """Worker processes to run: ``server.workers`` (0/auto: one per usable core), never more
    than the sittings; 1 means no worker at all (one process, as before)."""
    wanted = settings.server.workers
    if wanted in (0, "auto"):
        wanted = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(int(wanted), len(settings.sittings)))


def weight(spec: SittingSettings) -> int:
    """The expected load of a sitting: everyone receives everyone, so participants squared."""
    people = len(spec.members) or EXPECTED_PARTICIPANTS
    return people * people


def place(specs: Sequence[SittingSettings], workers: int) -> list[list[str]]:
    """Sitting ids per worker: heaviest first, each on the least-loaded worker so far
    (ties: fewer sittings, then the lower index). Deterministic for given settings."""
    loads = [0] * workers
    placed: list[list[str]] = [[] for _ in range(workers)]
    for spec in sorted(specs, key=weight, reverse=True):  # sorted() is stable: declaration order on ties
        target = min(range(workers), key=lambda i: (loads[i], len(placed[i]), i))
        loads[target] += weight(spec)
        placed[target].append(spec.id)
    return placed


def worker_settings(settings: Settings, index: int, sittings: Sequence[str], public_url: str) -> Settings:
    """The front's settings, narrowed to one worker: its sittings, loopback, plain HTTP."""
    data = settings.model_dump()
    data.update(
        host="127.0.0.1",
        port=0,
        public_url=public_url,  # links, origins and HSTS are the front's
        demo=False,
        sittings=[s for s in data["sittings"] if s["id"] in sittings],
        tls={"certificate": None, "private_key": None, "self_signed": False},  # the front speaks TLS
        server={"workers": 1},
    )
    if settings.ice.udp_port is not None:
        data["ice"]["udp_port"] = settings.ice.udp_port + index  # one muxed port per worker
    if index != 0:
        data["recording"]["retention_days"] = None  # one process prunes the recordings
    return Settings(**data)


@dataclass
class Worker:
    index: int
    sittings: list[str]
    settings: Settings | None = None
    process: asyncio.subprocess.Process | None = None
    port: int | None = None  # set while the worker is up and listening
    restarts: int = 0
    started_at: float = 0.0

    @property
    def up(self) -> bool:
        return self.port is not None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


@dataclass
class Pool:
    """The workers, where each sitting lives, and their supervision."""

    settings: Settings
    workers: list[Worker] = field(init=False)
    owners: dict[str, Worker] = field(init=False)  # sitting id -> its worker, for the whole run
    http: aiohttp.ClientSession | None = None
    stopping: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _next: int = 0

    def __post_init__(self) -> None:
        placed = place(self.settings.sittings, worker_count(self.settings))
        self.workers = [Worker(i, ids) for i, ids in enumerate(placed)]
        self.owners = {sid: w for w in self.workers for sid in w.sittings}

    def owner(self, sitting: str) -> Worker | None:
        return self.owners.get(sitting)

    def any(self) -> Worker | None:
        """A worker that is up, in turn: for what belongs to no sitting."""
        up = [w for w in self.workers if w.up]
        if not up:
            return None
        self._next += 1
        return up[self._next % len(up)]

    async def start(self, public_url: str) -> None:
        """Start every worker (at once) and return when all listen; then supervise them."""
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=False), auto_decompress=False
        )
        for worker in self.workers:
            worker.settings = worker_settings(self.settings, worker.index, worker.sittings, public_url)
        await asyncio.gather(*(self._spawn(w) for w in self.workers))
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._supervise(w)) for w in self.workers]
        for worker in self.workers:
            log.info("worker %d (pid %s) holds %s", worker.index, worker.pid, ", ".join(worker.sittings))

    async def _spawn(self, worker: Worker) -> None:
        assert worker.settings is not None
        process = worker.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "signaling.workers",
            str(worker.index),
            logging.getLevelName(logging.getLogger().getEffectiveLevel()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches the front only; it stops the workers in order
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(pickle.dumps(worker.settings))  # kept open: its end tells the worker the front died
        await process.stdin.drain()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            line = (await asyncio.wait_for(process.stdout.readline(), max(0.1, deadline - time.monotonic()))).decode()
            if not line:
                raise RuntimeError(f"worker {worker.index} exited before it was ready ({await process.wait()})")
            if line.startswith(READY):
                worker.port = int(line.split()[-1])
                worker.started_at = time.monotonic()
                break
            print(line, end="", flush=True)  # e.g. warnings printed at start-up
        asyncio.get_running_loop().create_task(_drain(process.stdout))

    async def _supervise(self, worker: Worker) -> None:
        failures = 0
        while not self.stopping:
            assert worker.process is not None
            code = await worker.process.wait()
            worker.port = None
            if self.stopping:
                return
            up_for = time.monotonic() - worker.started_at
            failures = 0 if up_for > STABLE_AFTER else failures
            log.error(
                "worker %d (pid %s) exited with %s after %.0f s; restarting it (its sittings: %s)",
                worker.index,
                worker.pid,
                code,
                up_for,
                ", ".join(worker.sittings),
            )
            while not self.stopping:
                await asyncio.sleep(RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)])
                failures += 1
                try:
                    await self._spawn(worker)
                except (OSError, RuntimeError, TimeoutError) as exc:
                    log.error("worker %d did not start: %s", worker.index, exc)
                    if worker.process is not None and worker.process.returncode is None:
                        worker.process.kill()
                        await worker.process.wait()
                    continue
                worker.restarts += 1
                log.warning("worker %d restarted (pid %s)", worker.index, worker.pid)
                break

    async def stop(self) -> None:
        """SIGTERM every worker (they close their sittings cleanly), SIGKILL after STOP_TIMEOUT."""
        self.stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*(_terminate(w) for w in self.workers))
        if self.http is not None:
            await self.http.close()


async def _terminate(worker: Worker) -> None:
    process, worker.port = worker.process, None
    if process is None or process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
    except TimeoutError:
        log.warning("worker %d did not stop within %.0f s: killed", worker.index, STOP_TIMEOUT)
        process.kill()
        await process.wait()


async def _drain(stream: asyncio.StreamReader) -> None:
    """Pass on what a worker prints, so that its stdout pipe never fills."""
    while line := await stream.readline():
        print(line.decode(errors="replace"), end="", flush=True)


# ---------------------------------------------------------------------------- the worker's side


def main(argv: list[str] | None = None) -> int:
    index, level = [*(sys.argv[1:] if argv is None else argv), "INFO"][:2]
    settings = pickle.load(sys.stdin.buffer)  # written by Pool._spawn: trusted, the front is our parent
    assert isinstance(settings, Settings)
    from .cli import setup_logging

    setup_logging(level, prefix=f"w{index} ")
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(_serve(settings))
    return 0


async def _serve(settings: Settings) -> None:
    from . import memory
    from .app import HUB, create_app
    from .cli import listen, until_stopped

    app = create_app(settings)
    runner, port = await listen(app, "127.0.0.1", 0)
    gc.collect()
    gc.freeze()  # as in cli._run: start-up objects never need scanning again
    reclaimer = memory.start(app[HUB])  # docs/operations.md, "Memory"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def watch_parent() -> None:  # stdin ends when the front exits, even by kill -9
        with contextlib.suppress(OSError, ValueError):
            sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_parent, name="hemicycle-front-watch", daemon=True).start()
    print(f"{READY} {port}", flush=True)
    await until_stopped(stop)
    await memory.stop(reclaimer)
    await runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())

"""Give memory back after members leave (docs/operations.md, "Memory").

A closed peer connection leaves reference cycles (aiortc's objects point at each other)
that only a full garbage collection frees; and because the start-up objects are frozen
(``gc.freeze`` in ``cli._run``), CPython's first automatic full collection waits for tens
of thousands of new objects. Meanwhile the garbage takes new obmalloc arenas and glibc
heap, which stay mapped once the garbage is gone (bench/results/churn-2026-12-03.md).

``warm_up`` runs at start what the first member's DTLS certificate would run (OpenSSL and
``cryptography`` code: ~1 MB of library pages that stay resident), so that the idle
server's memory already counts it. ``Reclaimer`` looks every few seconds at the live
transports; when one has gone since the last look, it runs a full collection, then
``malloc_trim(0)`` so that glibc returns the free pages of its heap to the system.
Linux with glibc only: elsewhere ``trim`` does nothing and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .hub import Hub

log = logging.getLogger(__name__)

RECLAIM_EVERY = 5.0  # seconds between two looks at the live transports (and at most one reclaim per look)
RECLAIM_BUDGET = 0.01  # share of the event loop's time reclaiming may take: after a pause of t, none for t / budget


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    function = getattr(libc, "malloc_trim", None)  # glibc only (not musl)
    if function is None:
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


_TRIM = _malloc_trim()


def trim() -> bool:
    """Return the C heap's free pages to the system (glibc ``malloc_trim(0)``); False where unavailable."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


def reclaim() -> tuple[float, float]:
    """A full garbage collection of every object, frozen ones too, then ``trim``; returns the seconds
    each took (the event loop waits that long). What survives is frozen again (see ``settle``)."""
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    collected = time.perf_counter()
    trim()
    return collected - started, time.perf_counter() - collected


def settle() -> None:
    """Collect the young generations, then freeze every object that survived.

    CPython's automatic full collections walk every tracked object (~617k in a 45-member
    sitting: aiortc's transceivers, tasks; a pause of a few hundred ms for every
    member's media). Frozen objects are not walked: between two reclaims the automatic ones
    only see what became old since the last look. Cycles that become garbage after being
    frozen (a departed member's connection) wait for the next ``reclaim``, which a departure
    calls for."""
    gc.collect(1)
    gc.freeze()


def warm_up() -> None:
    """Generate one DTLS certificate, as every peer connection does (aiortc), and drop it."""
    from aiortc import RTCCertificate

    RTCCertificate.generateCertificate()


def live_transports(hub: Hub) -> set[str]:
    """The ids of the hub's live transports (peer connections), every sitting."""
    return {tid for sitting in hub.sittings.values() for tid in sitting.router.transports}


@dataclass
class Reclaimer:
    """Reclaim (``reclaim``) after transports have closed, at most once per ``every`` seconds,
    and within ``budget`` of the time: a full collection of a big sitting's heap stops the event
    loop (and every member's media) for a good fraction of a second; back to back, during a
    wave of departures, such pauses had members dropped as silent, whose departures called for
    more collections. After a reclaim of t seconds the next waits t / budget (0.5 s: 50 s)."""

    live: Callable[[], Iterable[str]]
    every: float = RECLAIM_EVERY
    budget: float = RECLAIM_BUDGET
    clock: Callable[[], float] = time.monotonic
    runs: int = 0
    seconds: float = 0.0  # total time spent reclaiming
    longest_gc: float = 0.0
    longest_trim: float = 0.0
    _seen: frozenset[str] = frozenset()
    _pending: bool = False  # a transport has gone since the last reclaim
    _not_before: float = 0.0

    def check(self) -> bool:
        """One look: reclaim if a transport is gone since the last reclaim and the budget
        allows it now (else at a later look). True if it reclaimed."""
        now = frozenset(self.live())
        self._pending = self._pending or bool(self._seen - now)
        self._seen = now
        if not self._pending or self.clock() < self._not_before:
            settle()
            return False
        self._pending = False
        collecting, trimming = reclaim()
        self._not_before = self.clock() + (collecting + trimming) / self.budget
        self.runs += 1
        self.seconds += collecting + trimming
        self.longest_gc = max(self.longest_gc, collecting)
        self.longest_trim = max(self.longest_trim, trimming)
        log.info("memory reclaimed: the event loop stopped %.0f ms (gc %.1f ms, trim %.1f ms)",
                 (collecting + trimming) * 1000, collecting * 1000, trimming * 1000)
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            self.check()

    def start(self) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(self.run(), name="memory-reclaimer")


def start(hub: Hub, every: float = RECLAIM_EVERY) -> asyncio.Task[None]:
    """At the server's start: ``warm_up``, then a ``Reclaimer`` on the hub's transports (``stop`` the task)."""
    warm_up()
    return Reclaimer(lambda: live_transports(hub), every).start()


async def stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

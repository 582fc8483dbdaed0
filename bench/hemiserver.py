"""Hemicycle's own server (``signaling.cli.main``, i.e. ``python -m signaling serve``), plus
one read-only bench route, ``GET /bench/stats``, with the SFU's own packet counters (and
the cyclic garbage collector's collections and time per generation).

``python -m bench.hemiserver serve --host 127.0.0.1 --port 0 --secret-file F --no-demo``

Nothing else changes: the same settings, the same uvloop, the same code path. The route
is served only to 127.0.0.1 and is read twice per measurement window. With
``HEMICYCLE_BENCH_UDP_BATCH=0`` the muxed port (``ice.udp_port``) sends one ``sendto`` per
datagram instead of batching them in one ``sendmmsg`` (``sfu.udp_batch.ENABLED``), to compare.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from typing import Any

from aiohttp import web

import signaling.app
import signaling.cli as cli
from sfu import aiortc_glue, udp_batch
from signaling.app import HUB, create_app


class GcClock:
    """Collections and seconds spent in them, per generation, since the server started."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]  # the longest pause, seconds
        self.over_5ms = [0, 0, 0]  # pauses longer than 5 ms (a latency tail)
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            generation = info["generation"]
            pause = time.perf_counter() - self._started
            self.count[generation] += 1
            self.seconds[generation] += pause
            self.longest[generation] = max(self.longest[generation], pause)
            self.over_5ms[generation] += pause > 0.005

    def snapshot(self) -> dict[str, list[float]]:
        return {"collections": list(self.count), "seconds": [round(s, 4) for s in self.seconds],
                "longest_s": [round(s, 4) for s in self.longest], "over_5ms": list(self.over_5ms)}


GC_CLOCK = GcClock()


def _counters(app: web.Application) -> dict[str, Any]:
    out: dict[str, Any] = {"in": {}, "out": {}, "retransmits": 0, "keyframe_requests": 0, "consumers": 0}
    for sitting in app[HUB].sittings.values():
        for producer in list(sitting.router.producers.values()):
            kind = producer.kind
            out["in"][kind] = out["in"].get(kind, 0) + producer.packets_in
            out["keyframe_requests"] += producer.keyframe_requests
            for consumer in list(producer.consumers):
                out["out"][kind] = out["out"].get(kind, 0) + consumer.packets_out
                out["retransmits"] += consumer.retransmits
                out["consumers"] += 1
    return out


async def _stats(request: web.Request) -> web.StreamResponse:
    if request.remote not in ("127.0.0.1", "::1"):
        raise web.HTTPNotFound()
    counters = _counters(request.app)
    counts = {"transports": 0, "producers": 0, "consumers": 0, "peer_connections": 0}
    for sitting in request.app[HUB].sittings.values():
        for key, value in sitting.router.counts().items():
            counts[key] += value
        counts["peer_connections"] += len(sitting.router.transports)
    counters["live"] = counts
    counters["tasks"] = len(asyncio.all_tasks())
    counters["gc"] = GC_CLOCK.snapshot()
    counters["programmes"] = {sid: prog.stats for sid, prog in request.app[HUB].programmes.items() if prog.stats}
    shared = aiortc_glue.shared_udp_port()
    batches = [mux.batch for mux in shared.muxes.values() if mux.batch is not None] if shared is not None else []
    if batches:
        counters["udp_batch"] = {key: sum(getattr(b, key) for b in batches) for key in ("calls", "sent", "fallbacks")}
    return web.json_response(counters)


async def _tasks(request: web.Request) -> web.StreamResponse:
    """Every asyncio task's stack, as text (diagnostics: where is a negotiation waiting?)."""
    if request.remote not in ("127.0.0.1", "::1"):
        raise web.HTTPNotFound()
    out = []
    for task in asyncio.all_tasks():
        frames = task.get_stack(limit=12)
        where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(frames))
        out.append(f"{task.get_name()}: {where}")
    return web.Response(text="\n".join(sorted(out)))


async def _subscribers(request: web.Request) -> web.StreamResponse:
    """Each member's receiving connection: negotiation state, slots, what it forwards (diagnostics)."""
    if request.remote not in ("127.0.0.1", "::1"):
        raise web.HTTPNotFound()
    out = []
    for sitting in request.app[HUB].sittings.values():
        for seat in sitting.seats.values():
            session = seat.session
            if session is None or not sitting.router.has_transport(session.recv_transport_id):
                continue
            transport = sitting.router.transports[session.recv_transport_id]
            slots = getattr(transport, "slots", [])
            consumers = [s.consumer for s in slots if s.consumer is not None]
            out.append({
                "seat": seat.id,
                "connected": transport.connected,
                "revision": getattr(transport, "revision", None),
                "pending_revision": getattr(transport, "pending_revision", None),
                "negotiating": session._negotiating,
                "renegotiate_wanted": session._renegotiate_wanted,
                "slots_wanted": session._slots_wanted,
                "slots": len(slots),
                "negotiated": sum(1 for s in slots if s.mid),
                "configured": sum(1 for s in slots if s.writer is not None),
                "consumers": len(consumers),
                "active": sum(1 for c in consumers if c.active),
                "paused": sum(1 for c in consumers if c.paused),
                "waiting_sync": sum(1 for c in consumers if c.waiting_sync),
                "packets_out": sum(c.packets_out for c in consumers),
            })  # fmt: skip
    return web.json_response(out)


async def _objects(request: web.Request) -> web.StreamResponse:
    """The GC-tracked objects by type, most numerous first (what a full collection walks)."""
    if request.remote not in ("127.0.0.1", "::1"):
        raise web.HTTPNotFound()
    counts: dict[str, int] = {}
    frozen = gc.get_freeze_count()
    gc.unfreeze()  # frozen objects are walked by a reclaim too: count them (a pause, for diagnostics)
    try:
        for obj in gc.get_objects():
            name = f"{type(obj).__module__}.{type(obj).__qualname__}"
            counts[name] = counts.get(name, 0) + 1
    finally:
        gc.freeze()
    top = sorted(counts.items(), key=lambda item: -item[1])[:40]
    return web.json_response({"total": sum(counts.values()), "frozen": frozen, "top": top})


def _create_app_with_stats(settings: Any) -> web.Application:
    app = create_app(settings)
    app.router.add_get("/bench/stats", _stats)
    app.router.add_get("/bench/tasks", _tasks)
    app.router.add_get("/bench/subscribers", _subscribers)
    app.router.add_get("/bench/objects", _objects)
    return app


def main() -> int:
    udp_batch.ENABLED = os.environ.get("HEMICYCLE_BENCH_UDP_BATCH", "1") != "0"
    # cli may import create_app at module level or lazily from signaling.app: patch both.
    signaling.app.create_app = _create_app_with_stats
    if hasattr(cli, "create_app"):
        cli.create_app = _create_app_with_stats
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())

"""``GET /metrics``: what a technician watches, in the Prometheus text format.

Everything about the SFU is read at scrape time (:class:`HemicycleCollector`) from the
counters the producers and consumers keep anyway (``Router.counts()``,
``Router.traffic()``): the packet path does no extra work for metrics. Besides: an
event-loop lag probe (a task sleeping 0.5 s and measuring the overshoot), and the
process, GC and platform collectors of ``prometheus_client``.

Access: loopback clients (without forwarding headers: a reverse proxy on the same
machine is *not* loopback), or anyone sending ``Authorization: Bearer <metrics.token>``.
Meaning of each metric, normal values, scrape configuration: docs/operations.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from sfu.stats import downstream_loss

from .hub import Hub
from .metrics_access import allowed, check_access, is_loopback  # allowed, is_loopback: for callers
from .tokens import ROLES

__all__ = ["allowed", "check_access", "is_loopback", "setup_metrics"]

LAG_INTERVAL = 0.5  # seconds between two event-loop lag probes
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# (metric name without _total, help, field of Router.traffic())
COUNTERS = (
    ("hemicycle_rtp_received_packets", "RTP packets received from publishers (RTX unwrapped).", "packets_in"),
    ("hemicycle_rtp_received_bytes", "Bytes of RTP received from publishers.", "bytes_in"),
    ("hemicycle_rtp_forwarded_packets", "RTP packets sent to subscribers (one per subscriber leg).", "packets_out"),
    ("hemicycle_rtp_forwarded_bytes", "Bytes of RTP sent to subscribers.", "bytes_out"),
    ("hemicycle_rtp_forward_failures", "Packets the send path refused on a leg already up.", "send_failures"),
    ("hemicycle_rtp_retransmitted_packets", "Packets re-sent to answer subscribers' NACKs.", "retransmits"),
    ("hemicycle_keyframe_requests", "Keyframe requests (PLI) sent to publishers.", "keyframe_requests"),
    (
        "hemicycle_upstream_packets_lost",
        "Packets lost between publishers and the server, net of NACK repairs (RFC 3550 cumulative loss).",
        "packets_lost",
    ),
)


class HemicycleCollector:
    """Reads the sittings and their Routers' live counters at each scrape."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        sittings = list(self.hub.sittings.values())
        yield GaugeMetricFamily("hemicycle_sittings", "Sittings this server holds.", value=len(sittings))
        participants = GaugeMetricFamily(
            "hemicycle_participants", "People connected (waiting room included), by role.", labels=["sitting", "role"]
        )
        gauges = {
            name: GaugeMetricFamily(f"hemicycle_{name}", help_text, labels=["sitting"])
            for name, help_text in (
                ("transports", "Peer connections (one to publish, one to receive, per person)."),
                ("producers", "Tracks published (microphones, cameras, screens)."),
                ("consumers", "Tracks forwarded: one per published track and subscriber."),
            )
        }
        loss_max = GaugeMetricFamily(
            "hemicycle_downstream_loss_ratio_max",
            "Worst fraction lost reported by a subscriber (RTCP receiver report), 0..1.",
            labels=["sitting"],
        )
        loss_mean = GaugeMetricFamily(
            "hemicycle_downstream_loss_ratio_mean",
            "Mean fraction lost reported by the subscribers (RTCP receiver reports), 0..1.",
            labels=["sitting"],
        )
        counters = {
            field: CounterMetricFamily(name, help_text, labels=["sitting", "kind"])
            for name, help_text, field in COUNTERS
        }
        for sitting in sittings:
            roles = dict.fromkeys(ROLES, 0)
            for seat in sitting.seats.values():
                if seat.session is not None:
                    roles[seat.role] = roles.get(seat.role, 0) + 1
            for role, count in roles.items():
                participants.add_metric([sitting.id, role], count)
            router = sitting.router
            for name, count in router.counts().items():
                gauges[name].add_metric([sitting.id], count)
            for kind, values in sorted(router.traffic().items()):
                for field, family in counters.items():
                    family.add_metric([sitting.id, kind], values[field])
            worst, mean, _ = downstream_loss(router)
            loss_max.add_metric([sitting.id], worst)
            loss_mean.add_metric([sitting.id], mean)
        yield from self._programmes()
        yield participants
        yield from gauges.values()
        yield from counters.values()
        yield loss_max
        yield loss_mean

    def _programmes(self) -> Iterator[Metric]:
        """The public programme of each sitting, from the worker's last stats line (every 5 s)."""
        families = {
            key: GaugeMetricFamily(f"hemicycle_programme_{name}", help_text, labels=["sitting"])
            for key, name, help_text in PROGRAMME_GAUGES
        }
        viewers = GaugeMetricFamily(
            "hemicycle_programme_viewers", "WebRTC (WHEP) viewers of the programme.", labels=["sitting"]
        )
        for sitting_id, programme in self.hub.programmes.items():
            families["running"].add_metric([sitting_id], 1 if programme.running else 0)
            viewers.add_metric([sitting_id], len(programme.viewers))
            for key, family in families.items():
                value = programme.stats.get(key)
                if key != "running" and isinstance(value, int | float) and programme.running:
                    family.add_metric([sitting_id], value)
        yield from families.values()
        yield viewers


# (field of the worker's stats line, metric name, help); "running" comes from the Programme itself
PROGRAMME_GAUGES = (
    ("running", "running", "1 while the sitting's programme worker runs."),
    ("encode_ms_p99", "encode_ms_p99", "Worst (p99) time to encode one programme frame over the last 5 s, ms."),
    ("video_skipped", "video_frames_skipped", "Frames the worker skipped since it started (it fell behind)."),
    ("cpu_s", "cpu_seconds", "CPU time the worker used since it started (decode, mix, compose, encode)."),
    ("errors", "errors", "Errors the worker survived since it started (each costs one frame)."),
)


@dataclass
class Metrics:
    hub: Hub
    registry: CollectorRegistry
    lag: Histogram
    lag_last: Gauge


METRICS = web.AppKey("metrics", Metrics)


def setup_metrics(app: web.Application, hub: Hub) -> Metrics:
    """Serve ``/metrics`` from ``app`` and run the lag probe while the app runs."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes…
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)
    registry.register(HemicycleCollector(hub))
    lag = Histogram(
        "hemicycle_event_loop_lag_seconds",
        f"How late the event loop wakes a task sleeping {LAG_INTERVAL} s (measured every {LAG_INTERVAL} s).",
        buckets=LAG_BUCKETS,
        registry=registry,
    )
    lag_last = Gauge("hemicycle_event_loop_lag_last_seconds", "The latest event-loop lag measured.", registry=registry)
    metrics = app[METRICS] = Metrics(hub, registry, lag, lag_last)
    app.router.add_get("/metrics", _metrics)
    app.cleanup_ctx.append(_lag_probe_ctx)
    return metrics


async def _lag_probe_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.get_running_loop().create_task(_probe_lag(app[METRICS]))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _probe_lag(metrics: Metrics) -> None:
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(LAG_INTERVAL)
        lag = max(0.0, loop.time() - start - LAG_INTERVAL)
        metrics.lag.observe(lag)
        metrics.lag_last.set(lag)


async def _metrics(request: web.Request) -> web.StreamResponse:
    metrics = request.app[METRICS]
    check_access(request, metrics.hub.settings)
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encoder(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

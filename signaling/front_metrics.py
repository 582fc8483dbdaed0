"""``GET /metrics`` of the front process (``server.workers``): every worker's metrics in one page.

At each scrape the front reads each worker's own ``/metrics`` (loopback, in parallel, 3 s at
most), adds a ``worker`` label (``0``, ``1``… ; ``front`` for the front's own process
metrics) to every sample, and merges the families: ``sum by (sitting)`` or ``sum without
(worker)`` give the server's totals, ``rate(process_cpu_seconds_total[1m])`` the CPU of each
process. Its own: ``hemicycle_workers``, ``hemicycle_worker_up``, ``hemicycle_worker_restarts_total``
and ``hemicycle_sitting_worker`` (where each sitting lives). Access as on a single server
(signaling/metrics_access.py). Always the Prometheus text format. docs/operations.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from config import Settings

from .metrics_access import check_access
from .workers import Pool, Worker

SCRAPE_TIMEOUT = 3.0
FRONT_METRICS = web.AppKey("front_metrics", CollectorRegistry)


def setup_front_metrics(app: web.Application, settings: Callable[[], Settings], pool: Pool) -> None:
    own = CollectorRegistry()  # the front process itself: labelled worker="front"
    ProcessCollector(registry=own)
    GCCollector(registry=own)
    PlatformCollector(registry=own)
    app[FRONT_METRICS] = own

    async def handler(request: web.Request) -> web.StreamResponse:
        check_access(request, settings())
        texts = dict(await asyncio.gather(*(_scrape(pool, w) for w in pool.workers if w.up)))
        texts["front"] = generate_latest(own).decode()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Merged(texts, pool))
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"}
        )

    app.router.add_get("/metrics", handler)


async def _scrape(pool: Pool, worker: Worker) -> tuple[str, str]:
    """A worker's page (empty if it does not answer in time: its ``hemicycle_worker_up`` says why)."""
    assert pool.http is not None
    with contextlib.suppress(aiohttp.ClientError, TimeoutError, UnicodeDecodeError):
        async with pool.http.get(
            worker.url + "/metrics",
            headers={"Accept": "text/plain"},
            timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT),
        ) as response:
            if response.status == 200:
                return str(worker.index), await response.text()
    return str(worker.index), ""


def merge(texts: dict[str, str]) -> list[Metric]:
    """The families of every page, one family per name, each sample labelled with its page's key."""
    families: dict[str, Metric] = {}
    for worker, text in texts.items():
        for family in text_string_to_metric_families(text):
            merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            for sample in family.samples:
                merged.add_sample(sample.name, {**sample.labels, "worker": worker}, sample.value, sample.timestamp)
    return list(families.values())


class _Merged:
    def __init__(self, texts: dict[str, str], pool: Pool) -> None:
        self.texts, self.pool = texts, pool

    def collect(self) -> Iterator[Metric]:
        yield from merge(self.texts)
        yield from pool_metrics(self.pool.workers)


def pool_metrics(workers: Iterable[Worker]) -> Iterator[Metric]:
    workers = list(workers)
    yield GaugeMetricFamily("hemicycle_workers", "Worker processes holding the sittings.", value=len(workers))
    up = GaugeMetricFamily("hemicycle_worker_up", "1 while the worker runs and listens.", labels=["worker"])
    restarts = CounterMetricFamily(
        "hemicycle_worker_restarts", "Times the worker was restarted after it died.", labels=["worker"]
    )
    where = GaugeMetricFamily(
        "hemicycle_sitting_worker", "1 for the worker holding the sitting.", labels=["sitting", "worker"]
    )
    for worker in workers:
        up.add_metric([str(worker.index)], 1 if worker.up else 0)
        restarts.add_metric([str(worker.index)], worker.restarts)
        for sitting in worker.sittings:
            where.add_metric([sitting, str(worker.index)], 1)
    yield from (up, restarts, where)

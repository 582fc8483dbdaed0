"""GET /metrics: two aiortc peers through the in-process server, scraped like Prometheus does."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from prometheus_client.parser import text_string_to_metric_families

from config import Settings
from signaling.app import create_app
from signaling.metrics import is_loopback
from tests.peers import Peer
from tests.test_media_relay import wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def total(samples: Samples, name: str, sitting: str = "demo") -> float:
    """Sum over the media kinds."""
    return sum(v for (n, labels), v in samples.items() if n == name and ("sitting", sitting) in labels)


async def scrape(base_url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"{base_url}/metrics", headers=headers) as response:
        return response.status, await response.text()


def live_counts(router: Any) -> dict[str, int]:
    """Straight from the Producer/Consumer objects, plus what closed ones left in the router."""
    out = {"packets_in": 0, "packets_out": 0, "bytes_out": 0}
    for producer in router.producers.values():
        out["packets_in"] += producer.packets_in
        for consumer in producer.consumers:
            out["packets_out"] += consumer.packets_out
            out["bytes_out"] += consumer.bytes_out
    for retired in router.totals.retired.values():
        for name in out:
            out[name] += retired[name]
    return out


COUNTERS = {
    "hemicycle_rtp_received_packets_total": "packets_in",
    "hemicycle_rtp_forwarded_packets_total": "packets_out",
    "hemicycle_rtp_forwarded_bytes_total": "bytes_out",
}


async def test_metrics_follow_two_peers_and_stay_monotonic(server) -> None:  # type: ignore[no-untyped-def]
    router = server.router
    peers = [Peer(server.base_url, server.token("Alice"), "red", 440), Peer(server.base_url, server.token("Bruno"), "green", 660)]
    try:
        for peer in peers:
            await peer.join()
            await peer.publish()
        alice, bruno = peers
        await wait_for(
            lambda: all(
                len(p.received.get(o.me or "", _Empty).counters) > 10 and p.received[o.me or ""].audio_frames > 20
                for p, o in ((alice, bruno), (bruno, alice))
            ),
            timeout=30,
        )
        await wait_for(lambda: router.counts() == {"transports": 4, "producers": 4, "consumers": 4})

        before, counts = live_counts(router), router.counts()
        status, text = await scrape(server.base_url)
        after = live_counts(router)
        assert status == 200 and router.counts() == counts
        first = parse(text)
        for name in ("transports", "producers", "consumers"):
            assert value(first, f"hemicycle_{name}", sitting="demo") == counts[name]
        assert value(first, "hemicycle_sittings") == 1
        assert value(first, "hemicycle_participants", sitting="demo", role="councillor") == 2
        assert value(first, "hemicycle_participants", sitting="demo", role="public") == 0
        assert value(first, "hemicycle_programme_running", sitting="demo") == 0  # disabled in these tests
        for metric, field in COUNTERS.items():  # read between two direct readings of the objects' counters
            assert before[field] <= total(first, metric) <= after[field], (metric, before, after)
        assert total(first, "hemicycle_rtp_forwarded_packets_total") > 0
        assert value(first, "hemicycle_rtp_received_packets_total", sitting="demo", kind="video") > 0
        assert value(first, "hemicycle_keyframe_requests_total", sitting="demo", kind="video") >= 1  # new consumers ask
        assert value(first, "hemicycle_event_loop_lag_seconds_count") >= 1
        assert 0 <= value(first, "hemicycle_event_loop_lag_last_seconds") < 1
        assert value(first, "process_resident_memory_bytes") > 10_000_000
        assert value(first, "process_cpu_seconds_total") > 0
        assert 0 <= value(first, "hemicycle_downstream_loss_ratio_max", sitting="demo") <= 1

        await asyncio.sleep(1.0)
        status, text = await scrape(server.base_url)
        second = parse(text)
        for metric in COUNTERS:
            assert total(second, metric) > total(first, metric), metric
        assert value(second, "hemicycle_event_loop_lag_seconds_count") > value(first, "hemicycle_event_loop_lag_seconds_count")
    finally:
        for peer in peers:
            await peer.close()

    await wait_for(lambda: router.counts() == {"transports": 0, "producers": 0, "consumers": 0}, timeout=10)
    status, text = await scrape(server.base_url)
    third = parse(text)
    for name in ("transports", "producers", "consumers"):
        assert value(third, f"hemicycle_{name}", sitting="demo") == 0
    assert value(third, "hemicycle_participants", sitting="demo", role="councillor") == 0
    counters = [key for key in second if key[0].endswith("_total") and key[0].startswith("hemicycle_")]
    assert len(counters) >= 16  # 8 counters x 2 kinds
    decreased = {key: (second[key], third[key]) for key in counters if third[key] < second[key]}
    assert not decreased  # closed producers and consumers left their counts behind
    assert total(third, "hemicycle_rtp_forwarded_packets_total") == live_counts(router)["packets_out"]


class _Empty:
    counters: list[int] = []
    audio_frames = 0


# --- access ----------------------------------------------------------------------------


async def test_a_request_through_a_proxy_is_not_loopback(server) -> None:  # type: ignore[no-untyped-def]
    status, _ = await scrape(server.base_url)
    assert status == 200
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        status, text = await scrape(server.base_url, {header: "203.0.113.9"})
        assert status == 403 and "hemicycle_" not in text, header


def _from(app: web.Application, address: str, headers: dict[str, str] | None = None) -> web.Request:
    """A request whose socket peer is ``address``: aiohttp reads the peer from the transport."""
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (address, 40000) if name == "peername" else default
    return make_mocked_request("GET", "/metrics", headers=headers or {}, app=app, transport=transport)


async def _call(app: web.Application, request: web.Request) -> int:
    match = await app.router.resolve(request)
    try:
        response = await match.handler(request)
    except web.HTTPException as refused:
        return refused.status
    return response.status


async def test_a_remote_client_needs_the_bearer_token(tmp_path: Path) -> None:
    open_app = create_app(Settings(port=0, data_dir=tmp_path / "a", demo=False))
    assert await _call(open_app, _from(open_app, "127.0.0.1")) == 200
    assert await _call(open_app, _from(open_app, "::1")) == 200
    assert await _call(open_app, _from(open_app, "192.0.2.7")) == 403  # no token set: loopback only
    assert await _call(open_app, _from(open_app, "192.0.2.7", {"Authorization": "Bearer "})) == 403

    app = create_app(Settings(port=0, data_dir=tmp_path / "b", demo=False, metrics={"token": "s3cret-t0ken"}))
    assert await _call(app, _from(app, "192.0.2.7")) == 401
    assert await _call(app, _from(app, "192.0.2.7", {"Authorization": "Bearer wrong"})) == 401
    assert await _call(app, _from(app, "192.0.2.7", {"Authorization": "Basic s3cret-t0ken"})) == 401
    assert await _call(app, _from(app, "192.0.2.7", {"Authorization": "Bearer s3cret-t0ken"})) == 200
    assert await _call(app, _from(app, "127.0.0.1", {"X-Forwarded-For": "192.0.2.7"})) == 401
    assert await _call(app, _from(app, "127.0.0.1")) == 200


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.3.2.1") and is_loopback("::1")
    assert not is_loopback("192.0.2.7") and not is_loopback("::ffff:192.0.2.7") and not is_loopback(None)
    assert not is_loopback("not-an-address")

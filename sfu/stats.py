"""A Router's traffic counters, read at scrape time (``Router.traffic()``).

Producers and consumers count their own packets with plain integer increments on
the packet path; nothing here runs per packet. When one closes, its counts are
added to the router's *retired* totals, so that the sums stay monotonic (what a
Prometheus counter must be) although closed objects take their counters with them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .consumer import Consumer
    from .producer import Producer
    from .router import Router

KINDS = ("audio", "video")
PRODUCER_FIELDS = ("packets_in", "bytes_in", "keyframe_requests", "packets_lost")
CONSUMER_FIELDS = ("packets_out", "bytes_out", "retransmits", "send_failures")
FIELDS = PRODUCER_FIELDS + CONSUMER_FIELDS


def _zero() -> dict[str, int]:
    return dict.fromkeys(FIELDS, 0)


def _add_producer(totals: dict[str, int], producer: Producer) -> None:
    totals["packets_in"] += producer.packets_in
    totals["bytes_in"] += producer.bytes_in
    totals["keyframe_requests"] += producer.keyframe_requests
    totals["packets_lost"] += producer.stats.lost  # net of the holes repaired by retransmission


def _add_consumer(totals: dict[str, int], consumer: Consumer) -> None:
    totals["packets_out"] += consumer.packets_out
    totals["bytes_out"] += consumer.bytes_out
    totals["retransmits"] += consumer.retransmits
    totals["send_failures"] += consumer.send_failures


class RouterTotals:
    """The counts of a router's closed producers and consumers, per media kind."""

    def __init__(self) -> None:
        self.retired: dict[str, dict[str, int]] = {kind: _zero() for kind in KINDS}
        self._high: dict[str, dict[str, int]] = {kind: _zero() for kind in KINDS}

    def retire_producer(self, producer: Producer) -> None:
        _add_producer(self.retired.setdefault(producer.kind, _zero()), producer)

    def retire_consumer(self, consumer: Consumer) -> None:
        _add_consumer(self.retired.setdefault(consumer.producer.kind, _zero()), consumer)

    def traffic(self, router: Router) -> dict[str, dict[str, int]]:
        """Per kind, every counter of FIELDS since the router started: live plus retired.

        ``packets_lost`` (RFC 3550 cumulative loss) drops when a retransmission fills a
        hole: every value is reported as its high-water mark, so none ever decreases.
        """
        totals = {kind: dict(values) for kind, values in self.retired.items()}
        for producer in router.producers.values():
            kind_totals = totals.setdefault(producer.kind, _zero())
            _add_producer(kind_totals, producer)
            for consumer in producer.consumers:
                _add_consumer(kind_totals, consumer)
        for kind, values in totals.items():
            high = self._high.setdefault(kind, _zero())
            for name, value in values.items():
                if value > high[name]:
                    high[name] = value
            totals[kind] = dict(high)
        return totals


def downstream_loss(router: Router) -> tuple[float, float, int]:
    """Loss the subscribers report (RTCP receiver reports), over the live consumers:
    (worst fraction lost, mean fraction lost, consumers counted), fractions in 0..1."""
    fractions = [c.fraction_lost / 256 for p in router.producers.values() for c in p.consumers]
    if not fractions:
        return 0.0, 0.0, 0
    return max(fractions), sum(fractions) / len(fractions), len(fractions)

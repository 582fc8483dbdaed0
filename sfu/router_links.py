"""The Router's links to local worker processes (the public programme): plain-RTP transports
(:mod:`sfu.plain`) that tap producers out to a worker and inject what it sends back."""

from __future__ import annotations

import itertools

from .consumer import Consumer
from .plain import PlainTransport
from .producer import Producer, ProducerSpec
from .stats import RouterTotals


class WorkerLinks:
    """Mixed into :class:`sfu.router.Router`, which owns these attributes."""

    id: str
    producers: dict[str, Producer]
    plain: dict[str, PlainTransport]  # links to local workers
    injected: dict[str, Producer]  # media a worker sends back: consumed by viewers only
    totals: RouterTotals
    _ids: itertools.count[int]

    async def create_plain_transport(self, transport_id: str) -> int:
        """A plain-RTP link to a local worker; returns its loopback UDP port."""
        transport = PlainTransport(transport_id)
        self.plain[transport_id] = transport
        return await transport.open()

    def connect_plain(self, transport_id: str, host: str, port: int) -> None:
        self.plain[transport_id].connect(host, port)

    def tap(self, transport_id: str, producer_id: str, ssrc: int, payload_type: int) -> None:
        """Send a producer's media, as plain RTP with this SSRC and payload type, to the worker."""
        transport = self.plain[transport_id]
        producer = self.producers[producer_id]
        if any(s.consumer is not None and s.consumer.producer is producer for s in transport.slots):
            return
        slot = transport.free_slot(producer.kind)
        if slot is None or slot.writer is None or slot.writer.ssrc != ssrc:
            slot = transport.add_slot(producer.kind, ssrc, payload_type, producer.spec.clock_rate)
        consumer = Consumer(f"{transport_id}-t{next(self._ids)}", producer, slot, transport.send)
        consumer.on_close.append(self.totals.retire_consumer)
        if producer.kind == "video":
            producer.request_keyframe()

    def feed_taps(self, transport_id: str, wanted: set[str]) -> None:
        """Forward to the worker only the taps of these producers; pause the others.

        A paused tap costs nothing per packet on either side. A resumed one restarts its
        numbering on the next packet (a video tap asks for a keyframe)."""
        for slot in self.plain[transport_id].slots:
            if slot.consumer is not None:
                slot.consumer.hold(slot.consumer.producer.id not in wanted)

    def untap(self, transport_id: str, producer_id: str) -> None:
        for slot in self.plain[transport_id].slots:
            if slot.consumer is not None and slot.consumer.producer.id == producer_id:
                slot.consumer.close()

    def inject(self, transport_id: str, spec: ProducerSpec) -> str:
        """A producer fed by the worker's RTP (``spec.ssrc``); not announced to members."""
        transport = self.plain[transport_id]
        producer = Producer(
            f"{self.id}-i{next(self._ids)}", spec, 0, 0, transport.send_rtcp, transport.feedback_ssrc
        )
        transport.add_producer(producer)
        producer.on_close.append(self._forget_injected)
        self.injected[producer.id] = producer
        return producer.id

    def _forget_injected(self, producer: Producer) -> None:
        self.injected.pop(producer.id, None)

    async def close_plain_transport(self, transport_id: str) -> None:
        transport = self.plain.pop(transport_id, None)
        if transport is not None:
            await transport.close()


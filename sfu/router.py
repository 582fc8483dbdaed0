"""The Router: one per sitting. It owns the transports, producers and consumers.

Its methods take and return plain values (ids, SDP text, small dataclasses), so
that a later step can run Routers in worker processes behind the same interface.
Events (pyee): ``producer_added(ProducerInfo)``, ``producer_closed(ProducerInfo)``,
``active_speaker(owner | None)``, ``transport_failed(transport_id)``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pyee.asyncio import AsyncIOEventEmitter

from . import aiortc_glue as glue
from .codecs import spec_from_line
from .consumer import Consumer, Slot
from .errors import NegotiationError
from .loss import LossInjector
from .observers import WINDOW, ActiveSpeakerObserver
from .plain import PlainTransport
from .producer import Producer
from .router_links import WorkerLinks
from .stats import RouterTotals
from .transport import RecvTransport, SendTransport, Transport
from .viewer import ViewerTransport

log = logging.getLogger(__name__)

DEFAULT_BITRATE_CAPS = {"camera": 500_000, "screen": 1_500_000}


@dataclass(frozen=True)
class ProducerInfo:
    id: str
    owner: str
    kind: str
    source: str
    paused: bool
    codec: str = ""  # "opus" | "vp8" | "h264": what a tap to the programme carries


@dataclass(frozen=True)
class SlotInfo:
    mid: str
    kind: str
    producer_id: str | None
    owner: str | None
    source: str | None


@dataclass(frozen=True)
class SubscribeOfferInfo:
    revision: int
    sdp: str
    slots: list[SlotInfo]


class Router(WorkerLinks, AsyncIOEventEmitter):
    def __init__(
        self,
        router_id: str,
        ice_servers: list[dict[str, Any]] | None = None,
        bitrate_caps: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        glue.install()
        self.id = router_id
        self.ice_servers = ice_servers or []
        self.bitrate_caps = bitrate_caps or dict(DEFAULT_BITRATE_CAPS)
        self.transports: dict[str, Transport] = {}
        self.producers: dict[str, Producer] = {}
        self.owners: dict[str, str] = {}  # producer id -> owner
        self._ids = itertools.count(1)
        self.closed = False
        self.speaker_observer = ActiveSpeakerObserver(self._on_speaker)
        self._observer_task = asyncio.get_running_loop().create_task(self._observe())
        # Tests and benches only: drop this share of packets on new transports.
        self.loss_injection = {"upstream": 0.0, "downstream": 0.0}
        self.injectors: list[LossInjector] = []
        self.totals = RouterTotals()  # counts of closed producers and consumers (metrics)
        self.plain: dict[str, PlainTransport] = {}  # links to local workers (the programme)
        self.injected: dict[str, Producer] = {}  # media a worker sends back: consumed by viewers only
        self.video_choice: dict[str, frozenset[str]] = {}  # recv transport -> the only video producers it gets

    # ------------------------------------------------------------------ transports

    def create_send_transport(self, transport_id: str) -> None:
        transport = SendTransport(transport_id, self.ice_servers, self.bitrate_caps)
        if self.loss_injection["upstream"]:
            transport.upstream_drop = self._injector(self.loss_injection["upstream"])
        self._add_transport(transport)

    def create_recv_transport(self, transport_id: str) -> None:
        transport = RecvTransport(transport_id, self.ice_servers)
        if self.loss_injection["downstream"]:
            transport.downstream_drop = self._injector(self.loss_injection["downstream"])
        self._add_transport(transport)

    def _injector(self, rate: float) -> LossInjector:
        injector = LossInjector(rate)
        self.injectors.append(injector)
        return injector

    def _add_transport(self, transport: Transport) -> None:
        if transport.id in self.transports:
            raise ValueError(f"transport {transport.id} exists")
        transport.on_failed = lambda t: self.emit("transport_failed", t.id)
        self.transports[transport.id] = transport

    def has_transport(self, transport_id: str) -> bool:
        return transport_id in self.transports

    def is_publishing(self, transport_id: str) -> bool:
        transport = self.transports.get(transport_id)
        return isinstance(transport, SendTransport) and bool(transport.by_mid)

    def transport_connected(self, transport_id: str) -> bool:
        transport = self.transports.get(transport_id)
        return transport is not None and transport.connected

    def transport_was_connected(self, transport_id: str) -> bool:
        """The transport has been connected once (it may have failed since)."""
        transport = self.transports.get(transport_id)
        return transport is not None and transport.was_connected

    def last_activity(self, transport_id: str) -> float | None:
        transport = self.transports.get(transport_id)
        return None if transport is None else transport.last_activity

    async def close_transport(self, transport_id: str) -> None:
        """Close a transport; its producers and consumers close in cascade."""
        transport = self.transports.pop(transport_id, None)
        self.video_choice.pop(transport_id, None)
        if transport is None:
            return
        if isinstance(transport, SendTransport):
            for producer in list(transport.by_mid.values()):
                self._close_producer(producer)
        elif isinstance(transport, RecvTransport):
            for slot in transport.slots:
                if slot.consumer is not None:
                    slot.consumer.close()
        await transport.close()

    # ------------------------------------------------------------------ publishing

    async def publish(self, transport_id: str, owner: str, sdp: str, tracks: Mapping[str, str]) -> str:
        """Apply a publishing offer; ``tracks`` maps mid -> source. Returns the answer.

        Each call carries the complete set of published tracks: producers whose mid
        is absent are closed, new mids become producers.
        """
        transport = self._send_transport(transport_id)
        answer, lines = await transport.accept_offer(sdp, set(tracks))
        for line in lines:
            if (tracks[line.mid or ""] == "mic") != (line.kind == "audio"):
                raise NegotiationError("bad_message", f"m-line {line.mid} is {line.kind}, not {tracks[line.mid or '']}")
        current = dict(transport.by_mid)
        for mid, producer in current.items():
            if mid not in tracks or tracks[mid] != producer.spec.source:
                self._close_producer(producer)
        for line in lines:
            assert line.mid is not None
            if line.mid in transport.by_mid:
                continue
            spec = spec_from_line(line, tracks[line.mid], stream_id=owner)
            producer = Producer(
                f"{self.id}-p{next(self._ids)}",
                spec,
                transport.mid_ext_id,
                transport.audio_level_ext_id,
                transport.send_rtcp,
                transport.feedback_ssrc,
            )
            if spec.kind == "audio":
                producer.audio_level_listener = self.speaker_observer.feed
            transport.add_producer(producer)
            producer.on_close.append(self.totals.retire_producer)
            self.producers[producer.id] = producer
            self.owners[producer.id] = owner
            self.emit("producer_added", self.producer_info(producer.id))
        return answer

    def unpublish(self, transport_id: str, source: str) -> None:
        transport = self._send_transport(transport_id)
        for producer in list(transport.by_mid.values()):
            if producer.spec.source == source:
                self._close_producer(producer)

    def set_paused(self, owner: str, source: str, paused: bool) -> None:
        """Pause or resume an owner's producer of ``source``: paused media never leaves the SFU."""
        for producer_id, producer in self.producers.items():
            if self.owners[producer_id] == owner and producer.spec.source == source:
                if paused:
                    producer.pause()
                    self.speaker_observer.forget(producer)
                else:
                    producer.resume()

    def producer_info(self, producer_id: str) -> ProducerInfo:
        producer = self.producers[producer_id]
        owner, spec = self.owners[producer.id], producer.spec
        return ProducerInfo(producer.id, owner, producer.kind, spec.source, producer.paused, spec.codec)

    def list_producers(self) -> list[ProducerInfo]:
        return [self.producer_info(pid) for pid in self.producers]

    def _close_producer(self, producer: Producer) -> None:
        if producer.id not in self.producers:
            return
        info = self.producer_info(producer.id)
        del self.producers[producer.id]
        del self.owners[producer.id]
        self.speaker_observer.forget(producer)
        producer.close()
        self.emit("producer_closed", info)

    # ------------------------------------------------------------------ subscribing

    def consume(self, transport_id: str, producer_id: str) -> bool:
        """Point a slot of the receiving transport at a producer.

        Returns True when the slot is in no offer yet, i.e. the subscriber needs a new offer;
        False when a negotiated slot was re-pointed: the new slot table (:meth:`slot_table`) is enough.
        """
        transport = self._recv_transport(transport_id)
        producer = self.producers.get(producer_id) or self.injected[producer_id]
        if any(s.consumer is not None and s.consumer.producer is producer for s in transport.slots):
            return False
        slot = transport.free_slot(producer.kind) or transport.grow(producer.kind)
        added = not slot.mid
        consumer = Consumer(f"{transport_id}-c{next(self._ids)}", producer, slot, transport.send)
        consumer.on_close.append(self.totals.retire_consumer)
        consumer.paused = self._held_back(transport, consumer)
        if transport.connected and consumer.writer is not None and producer.kind == "video":
            producer.request_keyframe()  # otherwise asked for when the leg connects: sooner is wasted
        return added

    def codec_missing(self, transport_id: str) -> list[str]:
        """The producers this subscriber gets a slot for but no media: it did not negotiate their codec
        (Firefox without OpenH264 and the chamber's H.264). Known once its answer is applied."""
        transport = self._recv_transport(transport_id)
        return [s.consumer.producer.id for s in transport.slots if s.consumer is not None and s.consumer.codec_missing]

    def set_receiving_paused(self, transport_id: str, paused: bool) -> None:
        """Stop (or resume) forwarding anything to one subscriber (e.g. the public in a closed session)."""
        transport = self._recv_transport(transport_id)
        transport.paused = paused
        self._apply_pauses(transport)

    def select_videos(self, transport_id: str, producer_ids: Iterable[str] | None) -> None:
        """Forward to this subscriber only these video producers (None: every one). The others'
        slots stay negotiated and send nothing; a video chosen again starts on a keyframe."""
        transport = self._recv_transport(transport_id)
        if producer_ids is None:
            self.video_choice.pop(transport_id, None)
        else:
            self.video_choice[transport_id] = frozenset(producer_ids)
        self._apply_pauses(transport)

    def forwarded_videos(self, transport_id: str) -> list[str]:
        """The video producers this subscriber is sent now (consumed and not held back)."""
        transport = self._recv_transport(transport_id)
        return [
            s.consumer.producer.id
            for s in transport.slots
            if s.consumer is not None and s.kind == "video" and not s.consumer.paused
        ]

    def _held_back(self, transport: RecvTransport, consumer: Consumer) -> bool:
        if transport.paused:
            return True
        choice = self.video_choice.get(transport.id)
        return choice is not None and consumer.producer.kind == "video" and consumer.producer.id not in choice

    def _apply_pauses(self, transport: RecvTransport) -> None:
        for slot in transport.slots:
            consumer = slot.consumer
            if consumer is None:
                continue
            consumer.hold(self._held_back(transport, consumer))

    def stop_consuming(self, transport_id: str, producer_id: str) -> None:
        transport = self._recv_transport(transport_id)
        for slot in transport.slots:
            if slot.consumer is not None and slot.consumer.producer.id == producer_id:
                slot.consumer.close()

    async def subscribe_offer(self, transport_id: str) -> SubscribeOfferInfo:
        transport = self._recv_transport(transport_id)
        stream_ids: dict[Slot, tuple[str, str]] = {}
        for slot in transport.slots:
            if slot.consumer is not None:
                producer = slot.consumer.producer
                stream_ids[slot] = (producer.spec.stream_id, f"{producer.id}-{slot.kind}")
        sdp, offered = await transport.create_offer(stream_ids)
        return SubscribeOfferInfo(transport.revision, sdp, self._slot_table(offered))

    async def subscribe_answer(self, transport_id: str, revision: int, sdp: str) -> None:
        await self._recv_transport(transport_id).accept_answer(revision, sdp)

    def slot_table(self, transport_id: str) -> tuple[int, list[SlotInfo]]:
        """What each negotiated slot carries now, and the revision of the offer that made them."""
        transport = self._recv_transport(transport_id)
        return transport.revision, self._slot_table(transport.negotiated_slots())

    def _slot_table(self, slots: list[Slot]) -> list[SlotInfo]:
        table = []
        for slot in slots:
            consumer = slot.consumer
            if consumer is None:
                table.append(SlotInfo(slot.mid, slot.kind, None, None, None))
            else:
                p = consumer.producer
                table.append(SlotInfo(slot.mid, slot.kind, p.id, self.owners.get(p.id), p.spec.source))
        return table

    # ------------------------------------------------------------------ viewers (links to workers: router_links.py)

    async def create_viewer(self, transport_id: str, offer: str, producer_ids: list[str]) -> str:
        """A WHEP viewer: answer its offer and point its slots at ``producer_ids``."""
        transport = ViewerTransport(transport_id, self.ice_servers)
        self._add_transport(transport)
        try:
            answer = await transport.answer(offer)
        except Exception:
            await self.close_transport(transport_id)
            raise
        for producer_id in producer_ids:
            producer = self.injected.get(producer_id) or self.producers.get(producer_id)
            slot = None if producer is None else transport.free_slot(producer.kind)
            if producer is not None and slot is not None:
                consumer = Consumer(f"{transport_id}-c{next(self._ids)}", producer, slot, transport.send)
                consumer.on_close.append(self.totals.retire_consumer)
        return answer

    # ------------------------------------------------------------------ observers and close

    def _on_speaker(self, producer: Producer | None) -> None:
        self.emit("active_speaker", None if producer is None else self.owners.get(producer.id))

    async def _observe(self) -> None:
        while not self.closed:
            await asyncio.sleep(WINDOW)
            self.speaker_observer.evaluate()

    def counts(self) -> dict[str, int]:
        consumers = sum(len(p.consumers) for p in (*self.producers.values(), *self.injected.values()))
        return {"transports": len(self.transports), "producers": len(self.producers), "consumers": consumers}

    def traffic(self) -> dict[str, dict[str, int]]:
        """Per media kind, the packet counters since the router started (sfu/stats.py)."""
        return self.totals.traffic(self)

    async def close(self) -> None:
        self.closed = True
        self._observer_task.cancel()
        for transport_id in list(self.transports):
            await self.close_transport(transport_id)
        for transport_id in list(self.plain):
            await self.close_plain_transport(transport_id)
        self.remove_all_listeners()

    def _send_transport(self, transport_id: str) -> SendTransport:
        transport = self.transports.get(transport_id)
        if not isinstance(transport, SendTransport):
            raise NegotiationError("not_ready", f"no publishing transport {transport_id}")
        return transport

    def _recv_transport(self, transport_id: str) -> RecvTransport:
        transport = self.transports.get(transport_id)
        if not isinstance(transport, RecvTransport):
            raise NegotiationError("not_ready", f"no subscribing transport {transport_id}")
        return transport

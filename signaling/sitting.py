"""A sitting: its seats (who may join, with which role), who is connected, and its Router.

The policy of who receives what lives here: every connected member receives
every other member's published tracks. The SFU (``sfu.Router``) only executes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import BaseModel

from sfu.router import ProducerInfo, Router

from . import protocol as p

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)

SOURCES: tuple[p.Source, ...] = ("mic", "camera", "screen")


@dataclass
class Seat:
    """A person's place in the sitting. It outlives connections, so a rejoin finds it."""

    id: str
    name: str
    role: p.Role
    session: Session | None = None
    muted: dict[str, bool] = field(default_factory=dict)
    published: set[str] = field(default_factory=set)

    def info(self) -> p.ParticipantInfo:
        return p.ParticipantInfo(
            id=self.id,
            name=self.name,
            role=self.role,
            connected=self.session is not None,
            sources=[p.SourceState(source=s, muted=self.muted.get(s, False)) for s in SOURCES if s in self.published],
        )


class Sitting:
    def __init__(self, sitting_id: str, title: str, router: Router) -> None:
        self.id = sitting_id
        self.title = title
        self.router = router
        self.seats: dict[str, Seat] = {}
        router.on("producer_added", self._on_producer_added)
        router.on("producer_closed", self._on_producer_closed)
        router.on("active_speaker", self._on_active_speaker)
        router.on("transport_failed", self._on_transport_failed)

    def info(self) -> p.SittingInfo:
        return p.SittingInfo(id=self.id, title=self.title)

    def seat(self, seat_id: str, name: str, role: p.Role) -> Seat:
        seat = self.seats.get(seat_id)
        if seat is None:
            seat = self.seats[seat_id] = Seat(seat_id, name, role)
        return seat

    def sessions(self) -> list[Session]:
        return [s.session for s in self.seats.values() if s.session is not None]

    def participants(self) -> list[p.ParticipantInfo]:
        return [seat.info() for seat in self.seats.values() if seat.session is not None]

    def broadcast(self, message: BaseModel, skip: Seat | None = None) -> None:
        for seat in self.seats.values():
            if seat.session is not None and seat is not skip:
                seat.session.send(message)

    # ------------------------------------------------------------------ membership

    def attach(self, seat: Seat, session: Session) -> None:
        seat.session = session
        self.broadcast(p.ParticipantJoined(participant=seat.info()), skip=seat)

    def subscribe_to_all(self, seat: Seat) -> bool:
        """Consume every other member's producers on ``seat``'s receiving transport."""
        session = seat.session
        if session is None:
            return False
        changed = False
        for producer in self.router.list_producers():
            if producer.owner != seat.id:
                self.router.consume(session.recv_transport_id, producer.id)
                changed = True
        return changed

    async def detach(self, seat: Seat, session: Session) -> None:
        """A connection ended: release its media, keep the seat for a later rejoin."""
        if seat.session is not session:
            return
        seat.session = None
        seat.published.clear()
        await self.router.close_transport(session.send_transport_id)
        await self.router.close_transport(session.recv_transport_id)
        self.broadcast(p.ParticipantLeft(participant_id=seat.id))

    def set_muted(self, seat: Seat, source: p.Source, muted: bool) -> None:
        seat.muted[source] = muted
        self.router.set_paused(seat.id, source, muted)
        self.broadcast(p.ParticipantUpdated(participant=seat.info()))

    # ------------------------------------------------------------------ router events

    def _on_producer_added(self, info: ProducerInfo) -> None:
        owner = self.seats.get(info.owner)
        if owner is not None:
            owner.published.add(info.source)
            if owner.muted.get(info.source):
                self.router.set_paused(owner.id, info.source, True)
            self.broadcast(p.ParticipantUpdated(participant=owner.info()))
        for seat in self.seats.values():
            session = seat.session
            if session is not None and seat.id != info.owner and session.joined:
                self.router.consume(session.recv_transport_id, info.id)
                session.renegotiate()

    def _on_producer_closed(self, info: ProducerInfo) -> None:
        owner = self.seats.get(info.owner)
        if owner is not None and owner.session is not None:
            owner.published.discard(info.source)
            self.broadcast(p.ParticipantUpdated(participant=owner.info()))
        for seat in self.seats.values():
            if seat.session is not None and seat.id != info.owner and seat.session.joined:
                seat.session.renegotiate()

    def _on_active_speaker(self, owner: str | None) -> None:
        self.broadcast(p.ActiveSpeaker(participant_id=owner))

    def _on_transport_failed(self, transport_id: str) -> None:
        for session in self.sessions():
            if transport_id in (session.send_transport_id, session.recv_transport_id):
                log.info("media connection of %s failed", session.seat_id)
                session.close_soon("media connection lost")

"""A sitting: its seats, its Router, and the rules it runs by.

Policy lives here and in :mod:`signaling.rules`: every member receives every
other member's published tracks; commands go through the pure rules, their
events are journalled (committed before anyone is told) and applied, and the
effects carried out: media paused in the SFU, people admitted or disconnected,
the chair warned. The SFU (``sfu.Router``) only executes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from sfu.router import ProducerInfo, Router

from . import protocol as p
from . import rules, video_selection
from .assembly import Actor, Admit, Decision, Disconnect, Event, Refused, Warn
from .moderation import self_unmute_refusal
from .protocol_sitting import Notice, SittingCommand
from .sitting_state import SittingState
from .sitting_view import snapshot

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)

SOURCES: tuple[p.Source, ...] = ("mic", "camera", "screen")
MEMBER_ROLES = ("chair", "secretary", "councillor")


class EventLog(Protocol):
    """Where events are made durable (:class:`signaling.journal.Journal`)."""

    async def append(
        self, sitting: str, actor: str, type: str, data: Mapping[str, Any], at: datetime | None = None
    ) -> Any: ...


@dataclass
class Seat:
    """A person's place in the sitting. It outlives connections, so a rejoin finds it."""

    id: str
    name: str
    role: p.Role
    session: Session | None = None
    muted: dict[str, bool] = field(default_factory=dict)  # muted by the member themself
    published: set[str] = field(default_factory=set)
    paused: dict[str, bool] = field(default_factory=dict)  # what the SFU was last told
    was_in: bool = False  # entered the sitting once: a lock does not send them back to the waiting room
    loss_timer: asyncio.TimerHandle | None = None  # a lost connection, recorded only if not back in time
    video_limit: int | None = None  # videos the member asked to receive at most (None: the server's limit)
    videos_told: tuple[tuple[str, str], ...] | None = None  # the last video selection sent to the member


class Sitting:
    def __init__(
        self,
        sitting_id: str,
        title: str,
        router: Router,
        state: SittingState,
        journal: EventLog,
        auto_enrol: bool,
        reconnect_grace: float = 0.0,
        max_videos: int = 9,
    ) -> None:
        self.id = sitting_id
        self.title = title
        self.router = router
        self.state = state
        self.journal = journal
        self.auto_enrol = auto_enrol  # no roster: members are enrolled as they first join
        self.reconnect_grace = reconnect_grace
        self._tasks: set[asyncio.Task[None]] = set()
        self.seats: dict[str, Seat] = {}
        self.active_speaker: str | None = None  # seat id, by audio level
        self.max_videos = max_videos  # videos forwarded to each member at most (signaling.video_selection)
        self.recent_speakers: list[str] = []  # seat ids, the last to speak first
        self._speaker_settling: asyncio.TimerHandle | None = None
        # Told of every change: recorded events, or [] for media changes (the programme follows them).
        self.watchers: list[Callable[[list[Event]], None]] = []
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

    def muted(self, seat: Seat, source: str) -> bool:
        return seat.muted.get(source, False) or (seat.id, source) in self.state.forced_muted

    def participant(self, seat: Seat) -> p.ParticipantInfo:
        return p.ParticipantInfo(
            id=seat.id,
            name=seat.name,
            role=seat.role,
            connected=seat.session is not None,
            sources=[p.SourceState(source=s, muted=self.muted(seat, s)) for s in SOURCES if s in seat.published],
        )

    def sessions(self) -> list[Session]:
        return [s.session for s in self.seats.values() if s.session is not None]

    def participants(self) -> list[p.ParticipantInfo]:
        return [self.participant(seat) for seat in self.seats.values() if seat.session is not None]

    def broadcast(self, message: BaseModel, skip: Seat | None = None) -> None:
        for seat in self.seats.values():
            if seat.session is not None and seat is not skip and seat.session.media_ready:
                seat.session.send(message)

    # ------------------------------------------------------------------ the rules

    async def record(self, decision: Decision) -> None:
        """Journal, apply, and carry out a decision; then tell everyone."""
        for event in decision.events:
            await self._commit(event)
        watch = rules.quorum_watch(self.state, time.time())
        for event in watch.events:
            await self._commit(event)
        for effect in [*decision.effects, *watch.effects]:
            await self._carry_out(effect)
        self.sync_media()
        self.broadcast(snapshot(self.state))
        self._notify([*decision.events, *watch.events])

    def _notify(self, events: list[Event]) -> None:
        for watcher in self.watchers:
            try:
                watcher(events)
            except Exception:  # a watcher's bug must not stop the sitting
                log.exception("sitting %s: a watcher failed", self.id)

    async def _commit(self, event: Event) -> None:
        at = datetime.fromtimestamp(event.at or time.time(), UTC)
        await self.journal.append(self.id, event.actor, event.type, event.data, at=at)
        rules.apply(self.state, event)

    async def server_event(self, kind: str, **data: Any) -> None:
        await self.record(Decision(events=[Event(kind, data, "server", time.time())]))

    async def command(self, seat: Seat, command: SittingCommand) -> None:
        """A command from a member: checked by the rules (raises Refused), then recorded."""
        decision = rules.decide(self.state, Actor(seat.id, seat.role), command, time.time())  # pure: checks first
        target = getattr(command, "participant_id", None)
        if target is not None and target not in self.seats:
            raise Refused("bad_message", "no such participant in this sitting")
        await self.record(decision)

    async def _carry_out(self, effect: Disconnect | Admit | Warn) -> None:
        if isinstance(effect, Disconnect):
            target = self.seats.get(effect.seat)
            if target is not None and target.session is not None:
                target.session.error("forbidden", effect.reason, fatal=True)
        elif isinstance(effect, Admit):
            target = self.seats.get(effect.seat)
            if target is not None and target.session is not None:
                target.session.admit()
        elif isinstance(effect, Warn):
            for seat in self.seats.values():
                if seat.session is not None and seat.role in ("chair", "secretary"):
                    seat.session.send(Notice(message=effect.message))

    def sync_media(self) -> None:
        """Make the SFU drop exactly the sources that are muted, by the member or the chair,
        and forward nothing to the public during a closed session (huis clos)."""
        for seat in self.seats.values():
            session = seat.session
            if seat.role == "public" and session is not None and session.media_ready:
                closed = self.state.closed_session
                if session.receiving_paused != closed:
                    session.receiving_paused = closed
                    self.router.set_receiving_paused(session.recv_transport_id, closed)
            for source in seat.published:
                want = self.muted(seat, source)
                if seat.paused.get(source) != want:
                    seat.paused[source] = want
                    self.router.set_paused(seat.id, source, want)
                    self.broadcast(p.ParticipantUpdated(participant=self.participant(seat)))
        self.sync_videos()
        self._notify([])

    def sync_videos(self) -> None:
        """Tell the SFU which videos each member receives (at most their limit, the most useful
        first: :mod:`signaling.video_selection`), and tell each member when their selection changes."""
        candidates = [
            video_selection.Candidate(info.id, info.owner, info.source, seat.role)
            for info in self.router.list_producers()
            if info.kind == "video" and not info.paused and (seat := self.seats.get(info.owner)) is not None
        ]
        ranked = video_selection.rank(candidates, floor=self.state.floor, recent_speakers=self.recent_speakers)
        for seat in self.seats.values():
            session = seat.session
            if session is None or not session.media_ready or not self.router.has_transport(session.recv_transport_id):
                continue
            limit = self.max_videos if seat.video_limit is None else min(seat.video_limit, self.max_videos)
            chosen = video_selection.select(ranked, seat.id, limit)
            self.router.select_videos(session.recv_transport_id, [c.producer_id for c in chosen])
            told = tuple(sorted((c.owner, c.source) for c in chosen))
            if told != seat.videos_told:
                seat.videos_told = told
                videos = [p.VideoRef(participant_id=owner, source=source) for owner, source in told]  # type: ignore[arg-type]
                session.send(p.VideoSelection(limit=limit, videos=videos))

    def set_video_limit(self, seat: Seat, limit: int) -> None:
        """The member asks to receive at most ``limit`` videos (a small screen, a weak connection)."""
        seat.video_limit = limit
        self.sync_videos()

    # ------------------------------------------------------------------ membership

    def must_wait(self, seat: Seat) -> bool:
        if not self.state.locked or seat.role in ("chair", "secretary") or seat.was_in:
            return False
        return seat.id not in self.state.admitted

    async def attach(self, seat: Seat, session: Session) -> None:
        seat.session = session
        seat.was_in = True
        self.broadcast(p.ParticipantJoined(participant=self.participant(seat)), skip=seat)
        if seat.loss_timer is not None:  # back within the grace period: as if never gone
            seat.loss_timer.cancel()
            seat.loss_timer = None
            if seat.id in self.state.connected:
                session.send(snapshot(self.state))
                return
        if seat.role in MEMBER_ROLES:
            events = []
            now = time.time()
            if seat.id not in self.state.members and self.auto_enrol:
                enrol = {"member": seat.id, "name": seat.name, "role": seat.role}
                events.append(Event("member_enrolled", enrol, at=now))
            if seat.id in self.state.members or events:
                events.append(Event("member_connected", {"member": seat.id}, at=now))
                await self.record(Decision(events=events))
                return
        session.send(snapshot(self.state))

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

    async def detach(self, seat: Seat, session: Session, reason: str) -> None:
        """A connection ended: release its media, keep the seat for a later rejoin."""
        if seat.session is not session:
            return
        seat.session = None
        seat.published.clear()
        seat.paused.clear()
        seat.videos_told = None
        await self.router.close_transport(session.send_transport_id)
        await self.router.close_transport(session.recv_transport_id)
        self.broadcast(p.ParticipantLeft(participant_id=seat.id))
        if seat.id in self.state.waiting:
            self.state.waiting.remove(seat.id)
        if seat.id not in self.state.connected:
            return
        if reason == "left" or self.reconnect_grace <= 0:
            await self.server_event("member_left" if reason == "left" else "connection_lost", member=seat.id)
        else:  # the network may come back: record the loss only if the member does not
            seat.loss_timer = asyncio.get_running_loop().call_later(self.reconnect_grace, self._lost, seat)

    def _lost(self, seat: Seat) -> None:
        seat.loss_timer = None
        if seat.session is None and seat.id in self.state.connected:
            task = asyncio.get_running_loop().create_task(self.server_event("connection_lost", member=seat.id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def set_muted(self, seat: Seat, source: p.Source, muted: bool) -> str | None:
        """A member mutes or unmutes themself; returns why not, when refused."""
        if not muted:
            refusal = self_unmute_refusal(self.state, seat.id, source)
            if refusal:
                return refusal
        seat.muted[source] = muted
        if not muted and (seat.id, source) in self.state.forced_muted:
            # allowed: the member lifts the chair's mute themself, and the journal says so
            await self.record(Decision(events=[Event("unmuted", {"seat": seat.id, "source": source}, seat.id)]))
        self.sync_media()
        self.broadcast(p.ParticipantUpdated(participant=self.participant(seat)))
        return None

    # ------------------------------------------------------------------ router events

    def _on_producer_added(self, info: ProducerInfo) -> None:
        owner = self.seats.get(info.owner)
        if owner is not None:
            owner.published.add(info.source)
            self.sync_media()
            self.broadcast(p.ParticipantUpdated(participant=self.participant(owner)))
        for seat in self.seats.values():
            session = seat.session
            if session is not None and seat.id != info.owner and session.media_ready:
                if self.router.consume(session.recv_transport_id, info.id):
                    session.renegotiate()  # a new block of slots: a new offer
                else:
                    session.update_slots()  # a free slot re-pointed: the slot table is enough
        self.sync_videos()
        self._notify([])

    def _on_producer_closed(self, info: ProducerInfo) -> None:
        owner = self.seats.get(info.owner)
        if owner is not None and owner.session is not None:
            owner.published.discard(info.source)
            owner.paused.pop(info.source, None)
            self.broadcast(p.ParticipantUpdated(participant=self.participant(owner)))
        for seat in self.seats.values():
            if seat.session is not None and seat.id != info.owner and seat.session.media_ready:
                seat.session.update_slots()  # its slot is free now: no new offer
        self.sync_videos()
        self._notify([])

    def _on_active_speaker(self, owner: str | None) -> None:
        self.active_speaker = owner
        if self._speaker_settling is not None:
            self._speaker_settling.cancel()
            self._speaker_settling = None
        if owner is not None:  # reorder the videos only for a speaker who goes on speaking
            settle = video_selection.SPEAKER_SETTLE_S
            self._speaker_settling = asyncio.get_running_loop().call_later(settle, self._speaker_settled, owner)
        self.broadcast(p.ActiveSpeaker(participant_id=owner))
        self._notify([])

    def _speaker_settled(self, owner: str) -> None:
        self._speaker_settling = None
        if self.active_speaker == owner:
            video_selection.spoke(self.recent_speakers, owner)
            self.sync_videos()

    def _on_transport_failed(self, transport_id: str) -> None:
        for session in self.sessions():
            if transport_id in (session.send_transport_id, session.recv_transport_id):
                log.info("media connection of %s failed", session.seat_id)
                session.close_soon("media connection lost")

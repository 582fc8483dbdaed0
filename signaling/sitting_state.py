"""The state of a sitting as the state machines see it: plain data, no I/O.

It is rebuilt after a restart by applying the journal's events in order
(:func:`signaling.rules.apply`). Times are seconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .regimes import DEFAULT_REGIME, REGIMES, ItemKind, Regime, SittingMode


@dataclass
class Member:
    """A member of the council (the roster): counts toward the quorum, may vote."""

    id: str
    name: str
    group: str | None = None


@dataclass
class AgendaItem:
    id: str
    number: int
    title: str
    kind: ItemKind = "ordinary"
    no_remote_vote: bool = False
    time_limit_s: int | None = None
    postponed: str | None = None  # the legal reason, once postponed
    secret_requested: bool = False


@dataclass
class Ballot:
    choice: str
    cast_by: str  # the member who cast it (the holder when voting by proxy, the secretary in the chamber)
    at: float


@dataclass
class VoteRecord:
    id: str
    item_id: str | None
    question: str
    method: str
    opened_at: float
    ballots: dict[str, Ballot] = field(default_factory=dict)
    closed_at: float | None = None
    result: dict[str, Any] | None = None

    @property
    def open(self) -> bool:
        return self.closed_at is None


@dataclass
class Hand:
    seat: str
    point_of_order: bool
    raised_at: float


@dataclass
class SittingState:
    sitting_id: str
    regime: Regime = field(default_factory=lambda: REGIMES[DEFAULT_REGIME])
    mode: SittingMode = "hybrid"
    members: dict[str, Member] = field(default_factory=dict)
    agenda: list[AgendaItem] = field(default_factory=list)
    chair: str | None = None
    # presence
    connected: set[str] = field(default_factory=set)  # members connected remotely
    in_chamber: set[str] = field(default_factory=set)  # members recorded in the room by the secretary
    proxies: dict[str, str] = field(default_factory=dict)  # giver -> holder
    withdrawn: dict[str, set[str]] = field(default_factory=dict)  # item id -> members withdrawn
    # moderation
    locked: bool = False
    waiting: list[str] = field(default_factory=list)
    admitted: set[str] = field(default_factory=set)
    waiting_names: dict[str, tuple[str, str]] = field(default_factory=dict)  # seat -> (name, role)
    removed: set[str] = field(default_factory=set)
    hands: list[Hand] = field(default_factory=list)
    floor: str | None = None
    floor_since: float = 0.0
    forced_muted: set[tuple[str, str]] = field(default_factory=set)  # (seat, source) muted by the chair
    self_unmute_allowed: bool = True
    # agenda and votes
    current_item: str | None = None
    suspended: bool = False
    closed_session: bool = False
    programme_sound_cut: bool = False  # the chair cut the public programme's sound
    votes: list[VoteRecord] = field(default_factory=list)
    quorum_reached: bool | None = None  # last value announced (to warn only on change)

    def item(self, item_id: str | None) -> AgendaItem | None:
        return next((i for i in self.agenda if i.id == item_id), None)

    @property
    def open_vote(self) -> VoteRecord | None:
        return next((v for v in reversed(self.votes) if v.open), None)

    def is_present(self, member: str) -> bool:
        """Present as the regime counts presence: in the room, or remotely where allowed."""
        if member in self.in_chamber:
            return True
        return member in self.connected and self.regime.quorum.counts_remote

    def may_vote_in_person(self, member: str) -> bool:
        if member in self.in_chamber:
            return True
        return member in self.connected and self.regime.remote_may_vote

    def withdrawn_now(self) -> set[str]:
        return self.withdrawn.get(self.current_item or "", set())

    def quorum(self) -> tuple[int, int, bool]:
        """(members counted, members required, reached) under the regime, for the current item."""
        rule = self.regime.quorum
        away = self.withdrawn_now()
        counted = {m for m in self.members if m not in away and self.is_present(m)}
        if rule.counts_represented:
            counted |= {g for g, h in self.proxies.items() if g not in away and self.is_present(h)}
        required = rule.required(len(self.members))
        return len(counted), required, len(counted) >= required and len(self.members) > 0

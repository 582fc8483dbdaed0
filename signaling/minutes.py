"""The minutes draft (projet de procès-verbal, CGCT L2121-15), from the sitting's journal alone.

:func:`build_minutes` replays the journal's entries, one at a time, into a
:class:`~signaling.sitting_state.SittingState` (with :mod:`signaling.replay`), noting
times as it goes: attendance, proxies, the quorum, items, speaking turns, votes with
every voter's name and choice (secret ballots: names of voters only), closed sessions
(huis clos) and suspensions. It ends with the journal's signed head, so that anyone
can check the published journal against the minutes (docs/journal.md). The debates'
substance (« teneur des discussions ») is left for the secretaries to write. The wording,
block by block, is :mod:`signaling.minutes_document`'s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from config.settings import SittingSettings

from .documents import render_html, render_text, zone
from .journal import Entry, SignedHead, head_message, key_fingerprint
from .minutes_document import minutes_blocks
from .regimes import Regime
from .replay import replay, sitting_state_from
from .sitting_state import SittingState

# Journalled about the sitting but outside it (signaling.convocation): not replayed.
CONVOCATION_EVENTS = frozenset({"convocation_sent", "convocation_acknowledged"})
CHAIR_EVENTS = frozenset({"item_current", "vote_opened", "vote_closed", "floor_given", "floor_taken", "suspended",
                          "resumed", "closed_session", "programme_sound", "removed", "locked",
                          "secret_ballot_requested", "self_unmute"})
PRESENCE_NOTES = {
    "chamber_arrival": "arrivée dans la salle",
    "chamber_departure": "départ de la salle",
    "member_connected": "connexion à distance",
    "member_left": "quitte la visioconférence",
    "connection_lost": "perte de la connexion",
    "removed": "exclusion de la séance par la présidence",
}


class MinutesError(ValueError):
    """The journal given does not match its signed head, or holds nothing of the sitting."""


@dataclass
class Attendance:
    member: str
    name: str
    group: str | None
    in_room: bool = False
    remote: bool = False
    timeline: list[tuple[float, str]] = field(default_factory=list)


@dataclass
class Proxy:
    giver: str
    holder: str
    given_at: float
    revoked_at: float | None = None


@dataclass
class Turn:
    seat: str
    start: float
    end: float | None = None
    duration_s: float | None = None


@dataclass
class Ballot:
    member: str
    choice: str
    proxy_holder: str | None  # set when the vote was cast by the holder of the member's proxy


@dataclass
class VoteReport:
    id: str
    question: str
    method: str
    opened_at: float
    closed_at: float | None
    quorum: tuple[int, int] | None
    result: dict[str, Any] | None
    ballots: list[Ballot]


@dataclass
class ItemReport:
    number: int
    id: str
    title: str
    kind: str
    taken_up: list[float] = field(default_factory=list)
    postponed: str | None = None
    secret_requests: list[tuple[float, str]] = field(default_factory=list)  # (when, who asked)
    withdrawals: list[tuple[float, str]] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    votes: list[VoteReport] = field(default_factory=list)


@dataclass
class Minutes:
    sitting_id: str
    title: str
    regime: Regime
    mode: str
    place: str | None
    timezone: ZoneInfo
    start: float
    end: float
    chair: str | None  # a name
    secretaries: list[str]  # names
    names: dict[str, str]  # member id -> name
    attendance: dict[str, Attendance]
    proxies: list[Proxy]
    absent: list[str]  # member ids
    quorum_opening: tuple[int, int, bool] | None
    quorum_changes: list[tuple[float, bool, int, int]]  # (when, reached, counted, required)
    items: list[ItemReport]
    other_votes: list[VoteReport]  # votes outside any agenda item
    closed_sessions: list[tuple[float, float | None]]
    suspensions: list[tuple[float, float | None]]
    convocations: tuple[int, float, float, int] | None  # (sent, first sent at, last sent at, acknowledged)
    entries: int
    head_hash: str
    fingerprint: str

    def name(self, member: str) -> str:
        return self.names.get(member, member)

    def to_markdown(self) -> str:
        return render_text(minutes_blocks(self))

    def to_html(self) -> str:
        return render_html(minutes_blocks(self), f"Projet de procès-verbal — {self.title}")


def build_minutes(
    settings_sitting: SittingSettings,
    entries: Iterable[Entry],
    head: SignedHead,
    public_key_fingerprint: str,
    *,
    secretaries: Sequence[str] | None = None,
    timezone: str = "Europe/Paris",
) -> Minutes:
    """The minutes of ``settings_sitting`` from its journal ``entries``, up to the signed ``head``.

    ``secretaries``: their names, as designated at the opening; by default, the members
    other than the chair who recorded presence or votes in the room."""
    spec = settings_sitting
    chain = [e for e in entries if e.sitting == spec.id and e.seq <= head.seq]
    _check_head(spec.id, chain, head, public_key_fingerprint)
    walk = _Walk(sitting_state_from(spec))
    for entry in chain:
        walk.step(entry)
    state = walk.state
    names = {m.id: m.name for m in state.members.values()}
    present = {m for m, a in walk.attendance.items() if a.in_room or a.remote}
    represented = {p.giver for p in walk.proxies}
    chair_id = spec.chair or state.chair or _most_frequent(walk.chair_actors)
    if secretaries is None:
        secretaries = [names.get(s, s) for s in sorted(walk.clerk_actors - {chair_id, "server"})]
    items = walk.items
    for vote in state.votes:
        report = VoteReport(vote.id, vote.question, vote.method, vote.opened_at, vote.closed_at,
                            walk.vote_quorum.get(vote.id), vote.result,
                            [Ballot(m, b.choice, walk.proxy_votes.get((vote.id, m))) for m, b in vote.ballots.items()])
        target = items.get(vote.item_id or "")
        (target.votes if target else walk.other_votes).append(report)
    sitting_chain = [e for e in chain if e.type not in CONVOCATION_EVENTS] or chain
    opened = next((e for e in sitting_chain if e.type == "sitting_opened"), sitting_chain[0])
    return Minutes(
        sitting_id=spec.id, title=spec.title, regime=state.regime, mode=state.mode, place=spec.place,
        timezone=zone(timezone), start=opened.timestamp, end=sitting_chain[-1].timestamp,
        chair=names.get(chair_id, chair_id) if chair_id else None, secretaries=list(secretaries), names=names,
        attendance={m: walk.attendance[m] for m in state.members if m in present},
        proxies=walk.proxies, absent=[m for m in state.members if m not in present | represented],
        quorum_opening=walk.quorum_opening, quorum_changes=walk.quorum_changes,
        items=[items[i.id] for i in state.agenda], other_votes=walk.other_votes,
        closed_sessions=walk.periods["closed"], suspensions=walk.periods["suspended"],
        convocations=walk.convocation_summary(), entries=head.seq, head_hash=head.hash,
        fingerprint=public_key_fingerprint,
    )


def _check_head(sitting: str, chain: list[Entry], head: SignedHead, fingerprint: str) -> None:
    if not chain:
        raise MinutesError(f"le journal n'a aucune entrée pour la séance {sitting!r}")
    if head.sitting != sitting or len(chain) != head.seq or chain[-1].hash != head.hash:
        raise MinutesError(f"les entrées ne correspondent pas à la tête signée (entrée {head.seq} de {head.sitting})")
    if key_fingerprint(head.public_key_hex) != fingerprint:
        raise MinutesError(f"la tête est signée par la clé {key_fingerprint(head.public_key_hex)}, pas {fingerprint}")
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(head.public_key_hex)).verify(
            bytes.fromhex(head.signature_hex), head_message(head.sitting, head.seq, head.hash))
    except (InvalidSignature, ValueError) as exc:
        raise MinutesError("la signature de la tête du journal n'est pas valide") from exc


def _most_frequent(actors: Counter[str]) -> str | None:
    return actors.most_common(1)[0][0] if actors else None


class _Walk:
    """Replays the journal one entry at a time and notes, before each, what the minutes need."""

    def __init__(self, state: SittingState) -> None:
        self.state = state
        self.attendance: dict[str, Attendance] = {}
        self.proxies: list[Proxy] = []
        self.items = {i.id: ItemReport(i.number, i.id, i.title, i.kind) for i in state.agenda}
        self.other_votes: list[VoteReport] = []
        self.turn: tuple[Turn, ItemReport | None] | None = None
        self.quorum_opening: tuple[int, int, bool] | None = None
        self.quorum_changes: list[tuple[float, bool, int, int]] = []
        self.vote_quorum: dict[str, tuple[int, int]] = {}
        self.proxy_votes: dict[tuple[str, str], str] = {}
        self.periods: dict[str, list[tuple[float, float | None]]] = {"closed": [], "suspended": []}
        self.chair_actors: Counter[str] = Counter()
        self.clerk_actors: set[str] = set()
        self.sent: list[float] = []
        self.acknowledged: set[str] = set()

    def step(self, entry: Entry) -> None:
        at, data, kind, state = entry.timestamp, entry.data, entry.type, self.state
        if kind == "convocation_sent":
            self.sent.append(at)
            return
        if kind == "convocation_acknowledged":
            self.acknowledged.add(str(data.get("member")))
            return
        if kind in CHAIR_EVENTS and entry.actor != "server":
            self.chair_actors[entry.actor] += 1
        member = data.get("member", data.get("seat")) if kind in PRESENCE_NOTES else None
        if isinstance(member, str):
            self._note_presence(member, at, kind)
        if kind in ("chamber_arrival", "chamber_departure") and entry.actor != member:
            self.clerk_actors.add(entry.actor)
        if kind == "item_current":
            if self.quorum_opening is None:
                self.quorum_opening = state.quorum()
            self._end_turn(at)
            if data["item"] in self.items:  # else: the agenda was changed in the settings since
                self.items[data["item"]].taken_up.append(at)
        elif kind == "floor_given":
            self._end_turn(at)
            self.turn = (Turn(data["seat"], at), self.items.get(state.current_item or ""))
        elif kind == "floor_taken" or (kind == "removed" and state.floor == data["seat"]):
            self._end_turn(at, data.get("duration_s"))
        elif kind == "proxy_given":
            self.proxies.append(Proxy(data["giver"], data["holder"], at))
        elif kind == "proxy_revoked":
            for proxy in self.proxies:
                if proxy.giver == data["giver"] and proxy.revoked_at is None:
                    proxy.revoked_at = at
        elif kind == "withdrawal" and data["item"] in self.items:
            self.items[data["item"]].withdrawals.append((at, data["member"]))
        elif kind == "secret_ballot_requested" and data["item"] in self.items:
            self.items[data["item"]].secret_requests.append((at, entry.actor))
        elif kind == "item_postponed" and data["item"] in self.items:
            self.items[data["item"]].postponed = data["reason"]
        elif kind in ("quorum_lost", "quorum_reached"):
            self.quorum_changes.append((at, kind == "quorum_reached", data["counted"], data["required"]))
        elif kind == "vote_opened" and isinstance(data.get("quorum"), list):
            self.vote_quorum[data["vote"]] = (data["quorum"][0], data["quorum"][1])
        elif kind == "ballot":
            self._note_ballot(entry)
        elif kind in ("suspended", "resumed"):
            self._period("suspended", kind == "suspended", at)
        elif kind == "closed_session":
            self._period("closed", bool(data["closed"]), at)
        replay(state, [entry])

    def _note_presence(self, member: str, at: float, kind: str) -> None:
        known = self.state.members.get(member)
        if known is None:
            return
        record = self.attendance.setdefault(member, Attendance(member, known.name, known.group))
        record.timeline.append((at, PRESENCE_NOTES[kind]))
        record.in_room |= kind == "chamber_arrival"
        record.remote |= kind == "member_connected"

    def _note_ballot(self, entry: Entry) -> None:
        member, holder = entry.data["member"], self.state.proxies.get(entry.data["member"])
        if holder is not None and not self.state.may_vote_in_person(member):
            self.proxy_votes[(entry.data["vote"], member)] = holder
        elif entry.actor != member:
            self.clerk_actors.add(entry.actor)

    def _end_turn(self, at: float, duration: float | None = None) -> None:
        if self.turn is not None:
            turn, item = self.turn
            turn.end, turn.duration_s = at, duration if duration is not None else round(at - turn.start, 1)
            if item is not None:
                item.turns.append(turn)
            self.turn = None

    def _period(self, name: str, starts: bool, at: float) -> None:
        periods = self.periods[name]
        if starts:
            periods.append((at, None))
        elif periods and periods[-1][1] is None:
            periods[-1] = (periods[-1][0], at)

    def convocation_summary(self) -> tuple[int, float, float, int] | None:
        if not self.sent:
            return None
        return len(self.sent), min(self.sent), max(self.sent), len(self.acknowledged)

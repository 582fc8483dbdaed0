"""The wire protocol of running a sitting: the chair's, secretary's and members' commands,
and the ``sitting_state`` snapshot every page renders.

The server checks every command against the sender's role
(:data:`signaling.permissions.PERMISSIONS`); the client only hides buttons.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .protocol_types import _Message

Choice = Literal["for", "against", "abstain", "not_voting"]
MutableSource = Literal["mic", "camera"]
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_:@-]+$")]  # seat and item ids

# ---------------------------------------------------------------- moderation


class Mute(_Message):
    """Chair: mute a member's microphone or turn their camera off (enforced by the SFU)."""

    type: Literal["mute"]
    participant_id: Id
    source: MutableSource = "mic"
    muted: bool = True


class MuteAll(_Message):
    """Chair: mute every member but the one holding the floor."""

    type: Literal["mute_all"]


class SetSelfUnmute(_Message):
    """Chair: allow or forbid members to unmute themselves after the chair muted them."""

    type: Literal["set_self_unmute"]
    allowed: bool


class Remove(_Message):
    type: Literal["remove"]
    participant_id: Id


class Lock(_Message):
    """Chair: lock the sitting: newcomers wait in the waiting room until admitted."""

    type: Literal["lock"]
    locked: bool


class AdmitParticipant(_Message):
    type: Literal["admit"]
    participant_id: Id


class RaiseHand(_Message):
    type: Literal["raise_hand"]
    point_of_order: bool = False


class LowerHand(_Message):
    """Lower one's own hand, or (chair) anyone's."""

    type: Literal["lower_hand"]
    participant_id: Id | None = None


class GiveFloor(_Message):
    type: Literal["give_floor"]
    participant_id: Id
    mute_others: bool = False


class TakeFloor(_Message):
    type: Literal["take_floor"]


# ---------------------------------------------------------------- agenda and roll


class SetItem(_Message):
    type: Literal["set_item"]
    item_id: Id


class Suspend(_Message):
    type: Literal["suspend"]
    suspended: bool


class ClosedSession(_Message):
    """Chair: huis clos. The public programme is cut and the journal marks it."""

    type: Literal["closed_session"]
    closed: bool


class ProgrammeSound(_Message):
    """Chair: cut the public programme's sound (a passage about a private person, CNIL);
    the cut is journalled and the recording keeps it."""

    type: Literal["programme_sound"]
    cut: bool


class RecordPresence(_Message):
    """Secretary: a member arrives in or leaves the chamber."""

    type: Literal["record_presence"]
    member_id: Id
    present: bool


# ---------------------------------------------------------------- proxies and votes


class GiveProxy(_Message):
    """A member gives their vote to another; the secretary may record it for a member."""

    type: Literal["give_proxy"]
    holder_id: Id
    giver_id: Id | None = None


class RevokeProxy(_Message):
    type: Literal["revoke_proxy"]
    giver_id: Id | None = None


class Withdraw(_Message):
    """A member with a conflict of interest withdraws from the current item."""

    type: Literal["withdraw"]
    member_id: Id | None = None


class RequestSecretBallot(_Message):
    """Chair: record that a third of the members present asked for a secret ballot."""

    type: Literal["request_secret_ballot"]


class OpenVote(_Message):
    type: Literal["open_vote"]
    question: str = Field(min_length=1, max_length=500)
    method: Literal["show_of_hands", "roll_call", "electronic"] = "electronic"


class CastVote(_Message):
    """A member votes, for themself or for the member whose proxy they hold."""

    type: Literal["cast_vote"]
    choice: Choice
    on_behalf_of: Id | None = None


class RecordVote(_Message):
    """Secretary: the vote of a member in the chamber."""

    type: Literal["record_vote"]
    member_id: Id
    choice: Choice


class CloseVote(_Message):
    type: Literal["close_vote"]


SittingCommand = (
    Mute
    | MuteAll
    | SetSelfUnmute
    | Remove
    | Lock
    | AdmitParticipant
    | RaiseHand
    | LowerHand
    | GiveFloor
    | TakeFloor
    | SetItem
    | Suspend
    | ClosedSession
    | ProgrammeSound
    | RecordPresence
    | GiveProxy
    | RevokeProxy
    | Withdraw
    | RequestSecretBallot
    | OpenVote
    | CastVote
    | RecordVote
    | CloseVote
)

# ---------------------------------------------------------------- the snapshot


class AgendaItemInfo(_Message):
    id: str
    number: int
    title: str
    kind: str
    time_limit_s: int | None
    postponed: str | None


class HandInfo(_Message):
    participant_id: str
    point_of_order: bool
    raised_at: float


class FloorInfo(_Message):
    participant_id: str
    since: float
    limit_s: int | None


class MemberInfo(_Message):
    member_id: str
    name: str
    group: str | None
    in_chamber: bool
    remote: bool
    represented_by: str | None
    withdrawn: bool


class QuorumInfo(_Message):
    in_office: int
    counted: int
    required: int
    reached: bool
    rule: str


class BallotInfo(_Message):
    member_id: str
    choice: Choice
    cast_by: str


class VoteInfo(_Message):
    id: str
    item_id: str | None
    question: str
    method: str
    open: bool
    voters: list[str]  # who has voted so far (choices are published when the vote closes)
    ballots: list[BallotInfo]
    votes_for: int = 0
    votes_against: int = 0
    abstentions: int = 0
    not_voting: int = 0
    adopted: bool | None = None
    casting_vote: bool = False
    void: str | None = None


class WaitingInfo(_Message):
    participant_id: str
    name: str
    role: str


class SittingState(_Message):
    type: Literal["sitting_state"] = "sitting_state"
    regime: str
    regime_title: str
    mode: str
    locked: bool
    suspended: bool
    closed_session: bool
    programme_sound_cut: bool
    self_unmute_allowed: bool
    agenda: list[AgendaItemInfo]
    current_item: str | None
    floor: FloorInfo | None
    queue: list[HandInfo]
    forced_muted: list[str]  # "participant_id:source"
    members: list[MemberInfo]
    quorum: QuorumInfo
    votes: list[VoteInfo]
    waiting: list[WaitingInfo]


class WaitingRoom(_Message):
    """The sitting is locked: wait until the chair admits you."""

    type: Literal["waiting_room"] = "waiting_room"


class Notice(_Message):
    """A message for the chair and secretaries (quorum lost...), or for one member."""

    type: Literal["notice"] = "notice"
    message: str

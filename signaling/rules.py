"""The rules of the sitting: who may give which command, and the one entry point
(:func:`decide`, :func:`apply`) over moderation and deliberation.

Pure functions over :class:`~signaling.sitting_state.SittingState`; the session
journals the returned events, applies them and carries out the effects.
"""

from __future__ import annotations

from typing import Any

from . import deliberation, moderation
from . import protocol_sitting as c
from .assembly import Actor, Decision, Event, Refused, Warn
from .protocol import Role
from .sitting_state import SittingState

CHAIR: frozenset[Role] = frozenset({"chair"})
CLERKS: frozenset[Role] = frozenset({"chair", "secretary"})
MEMBERS: frozenset[Role] = frozenset({"chair", "secretary", "councillor"})

PERMISSIONS: dict[type[Any], frozenset[Role]] = {
    c.Mute: CHAIR,
    c.MuteAll: CHAIR,
    c.SetSelfUnmute: CHAIR,
    c.Remove: CHAIR,
    c.Lock: CHAIR,
    c.AdmitParticipant: CHAIR,
    c.RaiseHand: frozenset({"secretary", "councillor"}),
    c.LowerHand: MEMBERS,
    c.GiveFloor: CHAIR,
    c.TakeFloor: CHAIR,
    c.SetItem: CHAIR,
    c.Suspend: CHAIR,
    c.ClosedSession: CHAIR,
    c.ProgrammeSound: CHAIR,
    c.RecordPresence: CLERKS,
    c.GiveProxy: MEMBERS,
    c.RevokeProxy: MEMBERS,
    c.Withdraw: MEMBERS,
    c.RequestSecretBallot: CHAIR,
    c.OpenVote: CHAIR,
    c.CastVote: MEMBERS,
    c.RecordVote: CLERKS,
    c.CloseVote: CHAIR,
}


def decide(state: SittingState, actor: Actor, command: c.SittingCommand, now: float) -> Decision:
    allowed = PERMISSIONS[type(command)]
    if actor.role not in allowed:
        raise Refused("forbidden", f"{command.type}: not allowed for the role {actor.role}")
    if actor.seat in state.removed:
        raise Refused("forbidden", "you were removed from this sitting")
    if isinstance(command, moderation.ModerationCommand):
        return moderation.decide(state, actor, command, now)
    return deliberation.decide(state, actor, command, now)


def apply(state: SittingState, event: Event) -> None:
    if event.type in ("quorum_lost", "quorum_reached"):
        state.quorum_reached = event.type == "quorum_reached"
    elif not (moderation.apply(state, event) or deliberation.apply(state, event)) and event.type not in NOTES:
        raise ValueError(f"unknown event type {event.type!r}")


# Events journalled for the record that change no state.
NOTES = frozenset({"sitting_opened", "member_joined_public", "convocation_sent", "convocation_acknowledged"})


def quorum_watch(state: SittingState, now: float) -> Decision:
    """After a change: journal and announce the quorum being reached, or lost once reached."""
    d = Decision()
    counted, required, reached = state.quorum()
    if reached != bool(state.quorum_reached) and (reached or state.quorum_reached is not None):
        kind = "quorum_reached" if reached else "quorum_lost"
        d.events.append(Event(kind, {"counted": counted, "required": required}, "server", now))
        if not reached:
            d.effects.append(Warn(f"quorum perdu : {counted} membres comptés, {required} requis"))
    return d

"""Moderation: mutes enforced by the SFU, hands, the floor, lock, waiting room, removal.

Pure: :func:`decide` checks a command against the state and returns a
:class:`~signaling.assembly.Decision`; :func:`apply` folds an event into the state.
Who may give which command is decided before, in :mod:`signaling.permissions`.
"""

from __future__ import annotations

from . import protocol_sitting as c
from .assembly import Actor, Admit, Decision, Disconnect, Event, Refused
from .sitting_state import Hand, SittingState

ModerationCommand = (
    c.Mute | c.MuteAll | c.SetSelfUnmute | c.Remove | c.Lock | c.AdmitParticipant
    | c.RaiseHand | c.LowerHand | c.GiveFloor | c.TakeFloor
)


def decide(state: SittingState, actor: Actor, command: ModerationCommand, now: float) -> Decision:
    d = Decision()
    if isinstance(command, c.Mute):
        if command.participant_id not in state.members and command.participant_id not in state.connected:
            raise Refused("bad_message", "no such member in this sitting")
        key = (command.participant_id, command.source)
        if command.muted and key not in state.forced_muted:
            d.add(actor, now, "muted", seat=command.participant_id, source=command.source)
        elif not command.muted and key in state.forced_muted:
            d.add(actor, now, "unmuted", seat=command.participant_id, source=command.source)
    elif isinstance(command, c.MuteAll):
        for seat in sorted(state.connected | set(state.members)):
            if seat != state.floor and seat != actor.seat and (seat, "mic") not in state.forced_muted:
                d.add(actor, now, "muted", seat=seat, source="mic")
    elif isinstance(command, c.SetSelfUnmute):
        if command.allowed != state.self_unmute_allowed:
            d.add(actor, now, "self_unmute", allowed=command.allowed)
    elif isinstance(command, c.Remove):
        if command.participant_id == actor.seat:
            raise Refused("bad_message", "the chair cannot remove themself")
        d.add(actor, now, "removed", seat=command.participant_id)
        d.effects.append(Disconnect(command.participant_id, "retiré(e) de la séance par la présidence"))
    elif isinstance(command, c.Lock):
        if command.locked != state.locked:
            d.add(actor, now, "locked", locked=command.locked)
    elif isinstance(command, c.AdmitParticipant):
        if command.participant_id not in state.waiting:
            raise Refused("bad_message", "this person is not in the waiting room")
        d.add(actor, now, "admitted", seat=command.participant_id)
        d.effects.append(Admit(command.participant_id))
    elif isinstance(command, c.RaiseHand):
        if any(h.seat == actor.seat for h in state.hands):
            raise Refused("bad_message", "your hand is already raised")
        if state.floor == actor.seat:
            raise Refused("bad_message", "you already have the floor")
        d.add(actor, now, "hand_raised", seat=actor.seat, point_of_order=command.point_of_order)
    elif isinstance(command, c.LowerHand):
        seat = command.participant_id or actor.seat
        if seat != actor.seat and actor.role != "chair":
            raise Refused("forbidden", "only the chair lowers another member's hand")
        if not any(h.seat == seat for h in state.hands):
            raise Refused("bad_message", "this hand is not raised")
        d.add(actor, now, "hand_lowered", seat=seat)
    elif isinstance(command, c.GiveFloor):
        _give_floor(state, actor, command, now, d)
    elif isinstance(command, c.TakeFloor):
        if state.floor is None:
            raise Refused("bad_message", "nobody has the floor")
        d.add(actor, now, "floor_taken", seat=state.floor, duration_s=round(now - state.floor_since, 1))
    return d


def _give_floor(state: SittingState, actor: Actor, command: c.GiveFloor, now: float, d: Decision) -> None:
    seat = command.participant_id
    if state.suspended:
        raise Refused("bad_message", "the sitting is suspended")
    if state.floor is not None:
        d.add(actor, now, "floor_taken", seat=state.floor, duration_s=round(now - state.floor_since, 1))
    item = state.item(state.current_item)
    d.add(actor, now, "floor_given", seat=seat, limit_s=item.time_limit_s if item else None)
    if (seat, "mic") in state.forced_muted:
        d.add(actor, now, "unmuted", seat=seat, source="mic")
    if command.mute_others:
        for other in sorted(state.connected | set(state.members)):
            if other not in (seat, actor.seat) and (other, "mic") not in state.forced_muted:
                d.add(actor, now, "muted", seat=other, source="mic")


def self_unmute_refusal(state: SittingState, seat: str, source: str) -> str | None:
    """Why a member may not unmute themself now, or None."""
    if (seat, source) in state.forced_muted and not state.self_unmute_allowed and state.floor != seat:
        return "la présidence a coupé votre micro ; demandez la parole"
    return None


def apply(state: SittingState, event: Event) -> bool:
    """Fold a moderation event into the state; False if the event is not one of ours."""
    data, kind = event.data, event.type
    if kind == "muted":
        state.forced_muted.add((data["seat"], data["source"]))
    elif kind == "unmuted":
        state.forced_muted.discard((data["seat"], data["source"]))
    elif kind == "self_unmute":
        state.self_unmute_allowed = bool(data["allowed"])
    elif kind == "removed":
        state.removed.add(data["seat"])
        state.hands = [h for h in state.hands if h.seat != data["seat"]]
        if state.floor == data["seat"]:
            state.floor = None
    elif kind == "locked":
        state.locked = bool(data["locked"])
    elif kind == "waiting":
        if data["seat"] not in state.waiting:
            state.waiting.append(data["seat"])
        state.waiting_names[data["seat"]] = (str(data.get("name", "")), str(data.get("role", "")))
    elif kind == "admitted":
        state.waiting = [s for s in state.waiting if s != data["seat"]]
        state.admitted.add(data["seat"])
    elif kind == "hand_raised":
        hand = Hand(data["seat"], bool(data["point_of_order"]), event.at)
        if hand.point_of_order:  # a point of order jumps the queue, behind earlier points of order
            position = sum(1 for h in state.hands if h.point_of_order)
            state.hands.insert(position, hand)
        else:
            state.hands.append(hand)
    elif kind == "hand_lowered":
        state.hands = [h for h in state.hands if h.seat != data["seat"]]
    elif kind == "floor_given":
        state.floor = data["seat"]
        state.floor_since = event.at
        state.hands = [h for h in state.hands if h.seat != data["seat"]]
        state.forced_muted.discard((data["seat"], "mic"))
    elif kind == "floor_taken":
        if state.floor == data["seat"]:
            state.floor = None
    else:
        return False
    return True

"""Deliberation: agenda, roll and quorum, proxies, withdrawals and named votes, by the regime.

Pure: :func:`decide` returns the events a command causes (or raises
:class:`~signaling.assembly.Refused`); :func:`apply` folds an event into the state.
"""

from __future__ import annotations

from typing import Any

from . import protocol_sitting as c
from .assembly import Actor, Decision, Event, Refused, Warn
from .sitting_state import AgendaItem, Ballot, Member, SittingState, VoteRecord

DeliberationCommand = (
    c.SetItem | c.Suspend | c.ClosedSession | c.ProgrammeSound | c.RecordPresence | c.GiveProxy | c.RevokeProxy
    | c.Withdraw | c.RequestSecretBallot | c.OpenVote | c.CastVote | c.RecordVote | c.CloseVote
)
CLERKS = ("chair", "secretary")


def decide(state: SittingState, actor: Actor, command: DeliberationCommand, now: float) -> Decision:
    d = Decision()
    if isinstance(command, c.SetItem):
        item = state.item(command.item_id)
        if item is None:
            raise Refused("bad_message", f"no agenda item {command.item_id}")
        if state.open_vote is not None:
            raise Refused("bad_message", "close the vote before moving to another item")
        d.add(actor, now, "item_current", item=item.id)
    elif isinstance(command, c.Suspend):
        if command.suspended != state.suspended:
            d.add(actor, now, "suspended" if command.suspended else "resumed")
    elif isinstance(command, c.ClosedSession):
        if command.closed != state.closed_session:
            d.add(actor, now, "closed_session", closed=command.closed)
    elif isinstance(command, c.ProgrammeSound):
        if command.cut != state.programme_sound_cut:
            d.add(actor, now, "programme_sound", cut=command.cut)
    elif isinstance(command, c.RecordPresence):
        _member(state, command.member_id)
        if command.present != (command.member_id in state.in_chamber):
            d.add(actor, now, "chamber_arrival" if command.present else "chamber_departure", member=command.member_id)
    elif isinstance(command, c.GiveProxy):
        giver = _on_behalf(state, actor, command.giver_id)
        _check_proxy(state, giver, command.holder_id)
        d.add(actor, now, "proxy_given", giver=giver, holder=command.holder_id)
    elif isinstance(command, c.RevokeProxy):
        giver = _on_behalf(state, actor, command.giver_id)
        if giver not in state.proxies:
            raise Refused("bad_message", "there is no proxy to revoke")
        d.add(actor, now, "proxy_revoked", giver=giver)
    elif isinstance(command, c.Withdraw):
        member = _on_behalf(state, actor, command.member_id)
        if state.current_item is None:
            raise Refused("bad_message", "no agenda item is current")
        if member in state.withdrawn_now():
            raise Refused("bad_message", "already withdrawn from this item")
        d.add(actor, now, "withdrawal", member=member, item=state.current_item)
    elif isinstance(command, c.RequestSecretBallot):
        item = _current(state)
        d.add(actor, now, "secret_ballot_requested", item=item.id)
        reason = state.regime.remote_refusal(state.mode, item.kind, secret_requested=True)
        if reason:
            d.add(actor, now, "item_postponed", item=item.id, reason=reason)
    elif isinstance(command, c.OpenVote):
        _open_vote(state, actor, command, now, d)
    elif isinstance(command, (c.CastVote, c.RecordVote)):
        _cast(state, actor, command, now, d)
    elif isinstance(command, c.CloseVote):
        vote = state.open_vote
        if vote is None:
            raise Refused("bad_message", "no vote is open")
        d.add(actor, now, "vote_closed", vote=vote.id, result=tally(state, vote))
    return d


def _member(state: SittingState, member: str) -> None:
    if member not in state.members:
        raise Refused("bad_message", "this person is not a member of the council")


def _on_behalf(state: SittingState, actor: Actor, member: str | None) -> str:
    """The member a command is about: oneself, or (chair, secretary) the one named."""
    if member is None or member == actor.seat:
        _member(state, actor.seat)
        return actor.seat
    if actor.role not in CLERKS:
        raise Refused("forbidden", "only the chair or the secretary acts for another member")
    _member(state, member)
    return member


def _check_proxy(state: SittingState, giver: str, holder: str) -> None:
    _member(state, holder)
    if holder == giver:
        raise Refused("bad_message", "a member cannot give a proxy to themself")
    if giver in state.proxies:
        raise Refused("bad_message", "revoke your current proxy first")
    if holder in state.proxies:
        raise Refused("bad_message", "this member has given their own vote away")
    if giver in state.proxies.values():
        raise Refused("bad_message", "a member holding proxies cannot give their vote away")
    held = sum(1 for h in state.proxies.values() if h == holder)
    cap = state.regime.proxies_per_holder
    if held >= cap:
        raise Refused("bad_message", f"this member already holds {held} proxy(ies), the limit is {cap}")


def _current(state: SittingState) -> AgendaItem:
    item = state.item(state.current_item)
    if item is None:
        raise Refused("bad_message", "no agenda item is current")
    return item


def _open_vote(state: SittingState, actor: Actor, command: c.OpenVote, now: float, d: Decision) -> None:
    if state.open_vote is not None:
        raise Refused("bad_message", "a vote is already open")
    if state.suspended:
        raise Refused("bad_message", "the sitting is suspended")
    item = state.item(state.current_item)
    if item is not None and item.postponed:
        raise Refused("bad_message", f"this item is postponed: {item.postponed}")
    if command.method not in state.regime.vote_methods:
        raise Refused("bad_message", f"{command.method} is not allowed under {state.regime.title}")
    if item is not None:
        reason = state.regime.remote_refusal(state.mode, item.kind, item.secret_requested)
        if reason is None and item.no_remote_vote and state.mode != "chamber":
            reason = "point signalé « sans vote à distance » : reporté à une séance dans la salle"
        if reason:
            d.add(actor, now, "item_postponed", item=item.id, reason=reason)
            d.effects.append(Warn(reason))
            return
    counted, required, reached = state.quorum()
    if not reached:
        d.effects.append(Warn(f"quorum non atteint ({counted}/{required}) : le vote ne peut pas être ouvert"))
        raise Refused("bad_message", f"quorum not reached ({counted} of {required} required)")
    vote_id = f"v{len(state.votes) + 1}"
    d.add(actor, now, "vote_opened", vote=vote_id, item=state.current_item, question=command.question,
          method=command.method, quorum=[counted, required])


def _cast(state: SittingState, actor: Actor, command: c.CastVote | c.RecordVote, now: float, d: Decision) -> None:
    vote = state.open_vote
    if vote is None:
        raise Refused("bad_message", "no vote is open")
    if isinstance(command, c.RecordVote):
        voter = command.member_id
        _member(state, voter)
        if voter not in state.in_chamber and not _is_proxy_of_chamber(state, voter):
            raise Refused("bad_message", "the secretary records the votes of members in the chamber")
    else:
        _member(state, actor.seat)
        voter = command.on_behalf_of or actor.seat
        if voter != actor.seat:
            _member(state, voter)
            if state.proxies.get(voter) != actor.seat:
                raise Refused("forbidden", "you do not hold this member's proxy")
            if state.may_vote_in_person(voter):
                raise Refused("bad_message", "this member is present and votes themself")
            if not state.may_vote_in_person(actor.seat):
                raise Refused("bad_message", "you must be present to vote by proxy")
        elif not state.may_vote_in_person(voter):
            raise Refused("bad_message", "you are not counted present: your vote cannot be taken")
    if voter in state.withdrawn.get(vote.item_id or "", set()):
        raise Refused("bad_message", "this member withdrew from this item")
    if voter in vote.ballots:
        raise Refused("bad_message", "this vote has already been cast")
    d.add(actor, now, "ballot", vote=vote.id, member=voter, choice=command.choice, cast_by=actor.seat)


def _is_proxy_of_chamber(state: SittingState, member: str) -> bool:
    holder = state.proxies.get(member)
    return holder is not None and holder in state.in_chamber and member not in state.connected


def tally(state: SittingState, vote: VoteRecord) -> dict[str, Any]:
    """The result: absolute majority of the votes cast (abstentions do not count)."""
    counts = {"for": 0, "against": 0, "abstain": 0, "not_voting": 0}
    for ballot in vote.ballots.values():
        counts[ballot.choice] += 1
    counted, required, reached = state.quorum()
    casting = False
    if not reached:
        adopted = None
        void = f"quorum perdu pendant le vote ({counted}/{required}) : le vote est nul"
    else:
        void = None
        adopted = counts["for"] > counts["against"]
        if counts["for"] == counts["against"] and counts["for"] > 0 and state.regime.casting_vote:
            chair_ballot = vote.ballots.get(state.chair or "")
            if chair_ballot is not None and chair_ballot.choice in ("for", "against"):
                adopted = chair_ballot.choice == "for"
                casting = True
    return {**{f"votes_{k}" if k in ("for", "against") else k: v for k, v in counts.items()},
            "adopted": adopted, "casting_vote": casting, "void": void, "quorum": [counted, required]}


def apply(state: SittingState, event: Event) -> bool:
    data, kind = event.data, event.type
    if kind == "item_current":
        state.current_item = data["item"]
        if state.floor is not None:
            state.floor = None
    elif kind in ("suspended", "resumed"):
        state.suspended = kind == "suspended"
    elif kind == "closed_session":
        state.closed_session = bool(data["closed"])
    elif kind == "programme_sound":
        state.programme_sound_cut = bool(data["cut"])
    elif kind == "chamber_arrival":
        state.in_chamber.add(data["member"])
    elif kind == "chamber_departure":
        state.in_chamber.discard(data["member"])
    elif kind == "member_enrolled":
        state.members[data["member"]] = Member(data["member"], data["name"], data.get("group"))
        if data.get("role") == "chair" and state.chair is None:
            state.chair = data["member"]
    elif kind == "member_connected":
        state.connected.add(data["member"])
    elif kind in ("member_left", "connection_lost"):
        state.connected.discard(data["member"])
    elif kind == "proxy_given":
        state.proxies[data["giver"]] = data["holder"]
    elif kind == "proxy_revoked":
        state.proxies.pop(data["giver"], None)
    elif kind == "withdrawal":
        state.withdrawn.setdefault(data["item"], set()).add(data["member"])
    elif kind == "secret_ballot_requested":
        item = state.item(data["item"])
        if item is not None:
            item.secret_requested = True
    elif kind == "item_postponed":
        item = state.item(data["item"])
        if item is not None:
            item.postponed = data["reason"]
    elif kind == "vote_opened":
        state.votes.append(VoteRecord(data["vote"], data["item"], data["question"], data["method"], event.at))
    elif kind == "ballot":
        vote = next(v for v in state.votes if v.id == data["vote"])
        vote.ballots[data["member"]] = Ballot(data["choice"], data["cast_by"], event.at)
    elif kind == "vote_closed":
        vote = next(v for v in state.votes if v.id == data["vote"])
        vote.closed_at = event.at
        vote.result = dict(data["result"])
    else:
        return False
    return True

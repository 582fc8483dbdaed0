"""The ``sitting_state`` snapshot: what every page shows of the sitting.

Choices in a vote are published when it closes; while it is open, only who has
voted is shown.
"""

from __future__ import annotations

from . import protocol_sitting as c
from .sitting_state import SittingState, VoteRecord


def snapshot(state: SittingState) -> c.SittingState:
    counted, required, reached = state.quorum()
    withdrawn = state.withdrawn_now()
    return c.SittingState(
        regime=state.regime.id,
        regime_title=state.regime.title,
        mode=state.mode,
        locked=state.locked,
        suspended=state.suspended,
        closed_session=state.closed_session,
        programme_sound_cut=state.programme_sound_cut,
        self_unmute_allowed=state.self_unmute_allowed,
        agenda=[
            c.AgendaItemInfo(
                id=i.id, number=i.number, title=i.title, kind=i.kind, time_limit_s=i.time_limit_s, postponed=i.postponed
            )
            for i in state.agenda
        ],
        current_item=state.current_item,
        floor=None
        if state.floor is None
        else c.FloorInfo(
            participant_id=state.floor,
            since=state.floor_since,
            limit_s=(item.time_limit_s if (item := state.item(state.current_item)) else None),
        ),
        queue=[
            c.HandInfo(participant_id=h.seat, point_of_order=h.point_of_order, raised_at=h.raised_at)
            for h in state.hands
        ],
        forced_muted=sorted(f"{seat}:{source}" for seat, source in state.forced_muted),
        members=[
            c.MemberInfo(
                member_id=m.id,
                name=m.name,
                group=m.group,
                in_chamber=m.id in state.in_chamber,
                remote=m.id in state.connected,
                represented_by=state.proxies.get(m.id),
                withdrawn=m.id in withdrawn,
            )
            for m in state.members.values()
        ],
        quorum=c.QuorumInfo(
            in_office=len(state.members),
            counted=counted,
            required=required,
            reached=reached,
            rule=state.regime.quorum.describe(),
        ),
        votes=[_vote(v) for v in state.votes],
        waiting=[
            c.WaitingInfo(participant_id=seat, name=name, role=role)
            for seat in state.waiting
            for name, role in [state.waiting_names.get(seat, ("", ""))]
        ],
    )


def _vote(vote: VoteRecord) -> c.VoteInfo:
    result = vote.result or {}
    ballots = (
        []
        if vote.open
        else [c.BallotInfo(member_id=m, choice=b.choice, cast_by=b.cast_by) for m, b in vote.ballots.items()]  # type: ignore[arg-type]
    )
    return c.VoteInfo(
        id=vote.id,
        item_id=vote.item_id,
        question=vote.question,
        method=vote.method,
        open=vote.open,
        voters=sorted(vote.ballots),
        ballots=ballots,
        votes_for=int(result.get("votes_for", 0)),
        votes_against=int(result.get("votes_against", 0)),
        abstentions=int(result.get("abstain", 0)),
        not_voting=int(result.get("not_voting", 0)),
        adopted=result.get("adopted"),
        casting_vote=bool(result.get("casting_vote", False)),
        void=result.get("void"),
    )

"""Moderation by the rules: the queue, the floor, enforced mutes, lock and waiting room."""

from __future__ import annotations

import pytest

from signaling.assembly import Admit, Disconnect, Refused
from signaling.moderation import self_unmute_refusal
from tests.sitting.sim import Sim


def test_points_of_order_jump_the_queue_in_their_own_order() -> None:
    sim = Sim()
    sim.connect("m1", "m2", "m3", "m4", "m5")
    sim.do("m3", {"type": "raise_hand"})
    sim.do("m4", {"type": "raise_hand"})
    sim.do("m5", {"type": "raise_hand", "point_of_order": True})
    sim.do("m2", {"type": "raise_hand", "point_of_order": True})
    assert [h.seat for h in sim.state.hands] == ["m5", "m2", "m3", "m4"]
    with pytest.raises(Refused, match="already raised"):
        sim.do("m3", {"type": "raise_hand"})


def test_giving_the_floor_unmutes_the_speaker_and_can_mute_everyone_else() -> None:
    sim = Sim()
    sim.connect("m1", "m2", "m3", "m4")
    sim.do("m1", {"type": "set_item", "item_id": "i1"})
    sim.do("m1", {"type": "mute", "participant_id": "m3"})
    sim.do("m3", {"type": "raise_hand"})
    sim.do("m1", {"type": "give_floor", "participant_id": "m3", "mute_others": True})
    state = sim.state
    assert state.floor == "m3" and state.hands == []
    assert ("m3", "mic") not in state.forced_muted
    assert {("m2", "mic"), ("m4", "mic")} <= state.forced_muted
    assert ("m1", "mic") not in state.forced_muted  # the chair keeps their voice
    floor_event = next(e for e in sim.journal if e.type == "floor_given")
    assert floor_event.data["limit_s"] == 120  # the item's speaking time
    sim.now += 42
    sim.do("m1", {"type": "take_floor"})
    taken = next(e for e in sim.journal if e.type == "floor_taken")
    assert taken.data["duration_s"] == pytest.approx(43, abs=1)
    assert sim.state.floor is None


def test_mute_all_spares_the_floor_holder() -> None:
    sim = Sim()
    sim.connect("m1", "m2", "m3", "m4")
    sim.do("m1", {"type": "give_floor", "participant_id": "m4"})
    sim.do("m1", {"type": "mute_all"})
    assert ("m4", "mic") not in sim.state.forced_muted
    assert ("m2", "mic") in sim.state.forced_muted and ("m3", "mic") in sim.state.forced_muted


def test_self_unmute_can_be_forbidden_after_a_chair_mute() -> None:
    sim = Sim()
    sim.connect("m1", "m3")
    sim.do("m1", {"type": "mute", "participant_id": "m3"})
    assert self_unmute_refusal(sim.state, "m3", "mic") is None  # allowed by default
    sim.do("m1", {"type": "set_self_unmute", "allowed": False})
    assert self_unmute_refusal(sim.state, "m3", "mic")
    sim.do("m1", {"type": "give_floor", "participant_id": "m3"})
    assert self_unmute_refusal(sim.state, "m3", "mic") is None  # the floor holder may speak


def test_lock_waiting_room_admit_and_remove() -> None:
    sim = Sim()
    sim.do("m1", {"type": "lock", "locked": True})
    sim.server("waiting", seat="late")
    assert sim.state.waiting == ["late"]
    decision = sim.do("m1", {"type": "admit", "participant_id": "late"})
    assert decision.effects == [Admit("late")] and sim.state.waiting == []
    with pytest.raises(Refused, match="not in the waiting room"):
        sim.do("m1", {"type": "admit", "participant_id": "late"})
    decision = sim.do("m1", {"type": "remove", "participant_id": "m4"})
    assert isinstance(decision.effects[0], Disconnect) and "m4" in sim.state.removed
    with pytest.raises(Refused, match="removed"):
        sim.do("m4", {"type": "raise_hand"})


def test_the_state_is_rebuilt_by_replaying_the_journal() -> None:
    from signaling import rules
    from signaling.sitting_state import SittingState

    sim = Sim()
    sim.connect("m1", "m2", "m3", "m4")
    sim.do("m5", {"type": "give_proxy", "holder_id": "m4"}, role="councillor")
    sim.do("m1", {"type": "set_item", "item_id": "i1"})
    sim.do("m3", {"type": "raise_hand", "point_of_order": True})
    sim.do("m1", {"type": "mute", "participant_id": "m2"})
    sim.do("m1", {"type": "open_vote", "question": "?"})
    sim.do("m4", {"type": "cast_vote", "choice": "for", "on_behalf_of": "m5"})
    replayed = SittingState("s1", regime=sim.state.regime, mode=sim.state.mode, members=sim.state.members,
                            agenda=[type(i)(**vars(i)) for i in Sim().state.agenda], chair="m1")
    for event in sim.journal:
        rules.apply(replayed, event)
    assert replayed.proxies == sim.state.proxies
    assert replayed.forced_muted == sim.state.forced_muted
    assert [h.seat for h in replayed.hands] == ["m3"]
    assert replayed.open_vote is not None and replayed.open_vote.ballots.keys() == {"m5"}
    assert replayed.quorum() == sim.state.quorum()

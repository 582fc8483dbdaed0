"""Deliberation by the rules: quorum, proxies, withdrawals, ties, every regime preset."""

from __future__ import annotations

import pytest

from signaling.assembly import Refused, Warn
from signaling.regimes import REGIMES
from tests.sitting.sim import Sim


def vote(sim: Sim, **choices: str) -> dict[str, object]:
    sim.do("m1", {"type": "open_vote", "question": "Adopter la délibération ?"})
    for seat, choice in choices.items():
        if "_for_" in seat:
            holder, giver = seat.split("_for_")
            sim.do(holder, {"type": "cast_vote", "choice": choice, "on_behalf_of": giver})
        else:
            sim.do(seat, {"type": "cast_vote", "choice": choice})
    sim.do("m1", {"type": "close_vote"})
    return sim.last_result()


def test_absolute_majority_of_votes_cast_abstentions_do_not_count() -> None:
    sim = Sim(members=7)
    sim.connect("m1", "m2", "m3", "m4", "m5", "m6")
    sim.do("m1", {"type": "set_item", "item_id": "i1"})
    result = vote(sim, m1="for", m2="for", m3="against", m4="abstain", m5="abstain", m6="not_voting")
    assert (result["votes_for"], result["votes_against"], result["abstain"]) == (2, 1, 2)
    assert result["adopted"] is True and result["void"] is None


def test_tie_is_broken_by_the_chairs_casting_vote() -> None:
    sim = Sim(members=5)
    sim.connect("m1", "m2", "m3", "m4")
    sim.do("m1", {"type": "set_item", "item_id": "i1"})
    result = vote(sim, m1="against", m2="for", m3="for", m4="against")
    assert result["adopted"] is False and result["casting_vote"] is True
    sim.do("m1", {"type": "set_item", "item_id": "i1"})
    result = vote(sim, m1="abstain", m2="for", m3="against")
    assert result["adopted"] is False and result["casting_vote"] is False  # chair did not vote: no majority


def test_proxy_holder_votes_for_both_and_names_are_published() -> None:
    sim = Sim(members=6)
    sim.connect("m1", "m2", "m3", "m4")
    sim.do("m5", {"type": "give_proxy", "holder_id": "m3"}, role="councillor")
    sim.do("m1", {"type": "set_item", "item_id": "i1"})
    result = vote(sim, m1="for", m2="against", m3="against", m3_for_m5="against", m4="for")
    assert (result["votes_for"], result["votes_against"]) == (2, 3)
    ballot = sim.state.votes[-1].ballots["m5"]
    assert (ballot.choice, ballot.cast_by) == ("against", "m3")


def test_proxy_refusals_over_cap_outside_council_chains_and_self() -> None:
    sim = Sim(regime="commune", members=6)
    sim.do("m5", {"type": "give_proxy", "holder_id": "m3"}, role="councillor")
    for seat, holder, why in [
        ("m6", "m3", "limit is 1"),  # the cap of the regime
        ("m6", "stranger", "not a member"),
        ("m6", "m6", "themself"),
        ("m3", "m4", "holding proxies"),  # no chains
        ("m5", "m4", "revoke your current proxy"),
    ]:
        with pytest.raises(Refused, match=why):
            sim.do(seat, {"type": "give_proxy", "holder_id": holder}, role="councillor")
    assert sim.state.proxies == {"m5": "m3"}
    sim.do("m5", {"type": "revoke_proxy"}, role="councillor")
    assert sim.state.proxies == {}


def test_two_proxies_per_holder_under_the_emergency_regime() -> None:
    sim = Sim(regime="urgence-2020-11", members=6)
    sim.do("m5", {"type": "give_proxy", "holder_id": "m3"}, role="councillor")
    sim.do("m6", {"type": "give_proxy", "holder_id": "m3"}, role="councillor")
    with pytest.raises(Refused, match="limit is 2"):
        sim.do("m4", {"type": "give_proxy", "holder_id": "m3"}, role="councillor")


def test_vote_refusals_twice_after_close_without_proxy_absent() -> None:
    sim = Sim(members=5)
    sim.connect("m1", "m2", "m3", "m4")
    sim.do("m1", {"type": "set_item", "item_id": "i1"})
    sim.do("m1", {"type": "open_vote", "question": "?"})
    sim.do("m3", {"type": "cast_vote", "choice": "for"})
    with pytest.raises(Refused, match="already been cast"):
        sim.do("m3", {"type": "cast_vote", "choice": "against"})
    with pytest.raises(Refused, match="do not hold"):
        sim.do("m3", {"type": "cast_vote", "choice": "for", "on_behalf_of": "m5"})
    with pytest.raises(Refused, match="not counted present"):
        sim.do("m5", {"type": "cast_vote", "choice": "for"})
    sim.do("m1", {"type": "close_vote"})
    with pytest.raises(Refused, match="no vote is open"):
        sim.do("m4", {"type": "cast_vote", "choice": "for"})
    assert sim.state.votes[-1].ballots["m3"].choice == "for"  # nothing recorded wrongly


def test_a_withdrawn_member_neither_votes_nor_counts_for_quorum() -> None:
    sim = Sim(members=5)
    sim.connect("m1", "m2", "m3")
    sim.do("m1", {"type": "set_item", "item_id": "i1"})
    assert sim.state.quorum() == (3, 3, True)
    sim.do("m3", {"type": "withdraw"})
    assert sim.state.quorum() == (2, 3, False)
    with pytest.raises(Refused, match="quorum not reached"):
        sim.do("m1", {"type": "open_vote", "question": "?"})


def test_quorum_lost_in_the_middle_of_a_vote_voids_it_and_warns_the_chair() -> None:
    sim = Sim(members=5)
    sim.connect("m1", "m2", "m3")
    sim.do("m1", {"type": "set_item", "item_id": "i1"})
    sim.do("m1", {"type": "open_vote", "question": "?"})
    sim.do("m2", {"type": "cast_vote", "choice": "for"})
    sim.server("connection_lost", member="m3")
    assert [e.type for e in sim.journal][-1] == "quorum_lost"
    sim.do("m1", {"type": "close_vote"})
    result = sim.last_result()
    assert result["adopted"] is None and "quorum" in str(result["void"])
    assert sim.state.votes[-1].ballots["m2"].choice == "for"  # the vote cast stands


def test_a_vote_cast_stands_when_its_author_loses_connection() -> None:
    sim = Sim(members=5)
    sim.connect("m1", "m2", "m3", "m4")
    sim.do("m1", {"type": "set_item", "item_id": "i1"})
    sim.do("m1", {"type": "open_vote", "question": "?"})
    sim.do("m4", {"type": "cast_vote", "choice": "against"})
    sim.server("connection_lost", member="m4")
    sim.do("m1", {"type": "close_vote"})
    assert sim.last_result()["votes_against"] == 1


def test_secret_ballot_requested_remotely_postpones_the_item_with_its_legal_reason() -> None:
    sim = Sim(regime="intercommunal", mode="hybrid")
    sim.connect("m1", "m2", "m3", "m4")
    sim.do("m1", {"type": "set_item", "item_id": "i1"})
    sim.do("m1", {"type": "request_secret_ballot"})
    reason = sim.state.item("i1").postponed  # type: ignore[union-attr]
    assert reason and "L5211-11-1" in reason
    with pytest.raises(Refused, match="postponed"):
        sim.do("m1", {"type": "open_vote", "question": "?"})


@pytest.mark.parametrize("item", ["i2", "i3"])
def test_items_that_may_not_be_voted_remotely_are_postponed(item: str) -> None:
    sim = Sim(regime="intercommunal", mode="remote")
    sim.connect("m1", "m2", "m3", "m4")
    sim.do("m1", {"type": "set_item", "item_id": item})
    decision = sim.do("m1", {"type": "open_vote", "question": "?"})
    assert any(isinstance(e, Warn) for e in decision.effects)
    assert sim.state.open_vote is None and sim.state.item(item).postponed  # type: ignore[union-attr]


@pytest.mark.parametrize("regime_id", list(REGIMES))
def test_every_regime_counts_quorum_its_own_way(regime_id: str) -> None:
    regime = REGIMES[regime_id]
    sim = Sim(regime=regime_id, mode="hybrid", members=9)
    sim.connect("m1", "m2", "m3")  # three remote
    for member in ("m4", "m5"):  # two in the room
        sim.do("m2", {"type": "record_presence", "member_id": member, "present": True})
    sim.do("m6", {"type": "give_proxy", "holder_id": "m4"}, role="councillor")
    counted, required, reached = sim.state.quorum()
    expected = 2 + (3 if regime.quorum.counts_remote else 0) + (1 if regime.quorum.counts_represented else 0)
    assert counted == expected
    assert required == regime.quorum.required(9)
    assert reached == (expected >= required)
    assert required == (5 if regime.quorum.strict else 3)
    # only methods the regime allows may be used
    sim.do("m1", {"type": "set_item", "item_id": "i1"})
    if reached and "show_of_hands" not in regime.vote_methods:
        with pytest.raises(Refused, match="not allowed"):
            sim.do("m1", {"type": "open_vote", "question": "?", "method": "show_of_hands"})


def test_in_the_ordinary_town_council_remote_members_neither_count_nor_vote() -> None:
    sim = Sim(regime="commune", mode="chamber", members=5)
    sim.connect("m3", "m4", "m5")
    assert sim.state.quorum()[0] == 0
    for member in ("m1", "m2", "m3"):
        sim.do("m2", {"type": "record_presence", "member_id": member, "present": True})
    sim.do("m1", {"type": "set_item", "item_id": "i1"})
    sim.do("m1", {"type": "open_vote", "question": "?", "method": "show_of_hands"})
    with pytest.raises(Refused, match="not counted present"):
        sim.do("m4", {"type": "cast_vote", "choice": "for"})
    sim.do("m2", {"type": "record_vote", "member_id": "m3", "choice": "for"})
    assert sim.state.votes[-1].ballots["m3"].cast_by == "m2"

"""Every role x every sitting command: the server refuses exactly what the role may not do."""

from __future__ import annotations

from typing import Any

import pytest

from signaling import protocol_sitting as c
from signaling.assembly import Refused
from signaling.rules import PERMISSIONS
from tests.sitting.sim import Sim

ROLES = ["chair", "secretary", "councillor", "public", "technician"]

# A command of each type that is valid in the prepared state, for a sender "m3".
COMMANDS: dict[type[Any], dict[str, Any]] = {
    c.Mute: {"type": "mute", "participant_id": "m4"},
    c.MuteAll: {"type": "mute_all"},
    c.SetSelfUnmute: {"type": "set_self_unmute", "allowed": False},
    c.Remove: {"type": "remove", "participant_id": "m5"},
    c.Lock: {"type": "lock", "locked": True},
    c.AdmitParticipant: {"type": "admit", "participant_id": "guest"},
    c.RaiseHand: {"type": "raise_hand"},
    c.LowerHand: {"type": "lower_hand"},
    c.GiveFloor: {"type": "give_floor", "participant_id": "m4"},
    c.TakeFloor: {"type": "take_floor"},
    c.SetItem: {"type": "set_item", "item_id": "i1"},
    c.Suspend: {"type": "suspend", "suspended": True},
    c.ClosedSession: {"type": "closed_session", "closed": True},
    c.ProgrammeSound: {"type": "programme_sound", "cut": True},
    c.RecordPresence: {"type": "record_presence", "member_id": "m5", "present": True},
    c.GiveProxy: {"type": "give_proxy", "holder_id": "m4"},
    c.RevokeProxy: {"type": "revoke_proxy"},
    c.Withdraw: {"type": "withdraw"},
    c.RequestSecretBallot: {"type": "request_secret_ballot"},
    c.OpenVote: {"type": "open_vote", "question": "Adopter ?"},
    c.CastVote: {"type": "cast_vote", "choice": "for"},
    c.RecordVote: {"type": "record_vote", "member_id": "m5", "choice": "against"},
    c.CloseVote: {"type": "close_vote"},
}


def prepared(command_type: type[Any]) -> Sim:
    sim = Sim(members=6)
    sim.connect("m1", "m2", "m3", "m4", "m6")
    sim.do("m1", {"type": "set_item", "item_id": "i1"})
    sim.server("waiting", seat="guest")
    sim.do("m6", {"type": "raise_hand"})
    sim.do("m1", {"type": "give_floor", "participant_id": "m6"})
    if command_type is c.RevokeProxy:
        sim.do("m3", {"type": "give_proxy", "holder_id": "m2"})
    if command_type is c.RecordVote:
        sim.do("m2", {"type": "record_presence", "member_id": "m5", "present": True})
    if command_type in (c.CastVote, c.RecordVote, c.CloseVote):
        sim.do("m1", {"type": "open_vote", "question": "Adopter le procès-verbal ?"})
    if command_type is c.LowerHand:
        sim.do("m3", {"type": "raise_hand"})
    return sim


def test_every_command_is_in_the_table() -> None:
    assert set(COMMANDS) == set(PERMISSIONS) == set(c.SittingCommand.__args__)  # type: ignore[attr-defined]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("command_type", list(COMMANDS), ids=lambda t: t.__name__)
def test_role_may_or_may_not(role: str, command_type: type[Any]) -> None:
    sim = prepared(command_type)
    before = len(sim.journal)
    if role in PERMISSIONS[command_type]:
        decision = sim.do("m3", COMMANDS[command_type], role=role)
        assert decision.events, f"{role} {command_type.__name__}: accepted but did nothing"
    else:
        with pytest.raises(Refused) as refused:
            sim.do("m3", COMMANDS[command_type], role=role)
        assert refused.value.code == "forbidden"
        assert len(sim.journal) == before  # nothing recorded

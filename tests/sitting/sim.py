"""A sitting driven through the pure rules, with no network: for state-machine tests."""

from __future__ import annotations

from typing import Any

from signaling import protocol as p
from signaling import rules
from signaling.assembly import Actor, Decision
from signaling.regimes import REGIMES
from signaling.sitting_state import AgendaItem, Member, SittingState


class Sim:
    def __init__(self, regime: str = "intercommunal", mode: str = "remote", members: int = 6, **items: Any) -> None:
        self.state = SittingState(
            "s1",
            regime=REGIMES[regime],
            mode=mode,  # type: ignore[arg-type]
            members={f"m{i}": Member(f"m{i}", f"Membre {i}", "A" if i % 2 else "B") for i in range(1, members + 1)},
            agenda=[
                AgendaItem("i1", 1, "Approbation du procès-verbal", time_limit_s=120),
                AgendaItem("i2", 2, "Budget primitif 2027", kind="budget_primitif"),
                AgendaItem("i3", 3, "Subvention au club de football", no_remote_vote=True),
            ],
            chair="m1",
        )
        self.now = 1_000.0
        self.journal: list[Any] = []
        self.roles: dict[str, str] = {"m1": "chair", "m2": "secretary"}

    def role(self, seat: str) -> str:
        return self.roles.get(seat, "councillor" if seat in self.state.members else "public")

    def server(self, kind: str, **data: Any) -> None:
        from signaling.assembly import Event

        self.commit(Decision(events=[Event(kind, data, "server", self.now)]))

    def connect(self, *seats: str) -> None:
        for seat in seats:
            self.server("member_connected", member=seat)

    def do(self, seat: str, command: dict[str, Any], role: str | None = None) -> Decision:
        self.now += 1
        message = p.ClientMessageAdapter.validate_python(command)
        actor = Actor(seat, role or self.role(seat))  # type: ignore[arg-type]
        decision = rules.decide(self.state, actor, message, self.now)  # type: ignore[arg-type]
        self.commit(decision)
        return decision

    def commit(self, decision: Decision) -> None:
        for event in decision.events:
            rules.apply(self.state, event)
            self.journal.append(event)
        watch = rules.quorum_watch(self.state, self.now)
        for event in watch.events:
            rules.apply(self.state, event)
            self.journal.append(event)

    def last_result(self) -> dict[str, Any]:
        result = self.state.votes[-1].result
        assert result is not None
        return result

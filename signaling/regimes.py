"""Legal regimes: the rules a sitting is held under, as dated parameter sets.

Sources: ``../shared/context/deliberation-rules.md`` (CGCT articles and their
commentaries). Each preset names its legal basis; re-check it on Légifrance
before relying on it. A sitting picks one regime; nothing else in the code
hard-codes a quorum, a proxy cap or a voting rule.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Literal

VoteMethod = Literal["show_of_hands", "roll_call", "electronic", "secret"]
ItemKind = Literal["ordinary", "budget_primitif", "election", "designation"]
SittingMode = Literal["chamber", "hybrid", "remote"]


@dataclass(frozen=True)
class QuorumRule:
    """Members who must be there for the assembly to deliberate.

    ``numerator/denominator`` of the members in office; ``strict`` means "more
    than" (the majority: "plus de la moitié"), otherwise "at least" (the covid
    regime's third).
    """

    numerator: int
    denominator: int
    strict: bool
    counts_remote: bool  # members present by videoconference count
    counts_represented: bool  # members who gave a proxy count

    def required(self, in_office: int) -> int:
        if self.strict:
            return in_office * self.numerator // self.denominator + 1
        return -(-in_office * self.numerator // self.denominator)  # ceiling

    def describe(self) -> str:
        share = "la moitié" if (self.numerator, self.denominator) == (1, 2) else f"{self.numerator}/{self.denominator}"
        who = "présents" + (" ou représentés" if self.counts_represented else "")
        where = ", à distance compris" if self.counts_remote else ", dans la salle"
        return f"{'plus de' if self.strict else 'au moins'} {share} des membres en exercice {who}{where}"


@dataclass(frozen=True)
class Regime:
    id: str
    title: str
    legal_basis: str
    valid_from: datetime.date
    valid_until: datetime.date | None
    quorum: QuorumRule
    proxies_per_holder: int
    remote_participation: bool  # may members sit remotely at all
    remote_may_vote: bool
    vote_methods: frozenset[VoteMethod]
    secret_ballot_remotely: bool  # False: a secret ballot in a sitting with remote members is postponed
    casting_vote: bool  # the chair's vote prevails on a tie, except in a secret ballot
    not_remotely: frozenset[ItemKind]  # item kinds that may not be handled when members sit remotely

    def in_force(self, day: datetime.date) -> bool:
        return self.valid_from <= day and (self.valid_until is None or day <= self.valid_until)

    def remote_refusal(self, mode: SittingMode, kind: ItemKind, secret_requested: bool) -> str | None:
        """The legal reason to postpone an item in this sitting, or None."""
        if mode == "chamber":
            return None
        if kind in self.not_remotely:
            return f"{_KIND_LABELS[kind]} ne peut être traité(e) par visioconférence ({self.legal_basis})"
        if secret_requested and not self.secret_ballot_remotely:
            return f"scrutin secret demandé : impossible par visioconférence, point reporté ({self.legal_basis})"
        return None


_KIND_LABELS: dict[ItemKind, str] = {
    "ordinary": "ce point",
    "budget_primitif": "le budget primitif",
    "election": "une élection",
    "designation": "une désignation",
}

_MAJORITY_IN_ROOM = QuorumRule(1, 2, strict=True, counts_remote=False, counts_represented=False)
_MAJORITY_ALL_PLACES = QuorumRule(1, 2, strict=True, counts_remote=True, counts_represented=False)
_PUBLIC_REMOTE_VOTES: frozenset[VoteMethod] = frozenset({"roll_call", "electronic"})
_NOT_BY_VISIO: frozenset[ItemKind] = frozenset({"budget_primitif", "election", "designation"})

REGIMES: dict[str, Regime] = {
    r.id: r
    for r in [
        Regime(
            id="commune",
            title="Conseil municipal — droit commun (séance dans la salle)",
            legal_basis="CGCT L2121-17, L2121-20, L2121-21",
            valid_from=datetime.date(2022, 8, 1),
            valid_until=None,
            quorum=_MAJORITY_IN_ROOM,
            proxies_per_holder=1,
            remote_participation=False,
            remote_may_vote=False,
            vote_methods=frozenset({"show_of_hands", "roll_call", "electronic", "secret"}),
            secret_ballot_remotely=False,
            casting_vote=True,
            not_remotely=frozenset(),
        ),
        Regime(
            id="urgence-2020-04",
            title="Urgence sanitaire — ordonnance 2020-391, première version",
            legal_basis="ord. 2020-391 art. 6 (à vérifier sur Légifrance)",
            valid_from=datetime.date(2020, 4, 2),
            valid_until=datetime.date(2020, 7, 10),
            quorum=QuorumRule(1, 3, strict=False, counts_remote=True, counts_represented=True),
            proxies_per_holder=2,
            remote_participation=True,
            remote_may_vote=True,
            vote_methods=_PUBLIC_REMOTE_VOTES,
            secret_ballot_remotely=False,
            casting_vote=True,
            not_remotely=frozenset(),
        ),
        Regime(
            id="urgence-2020-11",
            title="Urgence sanitaire — loi 2020-1379 art. 6 et prorogations",
            legal_basis="loi 2020-1379 art. 6, lois 2021-689 et 2021-1465 (à vérifier sur Légifrance)",
            valid_from=datetime.date(2020, 11, 15),
            valid_until=datetime.date(2022, 7, 31),
            quorum=QuorumRule(1, 3, strict=False, counts_remote=True, counts_represented=False),
            proxies_per_holder=2,
            remote_participation=True,
            remote_may_vote=True,
            vote_methods=_PUBLIC_REMOTE_VOTES,
            secret_ballot_remotely=False,
            casting_vote=True,
            not_remotely=frozenset(),
        ),
        *[
            Regime(
                id=rid,
                title=title,
                legal_basis=basis,
                valid_from=datetime.date(2022, 8, 1),
                valid_until=None,
                quorum=_MAJORITY_ALL_PLACES,
                proxies_per_holder=1,
                remote_participation=True,
                remote_may_vote=True,
                vote_methods=_PUBLIC_REMOTE_VOTES | {"show_of_hands", "secret"},
                secret_ballot_remotely=False,
                casting_vote=True,
                not_remotely=_NOT_BY_VISIO,
            )
            for rid, title, basis in [
                ("intercommunal", "Conseil communautaire ou syndical — visioconférence", "CGCT L5211-11-1"),
                ("departemental", "Conseil départemental — visioconférence", "CGCT L3121-9-1"),
                ("regional", "Conseil régional — visioconférence", "CGCT L4132-9-1"),
            ]
        ],
    ]
}

DEFAULT_REGIME = "commune"


def regime(regime_id: str) -> Regime:
    try:
        return REGIMES[regime_id]
    except KeyError:
        raise ValueError(f"unknown regime {regime_id!r}; known: {', '.join(REGIMES)}") from None

"""The wording of the minutes draft: a :class:`~signaling.minutes.Minutes` as document blocks
(:mod:`signaling.documents`), in French and in the order of a procès-verbal: the sitting and its
officers, attendance and quorum, the proceedings, each agenda item with its speaking turns and
votes, then the journal's authentication and the signatures."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from .documents import (
    CHOICES,
    KINDS,
    METHODS,
    MODES,
    TO_COMPLETE,
    Block,
    Heading,
    Items,
    Para,
    Table,
    duration_text,
    french_date,
    french_hour,
)

if TYPE_CHECKING:
    from .minutes import Minutes, VoteReport


def minutes_blocks(m: Minutes) -> list[Block]:
    """The minutes ``m`` as blocks, for :meth:`Minutes.to_markdown` and :meth:`Minutes.to_html`."""
    def at(moment: float | None) -> str:
        return "" if moment is None else datetime.fromtimestamp(moment, m.timezone).strftime("%H:%M:%S")

    start, end = datetime.fromtimestamp(m.start, m.timezone), datetime.fromtimestamp(m.end, m.timezone)
    blocks: list[Block] = [
        Heading(1, f"Projet de procès-verbal — {m.title}"),
        Para(f"Séance du {french_date(start)}, ouverte à {french_hour(start)} et levée à {french_hour(end)}"
             f"{'' if end.date() == start.date() else ' le ' + french_date(end)} (heure légale, {m.timezone.key})."),
        Para(f"Lieu et forme : {m.place or TO_COMPLETE}, {MODES.get(m.mode, m.mode)}."),
        Para(f"Régime : {m.regime.title} ({m.regime.legal_basis}). Quorum : {m.regime.quorum.describe()}."),
        Para(f"Présidence de séance : {m.chair or TO_COMPLETE}."),
        Para(f"Secrétaire(s) de séance : {', '.join(m.secretaries) or TO_COMPLETE}."),
    ]
    if m.convocations:
        sent, first, last, acknowledged = m.convocations
        when = french_date(datetime.fromtimestamp(first, m.timezone))
        if datetime.fromtimestamp(last, m.timezone).date() != datetime.fromtimestamp(first, m.timezone).date():
            when += f" au {french_date(datetime.fromtimestamp(last, m.timezone))}"
        blocks.append(Para(f"Convocation : adressée par voie électronique à {sent} membre(s) le {when} ; "
                           f"{acknowledged} accusé(s) de réception."))
    places = {(True, False): "dans la salle", (False, True): "à distance", (True, True): "dans la salle et à distance"}
    blocks += [Heading(2, "Présences"), Table(
        "Membres présents", ["Membre", "Groupe", "Présence", "Heures"],
        [[a.name, a.group or "", places[(a.in_room, a.remote)], "; ".join(f"{at(t)} {n}" for t, n in a.timeline)]
         for a in m.attendance.values()])]
    if not m.regime.quorum.counts_remote and any(a.remote for a in m.attendance.values()):
        blocks.append(Para("Sous ce régime, les membres présents à distance ne comptent pas pour le quorum."))
    blocks += [Para("Membres représentés :"), Items([
        f"{m.name(p.giver)}, représenté(e) par {m.name(p.holder)} (pouvoir enregistré à {at(p.given_at)}"
        + (f", révoqué à {at(p.revoked_at)})" if p.revoked_at else ")") for p in m.proxies] or ["aucun"])]
    blocks += [Para("Membres absents :"), Items([m.name(a) for a in m.absent] or ["aucun"])]
    if m.quorum_opening:
        counted, required, reached = m.quorum_opening
        blocks.append(Para(f"Quorum à l'ouverture des débats : {counted} membre(s) compté(s) pour {required} requis, "
                           f"{'atteint' if reached else 'non atteint'}."))
    changes, ever = [], False
    for t, ok, n, r in m.quorum_changes:
        changes.append(f"{at(t)} : quorum {'atteint' if ok else 'perdu' if ever else 'non atteint'} "
                       f"({n} compté(s), {r} requis)")
        ever |= ok
    blocks.append(Items(changes or ["aucune variation du quorum n'est enregistrée"]))
    blocks += [Heading(2, "Déroulement"), Items(
        [f"Huis clos de {at(a)} à {at(b) or 'la fin de la séance'}" for a, b in m.closed_sessions]
        + [f"Suspension de séance de {at(a)} à {at(b) or 'la fin de la séance'}" for a, b in m.suspensions]
        or ["Séance publique de bout en bout, sans suspension."])]
    blocks += [Heading(2, "Ordre du jour"), Items(
        [i.title + (f" ({KINDS[i.kind]})" if i.kind in KINDS else "") for i in m.items], ordered=True)]
    for item in m.items:
        blocks.append(Heading(2, f"Point n° {item.number} — {item.title}"))
        facts = [f"Examiné à {', '.join(at(t) for t in item.taken_up)}" if item.taken_up else "Non examiné"]
        facts += [f"Reporté : {item.postponed}"] if item.postponed else []
        facts += [f"Scrutin secret demandé à {at(t)} (par {m.name(w)})" for t, w in item.secret_requests]
        facts += [f"{m.name(w)} se retire (intérêt personnel) à {at(t)}" for t, w in item.withdrawals]
        blocks.append(Items(facts))
        if item.turns:
            rows = [[m.name(t.seat), at(t.start), at(t.end), duration_text(t.duration_s)] for t in item.turns]
            blocks.append(Table("Interventions", ["Orateur", "De", "À", "Durée"], rows))
        if item.taken_up:
            blocks.append(Para(f"Teneur des débats : {TO_COMPLETE}"))
        blocks += [b for vote in item.votes for b in _vote(m, vote, at)]
    if m.other_votes:
        blocks += [Heading(2, "Votes hors ordre du jour"), *[b for v in m.other_votes for b in _vote(m, v, at)]]
    return [*blocks, Heading(2, "Authentification"),
            Para(f"Journal : {m.entries} entrées, empreinte de tête {m.head_hash}, signée par la clé {m.fingerprint}."),
            Para("Pour vérifier le journal publié : « hemicycle journal verify journal.jsonl --public-key CLÉ » doit "
                 "répondre « Journal valide » avec la même empreinte de tête et la même clé (docs/journal.md)."),
            Heading(2, "Signatures"),
            Para(f"Procès-verbal arrêté lors de la séance du {TO_COMPLETE}."),
            Para(f"Le président de séance : {m.chair or TO_COMPLETE}        Le(s) secrétaire(s) de séance : "
                 f"{', '.join(m.secretaries) or TO_COMPLETE}")]


def _vote(m: Minutes, vote: VoteReport, at: Any) -> list[Block]:
    result, facts = vote.result or {}, [f"Mode de scrutin : {METHODS.get(vote.method, vote.method)}",
                                        f"Ouvert à {at(vote.opened_at)}, clos à {at(vote.closed_at) or '(non clos)'}"]
    if vote.quorum:
        facts.append(f"Quorum à l'ouverture du vote : {vote.quorum[0]} compté(s) pour {vote.quorum[1]} requis")
    if result:
        facts.append(f"Pour : {result['votes_for']} ; contre : {result['votes_against']} ; abstentions : "
                     f"{result['abstain']} ; ne prennent pas part au vote : {result['not_voting']}")
        if result.get("void"):
            facts.append(f"Résultat : vote nul — {result['void']}")
        else:
            unanimous = result["votes_against"] == 0 and result["abstain"] == 0
            outcome = "adoptée" + (" à l'unanimité" if unanimous else "") if result["adopted"] else "rejetée"
            facts.append(f"Résultat : la proposition est {outcome}"
                         + (" (voix prépondérante de la présidence)" if result.get("casting_vote") else ""))
    blocks: list[Block] = [Heading(3, f"Vote : {vote.question}"), Items(facts)]
    if vote.method == "secret":
        voters = ", ".join(m.name(b.member) for b in vote.ballots)
        return [*blocks, Para(f"Scrutin secret : ont pris part au vote {voters or 'aucun membre'}.")]
    return [*blocks, Table("Votes nominatifs", ["Membre", "Vote"], [
        [m.name(b.proxy_holder) + f", par procuration de {m.name(b.member)}" if b.proxy_holder else m.name(b.member),
         CHOICES.get(b.choice, b.choice)] for b in vote.ballots])]

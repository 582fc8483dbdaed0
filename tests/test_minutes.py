"""signaling/minutes.py: the minutes draft (procès-verbal) from a real journal file, and its command.

A sitting is driven through the real rules (as signaling.sitting does: each event journalled
in a SQLite file in tmp_path, then applied); the minutes are built from that file alone."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from config.settings import AgendaItemSettings, MemberSettings, SittingSettings
from signaling import protocol as p
from signaling import rules
from signaling.admin_cli import add_admin_commands, run_admin_command
from signaling.assembly import Actor, Decision, Event
from signaling.deliberation import tally
from signaling.journal import Journal, JournalKey
from signaling.minutes import MinutesError, build_minutes
from signaling.replay import sitting_state_from

T0 = datetime(2026, 12, 3, 17, 30, tzinfo=UTC).timestamp()  # 18 h 30 in Paris
NAMES = {"m1": "Claire Dupont", "m2": "Marc Petit", "m3": "Karim Benali", "m4": "Sophie Lefèvre",
         "m5": "Étienne Roux", "m6": "Nadia Haddad", "m7": "Paul Girard"}
ROLES = {"m1": "chair", "m2": "secretary"}


def hybrid_sitting() -> SittingSettings:
    return SittingSettings(
        id="cc-2026-12-03", title="Conseil communautaire du 3 décembre 2026", regime="intercommunal", mode="hybrid",
        place="Salle du conseil, hôtel communautaire",
        agenda=[AgendaItemSettings(id="i1", title="Approbation du procès-verbal du 5 novembre"),
                AgendaItemSettings(id="i2", title="Budget primitif 2027", kind="budget_primitif"),
                AgendaItemSettings(id="i3", title="Subvention au club de football")],
        members=[MemberSettings(id=k, name=v, group="Majorité" if k < "m5" else "Opposition") for k, v in NAMES.items()],
    )


class Council:
    """Commands through the real rules; every event journalled (with its time), then applied."""

    def __init__(self, journal: Journal, spec: SittingSettings) -> None:
        self.journal, self.spec, self.state, self.now = journal, spec, sitting_state_from(spec), T0

    def server(self, kind: str, after: float = 0, **data: Any) -> None:
        self.now += after
        self.commit(Decision(events=[Event(kind, data, "server", self.now)]))

    def do(self, seat: str, command: dict[str, Any], after: float = 5) -> None:
        self.now += after
        message = p.ClientMessageAdapter.validate_python(command)
        actor = Actor(seat, ROLES.get(seat, "councillor"))  # type: ignore[arg-type]
        self.commit(rules.decide(self.state, actor, message, self.now))  # type: ignore[arg-type]

    def commit(self, decision: Decision) -> None:
        for event in decision.events:
            self.record(event)
        for event in rules.quorum_watch(self.state, self.now).events:
            self.record(event)

    def record(self, event: Event) -> None:
        self.journal.append_sync(self.spec.id, event.actor, event.type, event.data, at=event.at)
        rules.apply(self.state, event)

    def vote(self, question: str, **choices: str) -> None:
        self.do("m1", {"type": "open_vote", "question": question})
        for seat, choice in choices.items():
            if "_for_" in seat:
                holder, giver = seat.split("_for_")
                self.do(holder, {"type": "cast_vote", "choice": choice, "on_behalf_of": giver})
            elif seat in self.state.in_chamber:
                self.do("m2", {"type": "record_vote", "member_id": seat, "choice": choice})
            else:
                self.do(seat, {"type": "cast_vote", "choice": choice})
        self.do("m1", {"type": "close_vote"})


@pytest.fixture
def key(tmp_path: Path) -> JournalKey:
    return JournalKey.load_or_create(tmp_path / "journal-key.pem")


@pytest.fixture
def journal(tmp_path: Path, key: JournalKey) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite3", key) as opened:
        yield opened


def hold_hybrid_sitting(journal: Journal, spec: SittingSettings) -> None:
    for member in ("m1", "m2", "m3", "m4", "m5", "m6"):  # convoked a week before; one acknowledged
        journal.append_sync(spec.id, "server", "convocation_sent", {"member": member, "message_id": f"<{member}@x>"},
                            at=T0 - 7 * 86_400)
    journal.append_sync(spec.id, "m3", "convocation_acknowledged", {"member": "m3"}, at=T0 - 6 * 86_400)
    council = Council(journal, spec)
    for member in ("m1", "m2", "m3", "m4"):
        council.server("member_connected", after=2 if member != "m1" else 0, member=member)
    council.do("m2", {"type": "record_presence", "member_id": "m5", "present": True})
    council.do("m6", {"type": "give_proxy", "holder_id": "m3"})
    council.do("m1", {"type": "set_item", "item_id": "i1"}, after=60)
    council.do("m1", {"type": "give_floor", "participant_id": "m3"})
    council.do("m1", {"type": "take_floor"}, after=95)
    council.vote("Approuver le procès-verbal de la séance du 5 novembre",
                 m1="for", m2="for", m3="against", m3_for_m6="against", m4="abstain", m5="for")
    council.do("m1", {"type": "set_item", "item_id": "i2"})
    council.do("m1", {"type": "open_vote", "question": "Adopter le budget primitif 2027"})  # postponed: by visio
    council.do("m1", {"type": "set_item", "item_id": "i3"})
    council.do("m4", {"type": "withdraw"})
    council.do("m1", {"type": "closed_session", "closed": True})
    council.vote("Attribuer 5 000 € au club de football", m1="for", m2="against", m3="for", m3_for_m6="against",
                 m5="for")
    council.do("m1", {"type": "closed_session", "closed": False})
    council.do("m1", {"type": "suspend", "suspended": True})
    council.do("m1", {"type": "suspend", "suspended": False}, after=600)
    council.server("connection_lost", after=30, member="m4")
    council.do("m2", {"type": "record_presence", "member_id": "m5", "present": False})


def test_minutes_of_a_hybrid_sitting_name_everyone_every_vote_and_the_signed_head(journal: Journal,
                                                                                   key: JournalKey) -> None:
    spec = hybrid_sitting()
    hold_hybrid_sitting(journal, spec)
    head = journal.head(spec.id)
    minutes = build_minutes(spec, journal.entries(spec.id), head, key.fingerprint)
    md = minutes.to_markdown()

    assert md.startswith("# Projet de procès-verbal — Conseil communautaire du 3 décembre 2026\n")
    assert "Séance du jeudi 3 décembre 2026, ouverte à 18 h 30 et levée à 18 h 45 (heure légale, Europe/Paris)." in md
    assert "Lieu et forme : Salle du conseil, hôtel communautaire, en présentiel et par visioconférence" in md
    assert "CGCT L5211-11-1" in md and "plus de la moitié des membres en exercice présents, à distance compris" in md
    assert "Présidence de séance : Claire Dupont." in md  # the actor of the chair's commands
    assert "Secrétaire(s) de séance : Marc Petit." in md  # who recorded presence and votes in the room
    assert "adressée par voie électronique à 6 membre(s) le jeudi 26 novembre 2026 ; 1 accusé(s) de réception" in md
    assert "| Étienne Roux | Opposition | dans la salle | 18:30:11 arrivée dans la salle; 18:45:21 départ de la salle |" in md
    assert "| Sophie Lefèvre | Majorité | à distance | 18:30:06 connexion à distance; 18:45:16 perte de la connexion |" in md
    assert "- 18:30:06 : quorum atteint (4 compté(s), 4 requis)\n" in md  # announced once reached
    assert "quorum non atteint" not in md
    assert "- 18:45:21 : quorum perdu (3 compté(s), 4 requis)" in md
    assert "- Nadia Haddad, représenté(e) par Karim Benali (pouvoir enregistré à 18:30:16)" in md
    assert "Membres absents :\n\n- Paul Girard\n" in md
    assert "Quorum à l'ouverture des débats : 5 membre(s) compté(s) pour 4 requis, atteint." in md
    assert "1. Approbation du procès-verbal du 5 novembre\n2. Budget primitif 2027 (budget primitif)\n" in md
    assert "| Karim Benali | 18:31:21 | 18:32:56 | 1 min 35 s |" in md  # the speaking turn, by item
    # the first vote, every voter by name, the proxy named
    assert "Mode de scrutin : vote électronique nominatif" in md
    assert "Quorum à l'ouverture du vote : 5 compté(s) pour 4 requis" in md
    assert "Pour : 3 ; contre : 2 ; abstentions : 1 ; ne prennent pas part au vote : 0" in md
    assert "Résultat : la proposition est adoptée" in md
    for row in ("| Claire Dupont | pour |", "| Marc Petit | pour |", "| Karim Benali | contre |",
                "| Karim Benali, par procuration de Nadia Haddad | contre |", "| Sophie Lefèvre | abstention |",
                "| Étienne Roux | pour |"):
        assert row in md
    assert "Reporté : le budget primitif ne peut être traité(e) par visioconférence (CGCT L5211-11-1)" in md
    assert "Sophie Lefèvre se retire (intérêt personnel) à " in md
    assert "- Huis clos de 18:34:01 à 18:34:41\n- Suspension de séance de 18:34:46 à 18:44:46\n" in md
    assert md.count("Teneur des débats : ……… (à compléter)") == 3  # each item taken up
    assert (f"Journal : {head.seq} entrées, empreinte de tête {head.hash}, signée par la clé {key.fingerprint}."
            in md)


def test_the_html_minutes_are_one_accessible_printable_document(journal: Journal, key: JournalKey) -> None:
    spec = hybrid_sitting()
    hold_hybrid_sitting(journal, spec)
    page = build_minutes(spec, journal.entries(spec.id), journal.head(spec.id), key.fingerprint).to_html()

    class Checker(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.open: list[str] = []
            self.tags: list[tuple[str, dict[str, str | None]]] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.append((tag, dict(attrs)))
            if tag not in ("meta", "br"):
                self.open.append(tag)

        def handle_endtag(self, tag: str) -> None:
            assert self.open.pop() == tag, f"</{tag}> closes something else"

    checker = Checker()
    checker.feed(page)
    assert checker.open == []
    assert page.startswith("<!DOCTYPE html>") and ("html", {"lang": "fr"}) in checker.tags
    names = [tag for tag, _ in checker.tags]
    assert {"title", "style", "main", "h1", "table", "caption", "th"} <= set(names)
    assert not {"script", "link", "img", "iframe"} & set(names) and "http" not in page  # nothing external
    assert all(attrs == {"scope": "col"} for tag, attrs in checker.tags if tag == "th")
    assert "@page" in page and "@media print" in page
    assert "Karim Benali, par procuration de Nadia Haddad</td><td>contre" in page
    assert "Étienne Roux" in page and "&lt;" not in page  # UTF-8 text, nothing double-escaped


def test_a_sitting_without_roster_chamber_votes_casting_vote_and_a_secret_ballot(journal: Journal,
                                                                                 key: JournalKey) -> None:
    spec = SittingSettings(id="cm-1", title="Conseil municipal", regime="commune", mode="chamber",
                           agenda=[AgendaItemSettings(id="i1", title="Désignation d'un délégué")])
    council = Council(journal, spec)
    for member, role in (("m1", "chair"), ("m2", "secretary"), ("m3", "councillor"), ("m4", "councillor"),
                         ("m5", "councillor")):
        council.server("member_enrolled", member=member, name=NAMES[member], role=role)
    for member in ("m1", "m2", "m3", "m4"):
        council.do("m2", {"type": "record_presence", "member_id": member, "present": True})
    council.do("m1", {"type": "set_item", "item_id": "i1"})
    council.vote("Adopter le mode de désignation", m1="for", m2="for", m3="against", m4="against")
    # a secret ballot, recorded by the secretary
    council.server("vote_opened", vote="v2", item="i1", question="Désigner Marc Petit", method="secret",
                   quorum=[4, 3])
    for member, choice in (("m1", "for"), ("m3", "against"), ("m4", "for")):
        council.commit(Decision(events=[Event("ballot", {"vote": "v2", "member": member, "choice": choice,
                                                         "cast_by": "m2"}, "m2", council.now)]))
    council.server("vote_closed", vote="v2", result=tally(council.state, council.state.votes[-1]))
    md = build_minutes(spec, journal.entries(spec.id), journal.head(spec.id), key.fingerprint).to_markdown()

    assert "Présidence de séance : Claire Dupont." in md  # enrolled as chair
    assert "Lieu et forme : ……… (à compléter), en présentiel, dans la salle." in md
    assert "Pour : 2 ; contre : 2" in md and "adoptée (voix prépondérante de la présidence)" in md
    assert "Mode de scrutin : scrutin secret" in md
    assert "Scrutin secret : ont pris part au vote Claire Dupont, Karim Benali, Sophie Lefèvre." in md
    secret_part = md.split("Vote : Désigner Marc Petit")[1]
    assert "| Karim Benali |" not in secret_part  # no name next to a choice
    assert "Membres absents :\n\n- Étienne Roux\n" in md
    assert "Convocation :" not in md


def test_the_minutes_refuse_entries_that_do_not_match_the_signed_head(journal: Journal, key: JournalKey,
                                                                       tmp_path: Path) -> None:
    spec = hybrid_sitting()
    hold_hybrid_sitting(journal, spec)
    head = journal.head(spec.id)
    entries = journal.entries(spec.id)
    journal.append_sync(spec.id, "server", "member_connected", {"member": "m7"})  # after the head: not in the minutes
    later = build_minutes(spec, journal.entries(spec.id), head, key.fingerprint)
    assert later.entries == head.seq and "Paul Girard" in later.to_markdown().split("Membres absents")[1][:40]
    with pytest.raises(MinutesError, match="ne correspondent pas"):
        build_minutes(spec, entries[:-1], head, key.fingerprint)
    with pytest.raises(MinutesError, match="signée par la clé"):
        build_minutes(spec, entries, head, "0123456789abcdef")
    forged = type(head)(head.sitting, head.seq, head.hash, "00" * 64, head.public_key_hex, head.signed_at)
    with pytest.raises(MinutesError, match="signature"):
        build_minutes(spec, entries, forged, key.fingerprint)
    with pytest.raises(MinutesError, match="aucune entrée"):
        build_minutes(SittingSettings(id="other", title="x"), entries, head, key.fingerprint)


def test_minutes_command_writes_markdown_and_html_from_the_data_dir(journal: Journal, key: JournalKey,
                                                                    tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    spec = hybrid_sitting()
    hold_hybrid_sitting(journal, spec)
    config = tmp_path / "hemicycle.toml"
    lines = [f'data_dir = "{tmp_path}"', "[[sittings]]", f'id = "{spec.id}"', f'title = "{spec.title}"',
             'regime = "intercommunal"', 'mode = "hybrid"']
    lines += [f'[[sittings.agenda]]\nid = "{i.id}"\ntitle = "{i.title}"\nkind = "{i.kind}"' for i in spec.agenda]
    lines += [f'[[sittings.members]]\nid = "{m.id}"\nname = "{m.name}"' for m in spec.members]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    parser = argparse.ArgumentParser()
    add_admin_commands(parser.add_subparsers(dest="command"))
    head = journal.head(spec.id)
    for name in ("pv.md", "pv.html"):
        args = parser.parse_args(["minutes", "--sitting", spec.id, "--out", str(tmp_path / name),
                                  "--config", str(config), "--secretary", "Jeanne Marchand (DGS)"])
        assert run_admin_command(args) == 0
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert head.hash in text and key.fingerprint in text and "Jeanne Marchand (DGS)" in text
        assert "Karim Benali, par procuration de Nadia Haddad" in text
    assert f"tête {head.hash} signée par la clé {key.fingerprint}" in capsys.readouterr().out
    args = parser.parse_args(["minutes", "--sitting", "nope", "--out", str(tmp_path / "x.md"), "--config", str(config)])
    assert run_admin_command(args) == 2
    args = parser.parse_args(["minutes", "--sitting", spec.id, "--out", str(tmp_path / "x.pdf"), "--config", str(config)])
    assert run_admin_command(args) == 2
    assert "x.pdf : extension .md" in capsys.readouterr().err
    start = time.perf_counter()
    build_minutes(spec, journal.entries(spec.id), journal.head(spec.id), key.fingerprint).to_html()
    assert time.perf_counter() - start < 1
